package jobs

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"unsafe"

	jprop "go.opentelemetry.io/contrib/propagators/jaeger"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation name of every span the plugin starts (stock: "jobs").
const tracerName = "jobs"

// Tracer is implemented by the otel plugin. When it is present the plugin's spans are exported;
// otherwise a bare SDK provider still produces valid trace ids, so PHP always sees a Traceparent.
type Tracer interface {
	Tracer() *sdktrace.TracerProvider
}

// tracing starts spans and moves trace context in and out of job headers. It exists from Init on, so
// RPCs that arrive before Serve (server.on_init scripts) work; Serve switches it to the otel plugin's
// provider when there is one.
type tracing struct {
	tracer atomic.Value // trace.Tracer
	prop   propagation.TextMapPropagator
	// exported is true when spans go somewhere (the otel plugin is registered). Per-job listener
	// spans are only worth their cost then.
	exported atomic.Bool
}

func newTracing() *tracing {
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}, jprop.Jaeger{})
	otel.SetTextMapPropagator(prop)
	t := &tracing{prop: prop}
	t.tracer.Store(sdktrace.NewTracerProvider().Tracer(tracerName))
	return t
}

// export sends spans to tp from now on.
func (t *tracing) export(tp *sdktrace.TracerProvider) {
	if tp == nil {
		return
	}
	t.tracer.Store(tp.Tracer(tracerName))
	t.exported.Store(true)
}

// extract continues a trace the producer sent in the job headers, whatever the header case
// (roadrunner#1935: stock ignored it and started a new trace).
func (t *tracing) extract(ctx context.Context, headers map[string][]string) context.Context {
	if len(headers) == 0 {
		return ctx
	}
	carrier := http.Header(headers)
	for k := range headers {
		if http.CanonicalHeaderKey(k) != k {
			carrier = make(http.Header, len(headers))
			for k2, v2 := range headers {
				carrier[http.CanonicalHeaderKey(k2)] = v2
			}
			break
		}
	}
	return t.prop.Extract(ctx, propagation.HeaderCarrier(carrier))
}

// inject writes the trace context of ctx into headers under canonical keys (Traceparent,
// Uber-Trace-Id, Baggage), which is where PHP workers read them.
func (t *tracing) inject(ctx context.Context, headers map[string][]string) {
	t.prop.Inject(ctx, propagation.HeaderCarrier(headers))
}

// newRootInto gives a job without trace context of its own a new trace, when spans are not exported:
// it writes the Traceparent and Uber-Trace-Id headers that starting a root span and injecting it
// would write (a fresh random trace id and span id, sampled, as the SDK's default ParentBased
// sampler decides for a root), without building a span that nothing would export. Single pushes pay
// for this once per job. It reports false, and writes nothing, when spans are exported or the
// headers carry a trace context or baggage: those take start and inject.
func (t *tracing) newRootInto(headers map[string][]string) bool {
	if t.exported.Load() || hasTraceContext(headers) || hasBaggage(headers) {
		return false
	}
	var tid, sid [16]byte
	for {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
		if tid != [16]byte{} {
			break
		}
	}
	for {
		binary.BigEndian.PutUint64(sid[:8], rand.Uint64())
		if [8]byte(sid[:8]) != [8]byte{} {
			break
		}
	}
	// One allocation holds both values: "00-<trace>-<span>-01" and "<trace>:<span>:0:1".
	const traceparentLen = 3 + 32 + 1 + 16 + 3
	b := make([]byte, 0, traceparentLen+32+1+16+4)
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sid[:8])
	b = append(b, "-01"...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, ':')
	b = hex.AppendEncode(b, sid[:8])
	b = append(b, ":0:1"...)
	both := unsafe.String(unsafe.SliceData(b), len(b))
	vals := &[2]string{both[:traceparentLen], both[traceparentLen:]}
	headers[headerTraceparent] = vals[0:1:1]
	headers[headerUberTraceID] = vals[1:2:2]
	return true
}

// Trace headers as inject writes them (http.CanonicalHeaderKey of the propagators' keys).
const (
	headerTraceparent = "Traceparent"
	headerUberTraceID = "Uber-Trace-Id"
)

// hasBaggage reports whether the producer sent W3C baggage, which inject would carry over.
func hasBaggage(headers map[string][]string) bool {
	for k := range headers {
		if strings.EqualFold(k, "baggage") {
			return true
		}
	}
	return false
}

// start starts a server span named op.
func (t *tracing) start(ctx context.Context, op string) (context.Context, trace.Span) {
	return t.tracer.Load().(trace.Tracer).Start(ctx, op, trace.WithSpanKind(trace.SpanKindServer))
}
