package jobs

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/roadrunner-server/errors"
	"go.uber.org/zap"
)

// Push hands one job to its pipeline's driver. A zero priority inherits the pipeline's.
func (p *Plugin) Push(ctx context.Context, msg *Message) error {
	dctx := newLazyDeadline(ctx, time.Now().Add(p.timeout))
	defer dctx.stop()
	return p.push(dctx, msg, sourceSingle)
}

// PushBatch pushes jobs in order. Every job is checked (id, pipeline) before the first is pushed, so a
// malformed batch is refused whole; a driver failure stops the batch at that job and says which one
// (the jobs before it stay pushed, as with stock).
func (p *Plugin) PushBatch(ctx context.Context, msgs []*Message) error {
	const op = errors.Op("jobs_plugin_push_batch")
	for i, m := range msgs {
		if err := p.checkPushable(m); err != nil {
			return errors.E(op, fmt.Errorf("job %d of %d: %w", i+1, len(msgs), err))
		}
	}
	// Each driver call gets jobs.timeout; consecutive calls share one deadline (see callDeadline).
	deadline := callDeadline{parent: ctx, timeout: p.timeout}
	defer deadline.stop()
	for i, m := range msgs {
		if err := p.push(deadline.get(), m, sourceBatch); err != nil {
			return errors.E(op, fmt.Errorf("job %d of %d (id %s) was not pushed, the %d before it were: %w", i+1, len(msgs), m.Ident, i, err))
		}
	}
	return nil
}

// callDeadline hands out contexts that expire jobs.timeout after they were made. A context with a
// deadline costs a timer, so get returns the same one until it has less than timeout - slack left:
// every call still starts with at least 90% of the timeout (all but a second, for timeouts of 10 s
// and more).
type callDeadline struct {
	parent  context.Context
	timeout time.Duration
	ctx     context.Context
	cancel  context.CancelFunc
	renewAt time.Time
}

func (d *callDeadline) get() context.Context {
	now := time.Now()
	if d.ctx == nil || now.After(d.renewAt) {
		d.stop()
		d.ctx, d.cancel = context.WithTimeout(d.parent, d.timeout)
		d.renewAt = now.Add(min(d.timeout/10, time.Second))
	}
	return d.ctx
}

func (d *callDeadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}

// checkPushable validates a job before any driver sees it.
func (p *Plugin) checkPushable(m *Message) error {
	if m.Ident == "" {
		return errors.Str("empty ID field not allowed")
	}
	if p.pipelines.get(m.Pipeline) == nil {
		return fmt.Errorf("no such pipeline, requested: %s", m.Pipeline)
	}
	return nil
}

// push hands msg to its pipeline's driver. ctx carries the driver call's deadline (jobs.timeout).
// It runs on the RPC's own goroutine, which starts with a small stack: the error and log paths live
// in separate functions so that this frame stays small and a push does not make the stack grow.
func (p *Plugin) push(ctx context.Context, msg *Message, src pushSource) error {
	if p.stopping.Load() {
		return p.refuse(fmt.Errorf("the jobs plugin is shutting down, job %s was not pushed", msg.Ident))
	}
	e := p.pipelines.get(msg.Pipeline)
	if e == nil {
		return p.refuse(fmt.Errorf("no such pipeline, requested: %s", msg.Pipeline))
	}
	e.requests[src].Inc()
	if e.driver == nil {
		return p.refuse(fmt.Errorf("pipeline %q is not running: %w", msg.Pipeline, e.err()))
	}
	if msg.Prio == 0 {
		msg.Prio = e.pipe.Priority()
	}
	if msg.sharedHdr && (e.retry != nil || !readOnlyHeaders(e.driver)) {
		msg.Hdr = maps.Clone(msg.Hdr)
		msg.sharedHdr = false
	}
	if e.retry != nil && len(msg.Hdr[HeaderAttempt]) == 0 {
		if msg.Hdr == nil {
			msg.Hdr = make(map[string][]string, 1)
		}
		msg.Hdr[HeaderAttempt] = firstAttempt
	}

	start := time.Now()
	if err := e.driver.Push(ctx, msg); err != nil {
		return p.pushFailed(e, msg, err)
	}
	elapsed := time.Since(start)
	e.latency[src].Observe(elapsed.Seconds())
	p.metrics.pushOK.Inc()
	if p.debugLog {
		p.logPushed(e, msg, elapsed)
	}
	return nil
}

