package kafka

import (
	"encoding/binary"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRecordRoundTrip(t *testing.T) {
	due := time.UnixMilli(time.Now().Add(time.Minute).UnixMilli())
	in := &recordJob{
		ID: "id-1", Job: "app.job", Pipeline: "p1", Priority: 5, AutoAck: true, DelayUntil: due,
		Headers: map[string][]string{"b": {"2"}, "a": {"1", "1b"}, hdrJob: {"spoofed"}},
		Payload: []byte("body"),
	}
	rec := encodeRecord("orders", in)
	require.Equal(t, "orders", rec.Topic)
	require.Equal(t, []byte("id-1"), rec.Key)
	// Headers are written in a stable order, one per value, then the rr_* ones.
	var keys []string
	for _, h := range rec.Headers {
		keys = append(keys, h.Key)
	}
	require.Equal(t, []string{"a", "a", "b", hdrJob, hdrPipeline, hdrPriority, hdrAutoAck, hdrDelayUntil}, keys)

	out := decodeRecord(rec)
	require.Equal(t, &recordJob{
		ID: "id-1", Job: "app.job", Pipeline: "p1", Priority: 5, AutoAck: true, DelayUntil: due,
		Headers: map[string][]string{"a": {"1", "1b"}, "b": {"2"}}, Payload: []byte("body"),
	}, out)

	// The stock driver's encoding of rr_priority (8 bytes little-endian) is what we write.
	for _, h := range rec.Headers {
		if h.Key == hdrPriority {
			require.Equal(t, uint64(5), binary.LittleEndian.Uint64(h.Value))
		}
	}
}

func TestDecodeForeignRecord(t *testing.T) {
	// A record from another producer: no key, no rr_* headers, a nil value.
	out := decodeRecord(&kgo.Record{Topic: "t", Headers: []kgo.RecordHeader{{Key: "x", Value: []byte("y")}}})
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`), out.ID)
	require.Equal(t, deducedJob, out.Job)
	require.Equal(t, int64(0), out.Priority)
	require.Equal(t, []byte{}, out.Payload)
	require.Equal(t, map[string][]string{"x": {"y"}}, out.Headers)
	require.True(t, out.DelayUntil.IsZero())

	// Malformed rr_* headers are ignored; a decimal priority is read.
	out = decodeRecord(&kgo.Record{Key: []byte("k"), Headers: []kgo.RecordHeader{
		{Key: hdrPriority, Value: []byte("3")}, {Key: hdrDelayUntil, Value: []byte("soon")}, {Key: hdrAutoAck, Value: []byte("yes")},
	}})
	require.Equal(t, int64(3), out.Priority)
	require.True(t, out.DelayUntil.IsZero())
	require.False(t, out.AutoAck)
	require.Nil(t, out.Headers)
	require.Equal(t, int64(0), decodePriority([]byte{1, 2, 3}), "the stock driver panicked on a short rr_priority")
	neg := make([]byte, 8)
	binary.LittleEndian.PutUint64(neg, ^uint64(0))
	require.Equal(t, int64(0), decodePriority(neg))
}

// FuzzDecodeRecord: any record from the broker decodes without a panic, and what the driver
// encodes decodes to the same job.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte("id"), []byte("payload"), "rr_priority", []byte{5, 0, 0, 0, 0, 0, 0, 0}, "h", []byte("v"))
	f.Add([]byte{}, []byte(nil), "rr_delay_until", []byte("99999999999999999999"), "rr_job", []byte{0xff})
	f.Add([]byte("k"), []byte("{}"), "rr_auto_ack", []byte("true"), "rr_pipeline", []byte(""))
	f.Add([]byte("k"), []byte("x"), "rr_priority", []byte{1}, "rr_delay_until", []byte("-5"))
	f.Fuzz(func(t *testing.T, key, value []byte, h1 string, v1 []byte, h2 string, v2 []byte) {
		rec := &kgo.Record{Topic: "t", Key: key, Value: value, Headers: []kgo.RecordHeader{{Key: h1, Value: v1}, {Key: h2, Value: v2}}}
		j := decodeRecord(rec)
		if j.ID == "" || j.Job == "" || j.Payload == nil || j.Priority < 0 {
			t.Fatalf("incomplete job %+v", j)
		}
		for k := range j.Headers {
			if internalHeaders[k] {
				t.Fatalf("internal header %q leaked", k)
			}
		}
		again := decodeRecord(encodeRecord("t", j))
		if again.ID != j.ID || again.Job != j.Job || again.Priority != j.Priority || again.AutoAck != j.AutoAck ||
			string(again.Payload) != string(j.Payload) || len(again.Headers) != len(j.Headers) ||
			again.DelayUntil.UnixMilli() != j.DelayUntil.UnixMilli() {
			t.Fatalf("round trip changed the job: %+v -> %+v", j, again)
		}
	})
}

func TestTrackerCommitPoint(t *testing.T) {
	tr := newTracker(tpKey{"t", 0})
	_, ok := tr.commitPoint()
	require.False(t, ok)
	e5, e6, e9 := tr.add(5), tr.add(6), tr.add(9) // a gap (compaction, transaction markers)
	cp, _ := tr.commitPoint()
	require.Equal(t, int64(5), cp)
	tr.settle(e6)
	cp, _ = tr.commitPoint()
	require.Equal(t, int64(5), cp, "never past the unfinished 5")
	tr.settle(e5)
	cp, _ = tr.commitPoint()
	require.Equal(t, int64(9), cp)
	tr.settle(e9)
	cp, _ = tr.commitPoint()
	require.Equal(t, int64(10), cp)
	require.Empty(t, tr.pending)
}
