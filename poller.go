package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/roadrunner-server/pool/payload"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// failureRetryDelay is how long a job that could not run (no free worker, crash, exec_ttl, error
// frame) waits before its driver hands it out again. Short, but long enough that a crash loop does
// not spin. Stock dropped such jobs on the memory driver.
const failureRetryDelay = 1 // seconds

// policyDelay asks retryOrGiveUp for the policy's backoff instead of a worker-given delay.
const policyDelay = -1

var errStreamNotSupported = errors.New("the worker answered with a stream, which jobs do not support")

// poll takes jobs from the group's queue until intake stops.
func (g *workerGroup) poll(h *jobHandler) {
	// The stream-cancel channel the pool wants with every Exec. Jobs never stream, so one channel
	// serves all of this poller's jobs; it is replaced only after a worker streamed and it was closed.
	stopStream := make(chan struct{})
	for {
		job, err := g.queue.ExtractMinContext(g.pollCtx)
		if err != nil {
			return
		}
		h.handle(g, job, &stopStream)
	}
}

// exec runs one job on a worker and returns the worker's reply. *stopStream is passed to the pool;
// when the worker answers with a stream it is closed to cancel the stream, and replaced.
func (g *workerGroup) exec(pld *payload.Payload, stopStream *chan struct{}) (*payload.Payload, error) {
	g.resetMu.RLock()
	defer g.resetMu.RUnlock()

	replies, err := g.pool.Exec(g.execCtx, pld, *stopStream)
	if err != nil {
		return nil, err
	}
	first := <-replies
	if first == nil {
		return nil, errors.New("the worker pool returned no reply")
	}
	if first.Error() != nil {
		return nil, first.Error()
	}
	rsp := first.Payload()
	if rsp.Flags&frame.STREAM != 0 {
		// Cancel the stream and let the pool take the worker back.
		close(*stopStream)
		*stopStream = make(chan struct{})
		go func() {
			for range replies { //nolint:revive // drain
			}
		}()
		return nil, errStreamNotSupported
	}
	return rsp, nil
}

// jobHandler runs a job on a worker and applies the worker's verdict to the job's driver.
type jobHandler struct {
	metrics   *metrics
	tracing   *tracing
	log       *zap.Logger
	pipelines *registry
	// timeout bounds a dead-letter push.
	timeout time.Duration
}

func (h *jobHandler) handle(g *workerGroup, job jobs.Job, stopStream *chan struct{}) {
	start := time.Now()
	if h.tracing.exported.Load() {
		ctx := h.tracing.extract(context.Background(), job.Headers())
		var span trace.Span
		_, span = h.tracing.start(ctx, "jobs_listener")
		defer span.End()
	}
	if ce := h.log.Check(zap.DebugLevel, "job processing was started"); ce != nil {
		ce.Write(zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()))
	}

	jobCtx, err := job.Context()
	if err != nil {
		// A context that cannot be built will not build next time either: hand the job back to
		// its driver's own failure handling instead of looping.
		h.metrics.jobsErr.Inc()
		h.log.Error("job context could not be built, job nacked", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.Error(err))
		if nerr := job.Nack(); nerr != nil {
			h.log.Error("job could not be nacked", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.Error(nerr))
		}
		return
	}

	rsp, err := g.exec(&payload.Payload{Context: jobCtx, Body: job.Body(), Codec: frame.CodecRaw}, stopStream)
	if err != nil {
		h.failed(job, jobCtx, err)
		return
	}

	r, err := parseResponse(rsp.Body)
	if err != nil {
		// Stock behaviour: acknowledge a reply that cannot be understood, so a broken worker does
		// not loop the job forever; the error is logged and counted.
		h.metrics.jobsErr.Inc()
		h.log.Error("response handler error, job acknowledged", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.Error(err))
		if aerr := job.Ack(); aerr != nil {
			h.log.Error("job could not be acknowledged", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.Error(aerr))
		}
		return
	}
	h.settle(g, job, jobCtx, r, start)
}

