package tests

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/roadrunner-server/goridge/v3/pkg/socket"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// rawCall sends one goridge RPC frame with any body and returns the reply frame's flags and text.
func rawCall(t *testing.T, addr, method string, body []byte) (byte, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	relay := socket.NewSocketRelay(conn)
	fr := frame.NewFrame()
	fr.WriteVersion(fr.Header(), frame.Version1)
	fr.WriteFlags(fr.Header(), frame.CodecProto)
	fr.WriteOptions(fr.HeaderPtr(), 1, uint32(len(method)))
	fr.WritePayloadLen(fr.Header(), uint32(len(method)+len(body)))
	fr.WritePayload(append([]byte(method), body...))
	fr.WriteCRC(fr.Header())
	require.NoError(t, relay.Send(fr))
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	in := frame.NewFrame()
	require.NoError(t, relay.Receive(in))
	opts := in.ReadOptions(in.Header())
	require.Len(t, opts, 2)
	return in.ReadFlags(), string(in.Payload()[opts[1]:])
}

func TestBadInputGetsClearErrors(t *testing.T) {
	s, c := start(t, twoPipelines)

	flags, text := rawCall(t, s.RPC, "jobs.Push", []byte{0xff, 0xff, 0xff, 0x01})
	require.NotZero(t, flags&frame.ERROR, "malformed protobuf is an error reply: %s", text)

	flags, text = rawCall(t, s.RPC, "jobs.Push", nil)
	require.NotZero(t, flags&frame.ERROR)
	require.Contains(t, text, "job is required")

	require.ErrorContains(t, c.Push(helpers.Job{Pipeline: "p1", ID: "", Payload: "x"}), "empty ID field not allowed")
	err := c.Push(helpers.Job{Pipeline: "nope", ID: "x", Payload: "x"})
	require.ErrorContains(t, err, "no such pipeline, requested: nope")

	// A large payload travels intact and the server keeps serving.
	big := helpers.Action("ack", "pad", strings.Repeat("x", 8<<20))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "big", Payload: big}))
	got := s.WaitEvents(t, 20*time.Second, "start", "big", 1)[0]
	require.Len(t, got.Payload, len(big))
	s.WaitEvents(t, 20*time.Second, "done", "big", 1)

	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "still-alive", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "still-alive", 1)
}

func TestPHPProducerIsWireCompatible(t *testing.T) {
	s, _ := start(t, twoPipelines)
	res := helpers.Producer(t, s.RPC, "push", map[string]any{"pipeline": "p1", "job": "php.task", "payload": map[string]any{"action": "ack"}, "headers": map[string][]string{"h": {"v"}}})
	require.Equal(t, true, res["ok"], "%v", res)
	id := res["id"].(string)
	got := s.WaitEvents(t, 10*time.Second, "done", id, 1)
	require.Len(t, got, 1)
	st := s.Events(t, "start", id)[0]
	require.Equal(t, "php.task", st.Job)
	require.Equal(t, []string{"v"}, st.Headers["h"])

	res = helpers.Producer(t, s.RPC, "list", nil)
	require.Equal(t, true, res["ok"], "%v", res)
	require.Equal(t, []any{"p1", "p2"}, res["result"].(map[string]any)["pipelines"])

	res = helpers.Producer(t, s.RPC, "stat", nil)
	require.Equal(t, true, res["ok"], "%v", res)
	require.Len(t, res["result"].(map[string]any)["stats"], 2)

	res = helpers.Producer(t, s.RPC, "push", map[string]any{"pipeline": "p1", "id": "", "payload": "x"})
	require.Equal(t, false, res["ok"])
	require.Contains(t, res["error"], "empty ID field not allowed")

	res = helpers.Producer(t, s.RPC, "declare", map[string]any{"pipeline": map[string]any{"name": "php-made", "driver": "memory", "priority": 10, "prefetch": 10}})
	require.Equal(t, true, res["ok"], "%v", res)
	res = helpers.Producer(t, s.RPC, "resume", map[string]any{"pipelines": []string{"php-made"}})
	require.Equal(t, true, res["ok"], "%v", res)
	res = helpers.Producer(t, s.RPC, "push_batch", map[string]any{"jobs": []map[string]any{{"pipeline": "php-made", "payload": map[string]any{"action": "ack"}}, {"pipeline": "php-made", "payload": map[string]any{"action": "ack"}}}})
	require.Equal(t, true, res["ok"], "%v", res)
	for _, id := range res["ids"].([]any) {
		s.WaitEvents(t, 10*time.Second, "done", id.(string), 1)
	}
}
