package jobs

import (
	"context"
	"sync"
	"testing"
	"time"

	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// captureConstructor builds captureDrivers: they record the messages pushed to them. A pipeline
// declared with "ro": "true" gets a driver that declares read-only headers.
type captureConstructor struct {
	mu      sync.Mutex
	drivers map[string]*captureDriver
}

func (*captureConstructor) Name() string { return "cap" }
func (c *captureConstructor) DriverFromConfig(_ string, _ jobs.Queue, p jobs.Pipeline) (jobs.Driver, error) {
	return c.build(p), nil
}
func (c *captureConstructor) DriverFromPipeline(p jobs.Pipeline, _ jobs.Queue) (jobs.Driver, error) {
	return c.build(p), nil
}

func (c *captureConstructor) build(p jobs.Pipeline) jobs.Driver {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := &captureDriver{}
	if c.drivers == nil {
		c.drivers = map[string]*captureDriver{}
	}
	c.drivers[p.Name()] = d
	if p.Bool("ro", false) {
		return &readOnlyCaptureDriver{d}
	}
	return d
}

type captureDriver struct {
	nopDriver
	mu   sync.Mutex
	msgs []jobs.Message
	ctxs []context.Context
}

func (d *captureDriver) Push(ctx context.Context, m jobs.Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.msgs = append(d.msgs, m)
	d.ctxs = append(d.ctxs, ctx)
	return nil
}

type readOnlyCaptureDriver struct{ *captureDriver }

func (*readOnlyCaptureDriver) ReadOnlyHeaders() bool { return true }

func newCapturePlugin(t *testing.T, pipelines ...map[string]string) (*Plugin, *captureConstructor) {
	t.Helper()
	p, _ := newTestPlugin(t)
	c := &captureConstructor{}
	p.constructors["cap"] = c
	for _, pl := range pipelines {
		require.NoError(t, p.Declare(context.Background(), pl))
	}
	return p, c
}

func protoJob(id, pipeline string, headers map[string][]string) *jobsProto.Job {
	h := map[string]*jobsProto.HeaderValue{}
	for k, v := range headers {
		h[k] = &jobsProto.HeaderValue{Value: v}
	}
	return &jobsProto.Job{Job: "j", Id: id, Payload: []byte("x"), Headers: h, Options: &jobsProto.Options{Pipeline: pipeline}}
}

// Jobs of a batch without headers of their own share one map of trace headers only with drivers that
// declare read-only headers; the others get a map each. Every job carries the batch's trace context.
func TestPushBatchSharesTraceHeadersOnlyWithReadOnlyDrivers(t *testing.T) {
	p, c := newCapturePlugin(t,
		map[string]string{"name": "ro", "driver": "cap", "ro": "true"},
		map[string]string{"name": "rw", "driver": "cap"},
	)
	req := &jobsProto.PushBatchRequest{Jobs: []*jobsProto.Job{
		protoJob("1", "ro", nil), protoJob("2", "ro", nil), protoJob("3", "rw", nil), protoJob("4", "rw", nil),
		protoJob("5", "ro", map[string][]string{"user": {"v"}}),
	}}
	require.NoError(t, (&rpc{p: p}).PushBatch(req, &jobsProto.Empty{}))

	ro, rw := c.drivers["ro"].msgs, c.drivers["rw"].msgs
	require.Len(t, ro, 3)
	require.Len(t, rw, 2)
	trace := ro[0].Headers()["Traceparent"]
	require.Len(t, trace, 1)
	for _, m := range append(append([]jobs.Message{}, ro...), rw...) {
		require.Equal(t, trace, m.Headers()["Traceparent"], "job %s joins the batch trace", m.ID())
		require.NotEmpty(t, m.Headers()["Uber-Trace-Id"])
	}
	same := func(a, b jobs.Message) bool {
		a.Headers()["probe"] = []string{a.ID()}
		defer delete(a.Headers(), "probe")
		_, ok := b.Headers()["probe"]
		return ok
	}
	require.True(t, same(ro[0], ro[1]), "read-only driver: one shared map")
	require.False(t, same(rw[0], rw[1]), "other drivers: a map per job")
	require.False(t, same(ro[0], rw[0]))
	require.False(t, same(ro[0], ro[2]), "a job with headers of its own keeps its map")
	require.Equal(t, []string{"v"}, ro[2].Headers()["user"])
}

// A pipeline with a retry policy writes the attempt header into a job's own map, never into the
// batch's shared one.
func TestPushBatchAttemptHeaderDoesNotLeakIntoSharedHeaders(t *testing.T) {
	p, c := newCapturePlugin(t,
		map[string]string{"name": "retry", "driver": "cap", "ro": "true", "retry.max_attempts": "3"},
		map[string]string{"name": "plain", "driver": "cap", "ro": "true"},
	)
	req := &jobsProto.PushBatchRequest{Jobs: []*jobsProto.Job{protoJob("1", "retry", nil), protoJob("2", "plain", nil), protoJob("3", "retry", nil)}}
	require.NoError(t, (&rpc{p: p}).PushBatch(req, &jobsProto.Empty{}))
	for _, m := range c.drivers["retry"].msgs {
		require.Equal(t, []string{"1"}, m.Headers()[HeaderAttempt])
	}
	require.NotContains(t, c.drivers["plain"].msgs[0].Headers(), HeaderAttempt)
}

// Every driver call of a batch has a deadline of about jobs.timeout; consecutive calls share one
// context until it has aged by a tenth of the timeout.
func TestPushBatchDeadlines(t *testing.T) {
	p, c := newCapturePlugin(t, map[string]string{"name": "a", "driver": "cap"})
	p.timeout = 500 * time.Millisecond
	jobsList := make([]*jobsProto.Job, 3)
	for i := range jobsList {
		jobsList[i] = protoJob(string(rune('a'+i)), "a", nil)
	}
	start := time.Now()
	require.NoError(t, (&rpc{p: p}).PushBatch(&jobsProto.PushBatchRequest{Jobs: jobsList}, &jobsProto.Empty{}))
	ctxs := c.drivers["a"].ctxs
	require.Len(t, ctxs, 3)
	for _, ctx := range ctxs {
		dl, ok := ctx.Deadline()
		require.True(t, ok)
		require.WithinDuration(t, start.Add(p.timeout), dl, 100*time.Millisecond)
	}
	require.Same(t, ctxs[0], ctxs[2], "one context for calls close together")
	require.Error(t, ctxs[0].Err(), "cancelled once the batch is done")

	d := callDeadline{parent: context.Background(), timeout: 100 * time.Millisecond}
	defer d.stop()
	first := d.get()
	require.Same(t, first, d.get())
	for !time.Now().After(d.renewAt) { // the clock passes renewAt (a tenth of the timeout)
		time.Sleep(time.Millisecond)
	}
	second := d.get()
	require.NotSame(t, first, second)
	require.ErrorIs(t, first.Err(), context.Canceled)
	dl, _ := second.Deadline()
	require.Greater(t, time.Until(dl), 80*time.Millisecond)
}

// A single push gets a deadline of jobs.timeout that needs no timer until Done is asked for.
func TestLazyDeadline(t *testing.T) {
	t.Run("no timer unless Done is called", func(t *testing.T) {
		c := newLazyDeadline(context.Background(), time.Now().Add(time.Minute))
		require.NoError(t, c.Err())
		dl, ok := c.Deadline()
		require.True(t, ok)
		require.WithinDuration(t, time.Now().Add(time.Minute), dl, time.Second)
		require.Nil(t, c.timer)
		c.stop()
		require.ErrorIs(t, c.Err(), context.Canceled)
		select {
		case <-c.Done():
		default:
			t.Fatal("Done of a stopped context must be closed")
		}
	})
	t.Run("expires at the deadline", func(t *testing.T) {
		c := newLazyDeadline(context.Background(), time.Now().Add(30*time.Millisecond))
		defer c.stop()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done was not closed at the deadline")
		}
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		wrapped, cancel := context.WithCancel(c)
		defer cancel()
		require.ErrorIs(t, wrapped.Err(), context.DeadlineExceeded)
	})
	t.Run("Err after the deadline without Done", func(t *testing.T) {
		c := newLazyDeadline(context.Background(), time.Now().Add(-time.Millisecond))
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		<-c.Done()
	})
	t.Run("parent cancellation", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
		c := newLazyDeadline(parent, time.Now().Add(time.Minute))
		defer c.stop()
		require.Equal(t, "v", c.Value(ctxKey{}))
		done := c.Done()
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("parent cancellation did not reach Done")
		}
		require.ErrorIs(t, c.Err(), context.Canceled)
	})
	t.Run("earlier parent deadline wins", func(t *testing.T) {
		parent, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c := newLazyDeadline(parent, time.Now().Add(time.Hour))
		dl, _ := c.Deadline()
		want, _ := parent.Deadline()
		require.Equal(t, want, dl)
	})
}

