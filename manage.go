package jobs

import (
	"context"
	stderrors "errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Pause stops the named pipelines from handing out new jobs, in order, stopping at the first error.
func (p *Plugin) Pause(ctx context.Context, names []string) error {
	return p.setConsuming(ctx, errors.Op("jobs_plugin_pause"), names, false)
}

// Resume starts (or restarts) consumption of the named pipelines, in order, stopping at the first
// error. It also clears a failure left by a Run that could not start.
func (p *Plugin) Resume(ctx context.Context, names []string) error {
	return p.setConsuming(ctx, errors.Op("jobs_plugin_resume"), names, true)
}

func (p *Plugin) setConsuming(ctx context.Context, op errors.Op, names []string, consume bool) error {
	for _, name := range names {
		e, err := p.runningPipeline(name)
		if err != nil {
			return errors.E(op, err)
		}
		call, done := e.driver.Pause, "pipeline was paused"
		if consume {
			call, done = e.driver.Resume, "pipeline was resumed"
		}
		if err := p.withTimeout(ctx, func(ctx context.Context) error { return call(ctx, name) }); err != nil {
			return errors.E(op, fmt.Errorf("pipeline %q: %w", name, err))
		}
		if consume {
			e.setErr(nil)
		}
		e.consuming.Store(consume)
		p.log.Debug(done, zap.String("pipeline", name), zap.String("driver", e.pipe.Driver()))
	}
	return nil
}

// List returns the pipeline names, sorted.
func (p *Plugin) List() []string { return p.pipelines.names() }

// Declare creates a pipeline at runtime from a flat map of strings (the PHP client's CreateInfo):
// `name`, `driver`, `priority` and driver options. It starts consuming only if the name is listed in
// jobs.consume; otherwise jobs.Resume starts it.
func (p *Plugin) Declare(ctx context.Context, in map[string]string) error {
	const op = errors.Op("jobs_plugin_declare")
	pipe, err := p.pipelineFromDeclare(in)
	if err != nil {
		return errors.E(op, err)
	}
	name := pipe.Name()
	ctor, err := p.constructor(pipe.Driver())
	if err != nil {
		return errors.E(op, fmt.Errorf("pipeline %q: %w", name, err))
	}
	group, err := p.groupFor(pipe)
	if err != nil {
		return errors.E(op, fmt.Errorf("pipeline %q: pool: %w", name, err))
	}
	retry, err := parseRetryPolicy(pipe, "")
	if err != nil {
		return errors.E(op, fmt.Errorf("pipeline %q: %w", name, err))
	}
	if retry != nil && retry.deadLetter != "" && p.pipelines.get(retry.deadLetter) == nil {
		return errors.E(op, fmt.Errorf("pipeline %q: %s: no such pipeline %q (declare it first)", name, keyDeadLetter, retry.deadLetter))
	}

	// Reserve the name first so two concurrent Declares cannot both build a driver for it.
	reserved := newPipelineEntry(pipe, group, retry, p.metrics)
	reserved.setErr(errors.Str("the pipeline is being declared"))
	if old, ok := p.pipelines.add(reserved); !ok {
		return errors.E(op, fmt.Errorf("pipeline already exists, name: %s, driver: %s", name, old.pipe.Driver()))
	}
	drv, err := ctor.DriverFromPipeline(pipe, group.queue)
	if err == nil && drv == nil {
		err = fmt.Errorf("driver %q returned no driver", pipe.Driver())
	}
	if err != nil {
		p.pipelines.remove(name, reserved)
		return errors.E(op, fmt.Errorf("pipeline %q (driver %s): %w", name, pipe.Driver(), err))
	}
	e := newPipelineEntry(pipe, group, retry, p.metrics)
	e.driver = drv
	p.pipelines.replace(name, reserved, e)
	if p.cfg.consumes(name) {
		p.run(e)
		if err := e.err(); err != nil {
			return errors.E(op, fmt.Errorf("pipeline %q was declared but could not start consuming: %w", name, err))
		}
	}
	p.log.Debug("pipeline was declared", zap.String("pipeline", name), zap.String("driver", pipe.Driver()))
	return nil
}

func (p *Plugin) pipelineFromDeclare(in map[string]string) (Pipeline, error) {
	pipe := make(Pipeline, len(in)+2)
	for k, v := range in {
		pipe[k] = v
	}
	if strings.TrimSpace(pipe.Name()) == "" {
		return nil, errors.Str("declare: the pipeline `name` is required")
	}
	if !utf8.ValidString(pipe.Name()) {
		return nil, fmt.Errorf("declare: the pipeline name %q is not valid UTF-8", pipe.Name())
	}
	pipe.With(keyName, pipe.Name())
	if strings.TrimSpace(pipe.Driver()) == "" {
		return nil, fmt.Errorf("declare: pipeline %q: the `driver` is required", pipe.Name())
	}
	// A priority that is not a number falls back to the default (stock v5 stored 0).
	prio := defaultPriority
	if s, ok := in[keyPriority]; ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			prio = n
		} else {
			p.log.Warn("declared pipeline priority is not a number, using the default", zap.String("pipeline", pipe.Name()), zap.String("priority", s), zap.Int64("default", defaultPriority))
		}
	}
	pipe.With(keyPriority, prio)
	pipe.With(keyCreatedWithDecl, "true")
	return pipe, nil
}

