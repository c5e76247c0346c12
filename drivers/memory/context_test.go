package memory

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

// The hand-written context must be byte for byte what driverkit (encoding/json) writes, and fall
// back to it for every string it does not write itself.
func TestAppendContextMatchesDriverkit(t *testing.T) {
	cases := []struct {
		name     string
		id, job  string
		pipeline string
		headers  map[string][]string
		fast     bool
	}{
		{"no headers", "9f1c2a9e-0000-4000-8000-000000000001", "App\\Jobs\\Mail", "emails", nil, false},
		{"plain", "9f1c2a9e-0000-4000-8000-000000000001", "bench.job", "bench", nil, true},
		{"empty map", "id-1", "job", "p1", map[string][]string{}, true},
		{"trace headers", "id-2", "job", "p1", map[string][]string{
			"Uber-Trace-Id": {"4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1"},
			"Traceparent":   {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			"attempt":       {"1"},
			"multi":         {"a", "b", ""},
			"empty":         {},
			"nil":           nil,
			"Baggage":       {"k=v"},
		}, true},
		{"quote in value", "id-3", "job", "p1", map[string][]string{"k": {`say "hi"`}}, false},
		{"html in key", "id-4", "job", "p1", map[string][]string{"<k>": {"v"}}, false},
		{"ampersand in id", "a&b", "job", "p1", nil, false},
		{"unicode job", "id-5", "jöb", "p1", nil, false},
		{"control char", "id-6", "job\n", "p1", nil, false},
		{"unicode pipeline", "id-7", "job", "пайплайн", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := (&driverkit.JobContext{ID: c.id, Job: c.job, Driver: pluginName, Headers: c.headers, Queue: c.pipeline, Pipeline: c.pipeline}).Marshal()
			require.NoError(t, err)
			got, ok := appendContext(nil, c.id, c.job, c.headers, c.pipeline)
			require.Equal(t, c.fast, ok)
			if ok {
				require.Equal(t, string(want), string(got))
			}
			it := &Item{drv: &Driver{pipeline: c.pipeline}, id: c.id, job: c.job, headers: c.headers}
			viaItem, err := it.Context()
			require.NoError(t, err)
			require.Equal(t, string(want), string(viaItem))
		})
	}
}

// A queued job's Item must stay within a 96-byte allocation (memory per queued job).
func TestItemSize(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(Item{}), uintptr(96))
}

// Jobs of a pipeline with the same name share one name string.
func TestPushSharesJobName(t *testing.T) {
	d := newTestDriver(t, drivertest.NewQueue(0), 10)
	push(t, d, msg("a"))
	m := msg("b")
	m.Job = "job." + string([]byte("a")) // equal to the first name, but its own string
	push(t, d, m)
	first, second := d.backlog.buf[d.backlog.head], d.backlog.buf[d.backlog.head+1]
	require.Equal(t, "job.a", second.job)
	require.Equal(t, unsafe.StringData(first.job), unsafe.StringData(second.job))
}
