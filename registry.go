package jobs

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
)

// pipelineEntry is a live pipeline: its settings, its driver and the worker group running its jobs.
type pipelineEntry struct {
	pipe   Pipeline
	driver jobs.Driver
	group  *workerGroup
	// failure is why the driver could not be built or started; such a pipeline is listed, keeps the
	// plugin not ready, and (without a driver) refuses pushes with that reason, while the other
	// pipelines keep working.
	failureMu sync.Mutex
	failure   error
	// retry is the pipeline's retry policy; nil keeps the stock behaviour.
	retry *retryPolicy
	// consuming is true between a successful Run/Resume and Pause: readiness checks only those.
	consuming atomic.Bool
	// verdicts times Ack/Nack/Requeue on this pipeline's driver (see verdicts.go).
	verdicts verdictTimer

	// Series for this pipeline, resolved once instead of per push.
	requests [len(pushSourceLabels)]prometheus.Counter  // by pushSource
	latency  [len(pushSourceLabels)]prometheus.Observer // by pushSource
}

func (e *pipelineEntry) setErr(err error) {
	e.failureMu.Lock()
	e.failure = err
	e.failureMu.Unlock()
}

func (e *pipelineEntry) err() error {
	e.failureMu.Lock()
	defer e.failureMu.Unlock()
	return e.failure
}

func newPipelineEntry(pipe Pipeline, group *workerGroup, retry *retryPolicy, m *metrics) *pipelineEntry {
	e := &pipelineEntry{pipe: pipe, group: group, retry: retry}
	for i, src := range pushSourceLabels {
		e.requests[i] = m.requests.WithLabelValues(pipe.Name(), pipe.Driver(), src)
		e.latency[i] = m.pushLatency.WithLabelValues(pipe.Name(), pipe.Driver(), src)
	}
	return e
}

// registry maps pipeline names to live pipelines. Reads (every push) take the read lock only.
type registry struct {
	mu sync.RWMutex
	m  map[string]*pipelineEntry
}

func newRegistry() *registry { return &registry{m: make(map[string]*pipelineEntry)} }

func (r *registry) get(name string) *pipelineEntry {
	r.mu.RLock()
	e := r.m[name]
	r.mu.RUnlock()
	return e
}

// add registers e under its name unless the name is taken; it returns the existing entry then.
func (r *registry) add(e *pipelineEntry) (existing *pipelineEntry, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := e.pipe.Name()
	if old, taken := r.m[name]; taken {
		return old, false
	}
	r.m[name] = e
	return nil, true
}

// remove unregisters name if it still maps to e.
func (r *registry) remove(name string, e *pipelineEntry) {
	r.mu.Lock()
	if r.m[name] == e {
		delete(r.m, name)
	}
	r.mu.Unlock()
}

// replace swaps the entry registered under name, if it is still old.
func (r *registry) replace(name string, old, e *pipelineEntry) {
	r.mu.Lock()
	if r.m[name] == old {
		r.m[name] = e
	}
	r.mu.Unlock()
}

// names returns the registered pipeline names, sorted (stock returned map order).
func (r *registry) names() []string {
	r.mu.RLock()
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	r.mu.RUnlock()
	sort.Strings(out)
	return out
}

// all returns the entries sorted by name.
func (r *registry) all() []*pipelineEntry {
	r.mu.RLock()
	out := make([]*pipelineEntry, 0, len(r.m))
	for _, e := range r.m {
		out = append(out, e)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].pipe.Name() < out[j].pipe.Name() })
	return out
}
