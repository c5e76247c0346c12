package driverkit

// MergeHeaders returns base with extra's keys replacing base's, without modifying either map (a
// worker's requeue headers win over the job's).
func MergeHeaders(base, extra map[string][]string) map[string][]string {
	if len(extra) == 0 {
		return base
	}
	out := make(map[string][]string, len(base)+len(extra))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}
