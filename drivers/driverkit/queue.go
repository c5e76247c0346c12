package driverkit

import "github.com/roadrunner-server/api/v4/plugins/v4/jobs"

// RemoveFromQueue takes pipeline's jobs out of the shared queue (on Stop) and returns those that are
// the caller's: of type T and accepted by own (nil accepts all). Call it without holding a lock that
// Push or Ack need.
func RemoveFromQueue[T jobs.Job](q jobs.Queue, pipeline string, own func(T) bool) []T {
	removed := q.Remove(pipeline)
	if len(removed) == 0 {
		return nil
	}
	out := make([]T, 0, len(removed))
	for _, j := range removed {
		if it, ok := j.(T); ok && (own == nil || own(it)) {
			out = append(out, it)
		}
	}
	return out
}