// Destroy stops and removes the named pipelines, `options.parallelism` at a time. It returns the
// names it destroyed and an error naming each one it could not.
func (p *Plugin) Destroy(ctx context.Context, names []string) ([]string, error) {
	const op = errors.Op("jobs_plugin_destroy")
	var (
		mu        sync.Mutex
		destroyed []string
		errs      []error
	)
	var eg errgroup.Group
	eg.SetLimit(p.cfg.Options.Parallelism)
	for _, name := range names {
		eg.Go(func() error {
			err := p.destroyOne(ctx, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			destroyed = append(destroyed, name)
			return nil
		})
	}
	_ = eg.Wait()
	if len(errs) > 0 {
		return destroyed, errors.E(op, stderrors.Join(errs...))
	}
	return destroyed, nil
}

func (p *Plugin) destroyOne(ctx context.Context, name string) error {
	e := p.pipelines.get(name)
	if e == nil {
		return fmt.Errorf("no such pipeline, requested: %s", name)
	}
	p.pipelines.remove(name, e)
	if e.driver == nil {
		return nil
	}
	if err := p.withTimeout(ctx, e.driver.Stop); err != nil {
		return fmt.Errorf("pipeline %q: stop: %w", name, err)
	}
	p.log.Debug("pipeline was destroyed", zap.String("pipeline", name), zap.String("driver", e.pipe.Driver()))
	return nil
}

// JobsState returns the state of every pipeline, sorted by name. It never fails because of one
// driver: a driver error or a missing state becomes that pipeline's ErrorMessage.
func (p *Plugin) JobsState(ctx context.Context) ([]*jobs.State, error) {
	entries := p.pipelines.all()
	out := make([]*jobs.State, 0, len(entries))
	for _, e := range entries {
		out = append(out, p.stateOf(ctx, e))
	}
	return out, nil
}

func (p *Plugin) stateOf(ctx context.Context, e *pipelineEntry) *jobs.State {
	fallback := &jobs.State{
		Pipeline: e.pipe.Name(),
		Driver:   e.pipe.Driver(),
		Priority: uint64(max(e.pipe.Priority(), 0)), //nolint:gosec
	}
	if e.driver == nil {
		fallback.ErrorMessage = fmt.Sprint(e.err())
		return fallback
	}
	var st *jobs.State
	err := p.withTimeout(ctx, func(ctx context.Context) error {
		var err error
		st, err = e.driver.State(ctx)
		return err
	})
	switch {
	case err != nil:
		fallback.ErrorMessage = err.Error()
		return fallback
	case st == nil:
		fallback.ErrorMessage = "the driver returned no state"
		return fallback
	}
	if st.Pipeline == "" {
		st.Pipeline = e.pipe.Name()
	}
	if st.Driver == "" {
		st.Driver = e.pipe.Driver()
	}
	if st.ErrorMessage == "" {
		if ferr := e.err(); ferr != nil {
			st.ErrorMessage = ferr.Error()
		}
	}
	return st
}

// runningPipeline returns a pipeline that has a driver, or an error naming what is wrong.
func (p *Plugin) runningPipeline(name string) (*pipelineEntry, error) {
	e := p.pipelines.get(name)
	if e == nil {
		return nil, fmt.Errorf("no such pipeline, requested: %s", name)
	}
	if e.driver == nil {
		return nil, fmt.Errorf("pipeline %q is not running: %w", name, e.err())
	}
	return e, nil
}

// withTimeout runs fn with ctx bounded by jobs.timeout.
func (p *Plugin) withTimeout(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return fn(ctx)
}
