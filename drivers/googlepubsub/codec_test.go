package googlepubsub

import (
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestEncodeIsTheStockLayout(t *testing.T) {
	w := &wireJob{ID: "i", Job: "j", Payload: []byte("p"), Headers: map[string][]string{"a": {"1"}}, Priority: 3, Delay: 5, AutoAck: true}
	m, err := w.encode()
	require.NoError(t, err)
	require.Equal(t, []byte("p"), m.GetData())
	require.Equal(t, map[string]string{
		"rr_id": "i", "rr_job": "j", "rr_delay": "5", "rr_headers": `{"a":["1"]}`, "rr_priority": "3", "rr_auto_ack": "true",
	}, m.GetAttributes())

	m, err = (&wireJob{ID: "i"}).encode()
	require.NoError(t, err)
	require.Equal(t, "{}", m.GetAttributes()["rr_headers"])
	require.NotNil(t, m.GetData())
}

func TestDecodeRoundTrip(t *testing.T) {
	w := wireJob{ID: "i", Job: "j", Payload: []byte("p"), Headers: map[string][]string{"a": {"1", "2"}}, Priority: 3, Delay: 5, AutoAck: true}
	m, err := w.encode()
	require.NoError(t, err)
	d := decodeMessage(m, 10)
	require.Empty(t, d.Warnings)
	require.Equal(t, w, d.wireJob)
}

func TestDecodeFallsBackOnBadAttributes(t *testing.T) {
	d := decodeMessage(&pb.PubsubMessage{MessageId: "m1", Attributes: map[string]string{
		"rr_id": "i", "rr_job": "j", "rr_priority": "high", "rr_delay": "soon", "rr_auto_ack": "perhaps", "rr_headers": "not json",
	}}, 7)
	require.Equal(t, "i", d.ID)
	require.Equal(t, int64(7), d.Priority)
	require.Zero(t, d.Delay)
	require.False(t, d.AutoAck)
	require.Nil(t, d.Headers)
	require.Len(t, d.Warnings, 4)

	// Stock writes the priority as given: 0 (and negatives) inherit the pipeline's.
	d = decodeMessage(&pb.PubsubMessage{Attributes: map[string]string{"rr_id": "i", "rr_priority": "0", "rr_delay": "-3"}}, 7)
	require.Equal(t, int64(7), d.Priority)
	require.Zero(t, d.Delay)
	require.Empty(t, d.Warnings)

	// Hand-written headers are read leniently.
	d = decodeMessage(&pb.PubsubMessage{Attributes: map[string]string{"rr_id": "i", "rr_headers": `{"s":"x","n":3,"l":[1,"y"],"z":null}`}}, 7)
	require.Equal(t, map[string][]string{"s": {"x"}, "n": {"3"}, "l": {"1", "y"}}, d.Headers)

	d = decodeMessage(nil, 7)
	require.Equal(t, foreignJobName, d.Job)
	require.NotEmpty(t, d.Warnings)
}

func TestDecodeForeignMessage(t *testing.T) {
	d := decodeMessage(&pb.PubsubMessage{MessageId: "m1", Data: []byte("x"), Attributes: map[string]string{"origin": "crm"}}, 10)
	require.Equal(t, "m1", d.ID)
	require.Equal(t, foreignJobName, d.Job)
	require.Equal(t, int64(10), d.Priority)
	require.Equal(t, map[string][]string{"origin": {"crm"}}, d.Headers)
	require.Empty(t, d.Warnings)
}

func TestHeadersAreSplitOnRuneBoundaries(t *testing.T) {
	h := map[string][]string{"k": {strings.Repeat("€", 2000)}} // 6000 bytes
	m, err := (&wireJob{ID: "i", Headers: h}).encode()
	require.NoError(t, err)
	attrs := m.GetAttributes()
	n, err := strconv.Atoi(attrs[attrHeadersParts])
	require.NoError(t, err)
	require.Greater(t, n, 5)
	for k, v := range attrs {
		require.LessOrEqual(t, len(v), maxAttrValue, k)
		require.True(t, utf8.ValidString(v), k)
	}
	d := decodeMessage(m, 10)
	require.Empty(t, d.Warnings)
	require.Equal(t, h, d.Headers)

	// A part gone missing is reported, not a panic.
	delete(attrs, attrHeaders+"_2")
	d = decodeMessage(m, 10)
	require.NotEmpty(t, d.Warnings)
	require.Nil(t, d.Headers)
}

func TestDueAt(t *testing.T) {
	now := time.Now()
	pub := now.Add(-3 * time.Second)
	m := &pb.PubsubMessage{PublishTime: timestamppb.New(pub)}
	require.True(t, dueAt(m, 0, now).IsZero())
	require.Equal(t, pub.Add(5*time.Second).UnixNano(), dueAt(m, 5, now).UnixNano())
	require.Equal(t, now.Add(5*time.Second), dueAt(&pb.PubsubMessage{}, 5, now))
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add("i", "j", "3", "5", "true", `{"a":["1"]}`, "", "", []byte("payload"))
	f.Add("", "", "x", "-1", "maybe", `not json`, "2", "rest", []byte{})
	f.Add("i", "", "", "", "", `{"s":"x","n":1,"o":{"k":[1]}}`, "", "", []byte(nil))
	f.Add("i", "j", "9223372036854775807", "99999999999", "1", `{"a":`, "3", `["1"]}`, []byte("x"))
	f.Fuzz(func(t *testing.T, id, job, prio, delay, autoAck, headers, parts, part1 string, data []byte) {
		attrs := map[string]string{}
		for k, v := range map[string]string{attrID: id, attrJob: job, attrPriority: prio, attrDelay: delay, attrAutoAck: autoAck, attrHeaders: headers, attrHeadersParts: parts, attrHeaders + "_1": part1} {
			if v != "" {
				attrs[k] = v
			}
		}
		m := &pb.PubsubMessage{MessageId: "m", Data: data, Attributes: attrs, PublishTime: timestamppb.Now()}
		d := decodeMessage(m, 10)
		require.NotEmpty(t, d.ID)
		require.NotEmpty(t, d.Job)
		require.Positive(t, d.Priority)
		require.GreaterOrEqual(t, d.Delay, int64(0))
		require.LessOrEqual(t, d.Delay, int64(maxDelaySeconds))
		_ = dueAt(m, d.Delay, time.Now())

		// Whatever was read encodes and reads back the same.
		d.Warnings = nil
		if !utf8.ValidString(d.ID) || !utf8.ValidString(d.Job) {
			return
		}
		enc, err := d.wireJob.encode()
		if err != nil {
			return // headers too large for the attributes
		}
		back := decodeMessage(enc, 10)
		require.Equal(t, d.ID, back.ID)
		require.Equal(t, d.Job, back.Job)
		require.Equal(t, d.Priority, back.Priority)
		require.Equal(t, d.Delay, back.Delay)
		require.Equal(t, d.AutoAck, back.AutoAck)
		require.Equal(t, len(d.Headers), len(back.Headers))
	})
}
