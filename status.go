package jobs

import (
	"context"
	"net/http"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v1/status"
	"github.com/roadrunner-server/pool/fsm"
)

// readinessTimeout bounds the driver State calls a readiness probe makes.
const readinessTimeout = 5 * time.Second

// Status is the health check (status plugin /health): healthy while any worker is ready or working.
func (p *Plugin) Status() (*status.Status, error) {
	for _, w := range p.allWorkers() {
		if w.State().IsActive() {
			return &status.Status{Code: http.StatusOK}, nil
		}
	}
	return &status.Status{Code: http.StatusServiceUnavailable}, nil
}

// Ready is the readiness check (status plugin /ready): a worker is free to take a job AND every
// pipeline that should be consuming is healthy. A pipeline whose driver failed or lost its broker
// makes the plugin not ready (stock looked at workers only, roadrunner#1724).
func (p *Plugin) Ready() (*status.Status, error) {
	if !p.serving.Load() || !p.hasReadyWorker() {
		return &status.Status{Code: http.StatusServiceUnavailable}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), readinessTimeout)
	defer cancel()
	for _, e := range p.pipelines.all() {
		if !p.pipelineHealthy(ctx, e) {
			return &status.Status{Code: http.StatusServiceUnavailable}, nil
		}
	}
	return &status.Status{Code: http.StatusOK}, nil
}

func (p *Plugin) hasReadyWorker() bool {
	for _, w := range p.allWorkers() {
		if w.State().Compare(fsm.StateReady) {
			return true
		}
	}
	return false
}

// pipelineHealthy is false for a pipeline that failed to start, or that consumes but whose driver
// reports an error. Paused pipelines are healthy: pausing is the operator's choice.
func (p *Plugin) pipelineHealthy(ctx context.Context, e *pipelineEntry) bool {
	if e.err() != nil {
		return false
	}
	if !e.consuming.Load() {
		return true
	}
	st := p.stateOf(ctx, e)
	return st.ErrorMessage == ""
}
