package amqp

import (
	"testing"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
)

func TestDecodeMessage(t *testing.T) {
	m, warnings := decodeMessage(amqp.Table{
		jobs.RRID: "id-1", jobs.RRJob: "App\\Job", jobs.RRPriority: int32(4), jobs.RRDelay: int32(5), jobs.RRAutoAck: true,
		jobs.RRHeaders:  []byte(`{"a":["1"],"b":"2","c":3,"d":null,"e":[true,{"x":1}]}`),
		jobs.RRPipeline: "other", "x-death": []any{amqp.Table{"count": int64(1)}}, "x-first-death-queue": "dq",
		"t":    amqp.Table{"k": []byte("v"), "d": amqp.Decimal{Scale: 2, Value: -5}},
		"when": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"dec":  amqp.Decimal{Scale: 2, Value: 12345},
		"f":    float64(1.5),
		"nil":  nil,
		"a":    "overridden by rr_headers",
	}, "mid", 10)
	require.Empty(t, warnings)
	require.Equal(t, message{
		id: "id-1", job: "App\\Job", priority: 4, delay: 5, autoAck: true,
		headers: map[string][]string{
			"a": {"1"}, "b": {"2"}, "c": {"3"}, "e": {"true", `{"x":1}`},
			"t": {`{"d":"-0.05","k":"v"}`}, "when": {"2026-01-02T03:04:05Z"}, "dec": {"123.45"}, "f": {"1.5"},
		},
	}, m)

	m, warnings = decodeMessage(amqp.Table{jobs.RRPriority: "high", jobs.RRHeaders: []byte("{not json")}, "", 7)
	require.Len(t, warnings, 2)
	require.Len(t, m.id, 36, "a new UUID")
	require.Equal(t, deducedJobName, m.job)
	require.Equal(t, int64(7), m.priority)
	require.Nil(t, m.headers)

	m, _ = decodeMessage(amqp.Table{jobs.RRPriority: int64(0), jobs.RRAutoAck: "true", jobs.RRID: []byte("b")}, "mid", 7)
	require.Equal(t, int64(7), m.priority, "priority 0 means the pipeline's")
	require.True(t, m.autoAck)
	require.Equal(t, "b", m.id)
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"rr-attempt":["2"]}`), "id", "job", int64(3), int64(0), false, "k", "v", "mid")
	f.Add([]byte(`{"a":"b","c":[1,null,{"d":[]}]}`), "", "", int64(-1), int64(60), true, "x-death", "", "")
	f.Add([]byte(`[]`), "\xff", "\x00", int64(0), int64(-5), false, "rr_id", "spoof", "m")
	f.Add([]byte(`null`), "id", "j", int64(1<<62), int64(1<<40), true, "", "", "")
	f.Add([]byte(`{"k":["\ud800"]}`), "id", "j", int64(10), int64(1), false, "h", "\xfe", "")
	f.Fuzz(func(t *testing.T, rrHeaders []byte, id, job string, prio, delay int64, autoAck bool, key, val, messageID string) {
		table := amqp.Table{
			jobs.RRID: id, jobs.RRJob: job, jobs.RRHeaders: rrHeaders, jobs.RRPriority: prio,
			jobs.RRDelay: delay, jobs.RRAutoAck: autoAck, key: val,
		}
		m, _ := decodeMessage(table, messageID, 10)
		require.NotEmpty(t, m.id)
		require.NotEmpty(t, m.job)
		require.Positive(t, m.priority)
		require.GreaterOrEqual(t, m.delay, int64(0))
		for k := range m.headers {
			require.False(t, k == "x-death" || k == jobs.RRID && key == jobs.RRID && string(rrHeaders) == "", "reserved header %q leaked", k)
		}

		// What we encode, we decode.
		if !utf8.ValidString(key) || !utf8.ValidString(val) || id == "" || job == "" || prio <= 0 || !utf8.ValidString(id) || !utf8.ValidString(job) {
			return
		}
		headers := map[string][]string{key: {val}}
		enc, err := encodeTable(id, job, "p", headers, max(delay, 0), prio, autoAck)
		require.NoError(t, err)
		require.NoError(t, enc.Validate())
		got, warnings := decodeMessage(enc, "", 10)
		require.Empty(t, warnings)
		require.Equal(t, id, got.id)
		require.Equal(t, job, got.job)
		require.Equal(t, prio, got.priority)
		require.Equal(t, autoAck, got.autoAck)
		require.Equal(t, headers, got.headers)
	})
}
