package jobs

import (
	"context"
	"net/http"
	"regexp"
	"testing"

	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// The headers newRootInto writes are what starting a root span and injecting it writes: the same
// keys and formats, a valid sampled trace that the propagators read back, new ids every time.
func TestNewRootIntoMatchesTheSDK(t *testing.T) {
	tr := newTracing()
	viaSDK := map[string][]string{}
	ctx, span := tr.start(context.Background(), "push")
	tr.inject(ctx, viaSDK)
	span.End()

	fast := map[string][]string{}
	require.True(t, tr.newRootInto(fast))
	require.Len(t, fast, len(viaSDK))
	for k := range viaSDK {
		require.Contains(t, fast, k)
		require.Len(t, fast[k], 1)
	}
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, fast[headerTraceparent][0])
	require.Regexp(t, `^[0-9a-f]{32}:[0-9a-f]{16}:0:1$`, fast[headerUberTraceID][0])

	for _, key := range []string{headerTraceparent, headerUberTraceID} {
		only := map[string][]string{key: fast[key]}
		sc := trace.SpanContextFromContext(tr.extract(context.Background(), only))
		require.True(t, sc.IsValid(), key)
		require.True(t, sc.IsSampled(), key)
		m := regexp.MustCompile(`[0-9a-f]{32}`).FindString(fast[key][0])
		require.Equal(t, m, sc.TraceID().String())
	}

	other := map[string][]string{}
	require.True(t, tr.newRootInto(other))
	require.NotEqual(t, fast[headerTraceparent], other[headerTraceparent])
}

// Jobs that bring a trace context or baggage, and every job once spans are exported, take the SDK.
func TestNewRootIntoDefersToTheSDK(t *testing.T) {
	tr := newTracing()
	for _, h := range []map[string][]string{
		{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		{"Uber-Trace-Id": {"4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1"}},
		{"baggage": {"k=v"}},
	} {
		before := len(h)
		require.False(t, tr.newRootInto(h))
		require.Len(t, h, before, "nothing written")
	}
	tr.export(sdktrace.NewTracerProvider())
	require.False(t, tr.newRootInto(map[string][]string{}))
}

// A single push without trace context gets a fresh trace; one with a trace context continues it.
func TestRPCPushTraceHeaders(t *testing.T) {
	p, c := newCapturePlugin(t, map[string]string{"name": "a", "driver": "cap"})
	r := &rpc{p: p}
	require.NoError(t, r.Push(&jobsProto.PushRequest{Job: protoJob("1", "a", nil)}, &jobsProto.Empty{}))
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	require.NoError(t, r.Push(&jobsProto.PushRequest{Job: protoJob("2", "a", map[string][]string{"traceparent": {parent}})}, &jobsProto.Empty{}))

	msgs := c.drivers["a"].msgs
	fresh := http.Header(msgs[0].Headers()).Get("Traceparent")
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, fresh)
	cont := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(msgs[1].Headers())))
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", cont.TraceID().String(), "continues the producer's trace")
	require.NotEqual(t, "00f067aa0ba902b7", cont.SpanID().String(), "as a child span")
}
