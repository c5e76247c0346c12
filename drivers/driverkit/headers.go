package driverkit

import (
	"bytes"
	"encoding/json"
	"fmt"
)

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

// DecodeHeadersJSON reads job headers stored as JSON ({"name": ["v1", ...]}), the rr_headers of
// every broker and the headers column of postgres. It is lenient with what other producers write:
// a string value becomes a one-element list, other scalars are formatted, nested values keep their
// JSON text, and null values are dropped. Empty input, null and an empty object give nil.
func DecodeHeadersJSON(raw []byte) (map[string][]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, nil
	}
	var strict map[string][]string
	if err := json.Unmarshal(raw, &strict); err == nil {
		if len(strict) == 0 {
			return nil, nil
		}
		return strict, nil
	}
	var loose map[string]any
	if err := json.Unmarshal(raw, &loose); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	out := make(map[string][]string, len(loose))
	for k, v := range loose {
		switch t := v.(type) {
		case nil:
		case []any:
			vals := make([]string, 0, len(t))
			for _, e := range t {
				vals = append(vals, jsonScalar(e))
			}
			out[k] = vals
		default:
			out[k] = []string{jsonScalar(t)}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// jsonScalar renders a decoded JSON value as a header string.
func jsonScalar(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return ""
	case bool, float64:
		return fmt.Sprint(t)
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return fmt.Sprint(t)
		}
		return string(b)
	}
}