// settle applies the worker's verdict on the poller, or in the background when the pipeline's
// verdicts are slow (verdicts.go).
func (h *jobHandler) settle(g *workerGroup, job jobs.Job, jobCtx []byte, r response, start time.Time) {
	e := h.pipelines.get(job.GroupID())
	if e == nil {
		// Destroyed while the job ran: its driver still settles the job.
		h.apply(job, jobCtx, r, start, nil)
		return
	}
	// The closure (a heap allocation) is built only for pipelines that go to the background.
	if e.verdicts.slow() && g.verdicts.tryGo(func() { h.timedApply(e, job, jobCtx, r, start) }) {
		return
	}
	h.timedApply(e, job, jobCtx, r, start)
}

// timedApply applies the verdict and records how long the driver took.
func (h *jobHandler) timedApply(e *pipelineEntry, job jobs.Job, jobCtx []byte, r response, start time.Time) {
	t := time.Now()
	h.apply(job, jobCtx, r, start, e.retry)
	e.verdicts.observe(time.Since(t))
}

// failed handles a run that never got a verdict from a worker (crash, exec_ttl, error frame, no
// free worker): the job goes back to its driver, under the pipeline's retry policy if it has one.
func (h *jobHandler) failed(job jobs.Job, jobCtx []byte, cause error) {
	h.metrics.jobsErr.Inc()
	var err error
	if policy := h.policyFor(job); policy != nil {
		err = h.retryOrGiveUp(job, jobCtx, policy, nil, policyDelay, cause.Error())
	} else {
		h.metrics.jobsRequeue.Inc()
		h.log.Warn("job could not be processed, requeued", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.Int("delay_seconds", failureRetryDelay), zap.Error(cause))
		err = job.NackWithOptions(true, failureRetryDelay)
	}
	if err != nil {
		h.log.Error("job could not be requeued", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.NamedError("cause", cause), zap.Error(err))
	}
}

// apply carries out the worker's reply under the pipeline's retry policy (nil: none).
func (h *jobHandler) apply(job jobs.Job, jobCtx []byte, r response, start time.Time, policy *retryPolicy) {
	var err error
	switch r.Type {
	case respComplete, respAck:
		err = job.Ack()
	case respError:
		h.log.Error("jobs protocol error", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.String("message", r.Message), zap.Bool("requeue", r.Requeue))
		switch {
		case r.Requeue && policy != nil:
			err = h.retryOrGiveUp(job, jobCtx, policy, r.Headers, r.DelaySeconds, "failed: "+r.Message)
		case r.Requeue:
			h.metrics.jobsRequeue.Inc()
			err = job.Requeue(r.Headers, r.DelaySeconds)
		default:
			err = job.Ack()
		}
	case respNack:
		h.log.Info("job was nacked", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.String("message", r.Message), zap.Bool("requeue", r.Requeue), zap.Int("delay_seconds", r.DelaySeconds))
		switch {
		case r.Requeue && policy != nil:
			// A nack without a delay of its own gets the policy's backoff.
			delay := r.DelaySeconds
			if delay == 0 {
				delay = policyDelay
			}
			err = h.retryOrGiveUp(job, jobCtx, policy, nil, delay, "nacked: "+r.Message)
		case r.Requeue:
			h.metrics.jobsRequeue.Inc()
			err = job.NackWithOptions(true, r.DelaySeconds)
		default:
			err = job.NackWithOptions(false, r.DelaySeconds)
		}
	case respRequeue:
		h.log.Info("job was re-queued", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.String("message", r.Message), zap.Int("delay_seconds", r.DelaySeconds))
		if policy != nil {
			err = h.retryOrGiveUp(job, jobCtx, policy, r.Headers, r.DelaySeconds, "requeued: "+r.Message)
		} else {
			h.metrics.jobsRequeue.Inc()
			err = job.Requeue(r.Headers, r.DelaySeconds)
		}
	default:
		h.log.Warn("unknown response type, acknowledging the JOB", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.Int("type", int(r.Type)))
		err = job.Ack()
	}
	if err != nil {
		h.metrics.jobsErr.Inc()
		h.log.Error("worker reply could not be applied", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.Stringer("reply", r.Type), zap.Error(err))
		return
	}
	h.metrics.jobsOK.Inc()
	if ce := h.log.Check(zap.DebugLevel, "job was processed successfully"); ce != nil {
		ce.Write(zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.Stringer("reply", r.Type), zap.Duration("elapsed", time.Since(start)))
	}
}
