package memory

import (
	"slices"
	"strings"
)

// appendContext appends the job context JSON for a worker, byte for byte what
// driverkit.JobContext{ID, Job, Driver: "memory", Headers, Queue: pipeline, Pipeline: pipeline}.Marshal
// produces, without reflection: it runs once per job, right before the job goes to a worker. It
// handles strings made of printable ASCII that encoding/json writes as they are; for anything else
// (quotes, backslashes, HTML characters, control or non-ASCII bytes) it returns false and the caller
// uses driverkit.
func appendContext(b []byte, id, job string, headers map[string][]string, pipeline string) ([]byte, bool) {
	if !plain(id) || !plain(job) || !plain(pipeline) {
		return nil, false
	}
	size := len(`{"id":"","job":"","driver":"memory","headers":{},"queue":"","pipeline":""}`) + len(id) + len(job) + 2*len(pipeline)
	// Header keys in the order encoding/json writes map keys: sorted.
	var keysBuf [8]string
	keys := keysBuf[:0]
	for k, v := range headers {
		if !plain(k) {
			return nil, false
		}
		size += len(k) + 6
		for _, s := range v {
			if !plain(s) {
				return nil, false
			}
			size += len(s) + 3
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, strings.Compare)

	if b == nil {
		b = make([]byte, 0, size)
	}
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","job":"`...)
	b = append(b, job...)
	b = append(b, `","driver":"`+pluginName+`","headers":{`...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, `":`...)
		v := headers[k]
		if v == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '[')
		for j, s := range v {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, s...)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	b = append(b, `},"queue":"`...)
	b = append(b, pipeline...)
	b = append(b, `","pipeline":"`...)
	b = append(b, pipeline...)
	b = append(b, `"}`...)
	return b, true
}

// plain reports whether encoding/json writes s unchanged between quotes: printable ASCII without
// '"', '\\' and the characters it escapes for HTML ('<', '>', '&').
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