type ctxKey struct{}

// A single push hands the driver a context with jobs.timeout as its deadline.
func TestPushDeadline(t *testing.T) {
	p, c := newCapturePlugin(t, map[string]string{"name": "a", "driver": "cap"})
	start := time.Now()
	require.NoError(t, p.Push(context.Background(), &Message{Ident: "1", Pipeline: "a"}))
	dl, ok := c.drivers["a"].ctxs[0].Deadline()
	require.True(t, ok)
	require.WithinDuration(t, start.Add(p.timeout), dl, time.Second)
	require.ErrorIs(t, c.drivers["a"].ctxs[0].Err(), context.Canceled, "cancelled when Push returns")
}

// With a debug logger every accepted push is logged with its id and pipeline.
func TestPushLogsAcceptedJobAtDebugLevel(t *testing.T) {
	p, c := newCapturePlugin(t, map[string]string{"name": "a", "driver": "cap"})
	core, logs := observer.New(zapcore.DebugLevel)
	p.log, p.debugLog = zap.New(core), true
	require.NoError(t, (&rpc{p: p}).Push(&jobsProto.PushRequest{Job: protoJob("id-1", "a", nil)}, &jobsProto.Empty{}))
	got := c.drivers["a"].msgs
	require.Len(t, got, 1)
	require.Equal(t, "id-1", got[0].ID())
	pushed := logs.FilterMessage("job was pushed successfully").All()
	require.Len(t, pushed, 1)
	require.Equal(t, "id-1", pushed[0].ContextMap()["id"])
	require.Equal(t, "a", pushed[0].ContextMap()["pipeline"])
}
