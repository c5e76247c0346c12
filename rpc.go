package jobs

import (
	"context"

	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
	"github.com/roadrunner-server/errors"
	"go.opentelemetry.io/otel/trace"
)

// rpc is the `jobs` net/rpc service (jobs.Push, jobs.PushBatch, ...), served by the rpc plugin over
// goridge with the jobs.v1 protobuf messages the PHP client sends. Calls run concurrently: there is
// no lock serialising pushes.
type rpc struct {
	p *Plugin
}

// Push pushes one job.
func (r *rpc) Push(req *jobsProto.PushRequest, _ *jobsProto.Empty) error {
	const op = errors.Op("rpc_push")
	if req.GetJob() == nil {
		return errors.E(op, errors.Str("job is required"))
	}
	if req.GetJob().GetId() == "" {
		return errors.E(op, errors.Str("empty ID field not allowed"))
	}
	msg := messageFromProto(req.GetJob())
	if msg.Hdr == nil {
		msg.Hdr = make(map[string][]string, 2)
	}
	ctx := context.Background()
	if !r.p.tracing.newRootInto(msg.Hdr) {
		var span trace.Span
		ctx, span = r.p.tracing.start(r.p.tracing.extract(ctx, msg.Hdr), "push")
		defer span.End()
		r.p.tracing.inject(ctx, msg.Hdr)
	}
	if err := r.p.Push(ctx, msg); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// PushBatch pushes jobs in order. Jobs that carry their own trace context continue it; the others
// join the batch's span. Jobs without headers of their own share one map of the batch's trace
// headers (push copies it for a driver that may write to it).
func (r *rpc) PushBatch(req *jobsProto.PushBatchRequest, _ *jobsProto.Empty) error {
	const op = errors.Op("rpc_push_batch")
	ctx, span := r.p.tracing.start(context.Background(), "push_batch")
	defer span.End()

	// The batch's trace headers are computed once and shared by every job without its own.
	batchTrace := make(map[string][]string, 3)
	r.p.tracing.inject(ctx, batchTrace)

	jobs := req.GetJobs()
	// One allocation for the batch's messages instead of one per job.
	slab := make([]Message, len(jobs))
	msgs := make([]*Message, len(jobs))
	for i, j := range jobs {
		if j == nil {
			return errors.E(op, errors.Errorf("job %d of %d is empty", i+1, len(jobs)))
		}
		m := &slab[i]
		m.fromProto(j)
		switch {
		case len(m.Hdr) == 0:
			m.Hdr = batchTrace
			m.sharedHdr = true
		case hasTraceContext(m.Hdr):
			jctx, jspan := r.p.tracing.start(r.p.tracing.extract(ctx, m.Hdr), "push")
			r.p.tracing.inject(jctx, m.Hdr)
			jspan.End()
		default:
			for k, v := range batchTrace {
				m.Hdr[k] = v
			}
		}
		msgs[i] = m
	}
	if err := r.p.PushBatch(ctx, msgs); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Pause pauses pipelines.
func (r *rpc) Pause(req *jobsProto.Pipelines, _ *jobsProto.Empty) error {
	const op = errors.Op("rpc_pause")
	ctx, span := r.p.tracing.start(context.Background(), "pause_pipeline")
	defer span.End()
	if err := r.p.Pause(ctx, req.GetPipelines()); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Resume resumes (or starts) pipelines.
func (r *rpc) Resume(req *jobsProto.Pipelines, _ *jobsProto.Empty) error {
	const op = errors.Op("rpc_resume")
	ctx, span := r.p.tracing.start(context.Background(), "resume_pipeline")
	defer span.End()
	if err := r.p.Resume(ctx, req.GetPipelines()); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// List returns the pipeline names.
func (r *rpc) List(_ *jobsProto.Empty, resp *jobsProto.Pipelines) error {
	resp.Pipelines = r.p.List()
	return nil
}

// Declare creates a pipeline from a map of strings.
func (r *rpc) Declare(req *jobsProto.DeclareRequest, _ *jobsProto.Empty) error {
	const op = errors.Op("rpc_declare")
	ctx, span := r.p.tracing.start(context.Background(), "declare_pipeline")
	defer span.End()
	if err := r.p.Declare(ctx, req.GetPipeline()); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Destroy stops and removes pipelines, replying with the names destroyed.
func (r *rpc) Destroy(req *jobsProto.Pipelines, resp *jobsProto.Pipelines) error {
	const op = errors.Op("rpc_destroy")
	ctx, span := r.p.tracing.start(context.Background(), "destroy_pipeline")
	defer span.End()
	destroyed, err := r.p.Destroy(ctx, req.GetPipelines())
	resp.Pipelines = destroyed
	if err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Stat returns every pipeline's counters. It never panics on a driver without a state.
func (r *rpc) Stat(_ *jobsProto.Empty, resp *jobsProto.Stats) error {
	ctx, span := r.p.tracing.start(context.Background(), "stat")
	defer span.End()
	states, err := r.p.JobsState(ctx)
	if err != nil {
		return errors.E(errors.Op("rpc_stat"), err)
	}
	resp.Stats = make([]*jobsProto.Stat, 0, len(states))
	for _, s := range states {
		resp.Stats = append(resp.Stats, &jobsProto.Stat{
			Pipeline: s.Pipeline,
			Driver:   s.Driver,
			Queue:    s.Queue,
			Active:   s.Active,
			Delayed:  s.Delayed,
			Reserved: s.Reserved,
			Ready:    s.Ready,
			Priority: s.Priority,
		})
	}
	return nil
}