// refuse counts and returns a push that no driver saw.
//
//go:noinline
func (p *Plugin) refuse(err error) error {
	p.metrics.pushErr.Inc()
	return errors.E(errors.Op("jobs_plugin_push"), err)
}

// pushFailed counts, logs and returns a push the driver refused.
//
//go:noinline
func (p *Plugin) pushFailed(e *pipelineEntry, msg *Message, err error) error {
	p.metrics.pushErr.Inc()
	p.log.Error("job push failed", zap.String("id", msg.Ident), zap.String("pipeline", msg.Pipeline), zap.String("driver", e.pipe.Driver()), zap.Error(err))
	return errors.E(errors.Op("jobs_plugin_push"), fmt.Errorf("pipeline %q (driver %s): %w", msg.Pipeline, e.pipe.Driver(), err))
}

//go:noinline
func (p *Plugin) logPushed(e *pipelineEntry, msg *Message, elapsed time.Duration) {
	p.log.Debug("job was pushed successfully", zap.String("id", msg.Ident), zap.String("pipeline", msg.Pipeline), zap.String("driver", e.pipe.Driver()), zap.Duration("elapsed", elapsed))
}

// headersReader is implemented by drivers that never write to the headers map of a message pushed
// to them (nor let anything else write to it later): the plugin may then hand the jobs of a batch one
// shared map of trace headers. Other drivers get a map of their own per job, as before.
type headersReader interface {
	ReadOnlyHeaders() bool
}

func readOnlyHeaders(d any) bool {
	r, ok := d.(headersReader)
	return ok && r.ReadOnlyHeaders()
}

// firstAttempt is the attempt header of a job's first run (shared, never modified).
var firstAttempt = []string{"1"}

// hasTraceContext reports whether the producer sent its own trace context in the headers.
func hasTraceContext(headers map[string][]string) bool {
	for k := range headers {
		if strings.EqualFold(k, "traceparent") || strings.EqualFold(k, "uber-trace-id") {
			return true
		}
	}
	return false
}

// lazyDeadline is a context that expires at deadline, like context.WithDeadline, but it starts a
// timer only when something asks for its Done channel. Drivers that never block in Push (the memory
// driver) never ask, so a single push does not pay for a timer it cannot need. stop cancels it, like
// the cancel function of context.WithDeadline, and releases the timer and the parent watch.
type lazyDeadline struct {
	context.Context // the parent: Value lookups go to it
	deadline        time.Time

	mu        sync.Mutex
	done      chan struct{} // made by the first Done call
	err       error         // set once: expired, parent done, or stopped
	timer     *time.Timer
	stopWatch func() bool
}

func newLazyDeadline(parent context.Context, deadline time.Time) *lazyDeadline {
	if d, ok := parent.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return &lazyDeadline{Context: parent, deadline: deadline}
}

func (c *lazyDeadline) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *lazyDeadline) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	if c.err == nil {
		c.err = c.expiredLocked()
	}
	if c.err != nil {
		close(c.done)
		return c.done
	}
	c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.finish(context.DeadlineExceeded) })
	if c.Context.Done() != nil {
		c.stopWatch = context.AfterFunc(c.Context, func() { c.finish(c.Context.Err()) })
	}
	return c.done
}

func (c *lazyDeadline) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && c.done == nil {
		// No timer runs before Done was called: look at the parent and the clock.
		c.err = c.expiredLocked()
	}
	return c.err
}

// expiredLocked is the error the context has now because of its parent or its deadline, or nil.
func (c *lazyDeadline) expiredLocked() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *lazyDeadline) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
}

// stop cancels the context and releases its timer and parent watch.
func (c *lazyDeadline) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.stopWatch != nil {
		c.stopWatch()
	}
	if c.err == nil {
		c.err = context.Canceled
		if c.done != nil {
			close(c.done)
		}
	}
}
