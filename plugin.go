// Package jobs is a RoadRunner jobs plugin: it collects job drivers (any api/v4 jobs.Constructor),
// builds pipelines from .rr.yaml or the jobs.Declare RPC, and runs their jobs on PHP workers through
// a blocking priority queue per worker pool.
package jobs

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/endure/v2/dep"
	"github.com/roadrunner-server/errors"
	"github.com/roadrunner-server/pool/pool"
	staticPool "github.com/roadrunner-server/pool/pool/static_pool"
	"github.com/roadrunner-server/pool/worker"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// PluginName is the endure name, the RPC service name and the config section.
const PluginName = "jobs"

// Configurer is the config plugin.
type Configurer interface {
	// UnmarshalKey takes a single key and unmarshal it into a Struct.
	UnmarshalKey(name string, out any) error
	// Has checks if a config section exists.
	Has(name string) bool
}

// Logger is the logger plugin.
type Logger interface {
	NamedLogger(name string) *zap.Logger
}

// Server is the server plugin: it spawns PHP worker pools.
type Server interface {
	NewPool(ctx context.Context, cfg *pool.Config, env map[string]string, log *zap.Logger) (*staticPool.Pool, error)
}

// Plugin is the jobs plugin.
type Plugin struct {
	cfg *Config
	log *zap.Logger
	// debugLog is whether log writes debug entries, decided once in Init: the push path runs on
	// the RPC goroutine, whose stack starts small, and zap's Check has a frame large enough to make
	// that stack grow (a copy of the whole stack on every push).
	debugLog bool
	server   Server

	// constructors are the collected drivers by name; collection may run concurrently with RPCs.
	constructorsMu sync.RWMutex
	constructors   map[string]jobs.Constructor
	tracer         Tracer

	// groups are the worker pools by name, set once by Serve; read through groupList/group.
	groupsMu  sync.RWMutex
	groups    map[string]*workerGroup
	pipelines *registry
	metrics   *metrics
	tracing   *tracing
	handler   *jobHandler
	timeout   time.Duration

	commands *driverCommands
	serving  atomic.Bool
	// stopping refuses pushes once shutdown began: a job accepted then could not run.
	stopping atomic.Bool
	stopOnce sync.Once
}

// Init reads the `jobs` section. Without it the plugin is disabled.
func (p *Plugin) Init(cfg Configurer, log Logger, server Server) error {
	const op = errors.Op("jobs_plugin_init")
	if !cfg.Has(PluginName) {
		return errors.E(op, errors.Disabled)
	}
	p.cfg = &Config{}
	if err := cfg.UnmarshalKey(PluginName, p.cfg); err != nil {
		return errors.E(op, fmt.Errorf("jobs section: %w", err))
	}
	if err := p.cfg.InitDefaults(); err != nil {
		return errors.E(op, err)
	}
	p.log = log.NamedLogger(PluginName)
	p.debugLog = p.log.Core().Enabled(zap.DebugLevel)
	p.server = server
	p.constructors = make(map[string]jobs.Constructor)
	p.pipelines = newRegistry()
	p.timeout = time.Duration(p.cfg.Timeout) * time.Second
	p.metrics = newMetrics(p.allWorkers)
	p.tracing = newTracing()
	p.handler = &jobHandler{metrics: p.metrics, tracing: p.tracing, log: p.log, pipelines: p.pipelines, timeout: p.timeout}
	return nil
}

// Serve starts the worker pools, the pollers and the configured pipelines.
func (p *Plugin) Serve() chan error {
	errCh := make(chan error, 1)
	const op = errors.Op("jobs_plugin_serve")

	p.constructorsMu.RLock()
	tp := p.tracer
	p.constructorsMu.RUnlock()
	if tp != nil {
		p.tracing.export(tp.Tracer())
	}

	if err := p.startGroups(); err != nil {
		errCh <- errors.E(op, err)
		return errCh
	}
	if err := p.startConfiguredPipelines(); err != nil {
		errCh <- errors.E(op, err)
		return errCh
	}
	commands, err := p.listenDriverCommands()
	if err != nil {
		errCh <- errors.E(op, err)
		return errCh
	}
	p.commands = commands
	p.serving.Store(true)
	return errCh
}

// startGroups spawns one worker pool, priority queue and poller set per configured pool.
func (p *Plugin) startGroups() error {
	groups := make(map[string]*workerGroup, len(p.cfg.Pools))
	for _, name := range p.cfg.poolNames() {
		pc := p.cfg.Pools[name]
		wp, err := p.server.NewPool(context.Background(), pc, map[string]string{"RR_MODE": "jobs"}, nil)
		if err != nil {
			for _, g := range groups {
				g.pool.Destroy(context.Background())
			}
			return fmt.Errorf("jobs pool %q: %w", name, err)
		}
		groups[name] = newWorkerGroup(name, pc, wp, p.cfg.PipelineSize, p.cfg.pollersFor(pc), p.log)
	}
	for _, g := range groups {
		g.start(p.handler)
		p.log.Debug("worker pool started", zap.String("pool", g.name), zap.Uint64("workers", g.cfg.NumWorkers), zap.Int("pollers", g.pollers))
	}
	p.groupsMu.Lock()
	p.groups = groups
	p.groupsMu.Unlock()
	return nil
}

// groupList returns the worker groups sorted by pool name.
func (p *Plugin) groupList() []*workerGroup {
	p.groupsMu.RLock()
	defer p.groupsMu.RUnlock()
	out := make([]*workerGroup, 0, len(p.groups))
	for _, g := range p.groups {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// startConfiguredPipelines builds every pipeline of .rr.yaml, `options.parallelism` at a time.
// An unknown driver stops the server (a config error); a driver that fails to start only marks its
// pipeline as broken so the others keep working.
func (p *Plugin) startConfiguredPipelines() error {
	var eg errgroup.Group
	eg.SetLimit(p.cfg.Options.Parallelism)
	for _, name := range p.cfg.pipelineNames() {
		pipe := p.cfg.Pipelines[name]
		eg.Go(func() error {
			return p.startConfiguredPipeline(pipe)
		})
	}
	return eg.Wait()
}

func (p *Plugin) startConfiguredPipeline(pipe Pipeline) error {
	name := pipe.Name()
	ctor, err := p.constructor(pipe.Driver())
	if err != nil {
		return fmt.Errorf("jobs.pipelines.%s.driver: %w", name, err)
	}
	group, err := p.groupFor(pipe)
	if err != nil {
		return fmt.Errorf("jobs.pipelines.%s.pool: %w", name, err)
	}
	e := newPipelineEntry(pipe, group, p.cfg.retryPolicies[name], p.metrics)
	drv, err := ctor.DriverFromConfig(pipe.String(keyCreatedWithConfig, ""), group.queue, pipe)
	if err == nil && drv == nil {
		err = fmt.Errorf("driver %q returned no driver", pipe.Driver())
	}
	switch {
	case err != nil:
		e.setErr(err)
		p.log.Error("pipeline could not be started", zap.String("pipeline", name), zap.String("driver", pipe.Driver()), zap.Error(err))
	default:
		e.driver = drv
	}
	p.pipelines.add(e)
	if e.driver != nil && p.cfg.consumes(name) {
		p.run(e)
	}
	return nil
}

// run starts consuming a pipeline. A failure is logged and leaves the pipeline not ready.
func (p *Plugin) run(e *pipelineEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if err := e.driver.Run(ctx, e.pipe); err != nil {
		e.setErr(fmt.Errorf("run: %w", err))
		p.log.Error("pipeline could not start consuming", zap.String("pipeline", e.pipe.Name()), zap.String("driver", e.pipe.Driver()), zap.Error(err))
		return
	}
	e.consuming.Store(true)
	p.log.Debug("pipeline was started", zap.String("pipeline", e.pipe.Name()), zap.String("driver", e.pipe.Driver()))
}

// Stop stops intake, lets running jobs finish within ctx (the grace period), stops the drivers and
// destroys the worker pools. It is safe to call more than once and after a failed Serve.
func (p *Plugin) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() {
		p.stopping.Store(true)
		p.serving.Store(false)
		p.commands.stop()
		p.stopGroups(ctx)
		p.stopDrivers(ctx)
		for _, g := range p.groupList() {
			g.pool.Destroy(ctx)
		}
	})
	return nil
}

func (p *Plugin) stopGroups(ctx context.Context) {
	var wg sync.WaitGroup
	for _, g := range p.groupList() {
		wg.Go(func() { g.stop(ctx) })
	}
	wg.Wait()
}

func (p *Plugin) stopDrivers(ctx context.Context) {
	if p.pipelines == nil {
		return
	}
	var eg errgroup.Group
	eg.SetLimit(p.cfg.Options.Parallelism)
	for _, e := range p.pipelines.all() {
		if e.driver == nil {
			continue
		}
		eg.Go(func() error {
			sctx, cancel := context.WithTimeout(ctx, p.timeout)
			defer cancel()
			if err := e.driver.Stop(sctx); err != nil {
				p.log.Error("pipeline could not be stopped", zap.String("pipeline", e.pipe.Name()), zap.String("driver", e.pipe.Driver()), zap.Error(err))
			} else {
				p.log.Debug("pipeline was stopped", zap.String("pipeline", e.pipe.Name()), zap.String("driver", e.pipe.Driver()))
			}
			return nil
		})
	}
	_ = eg.Wait()
}

// Name is the endure name of the plugin.
func (p *Plugin) Name() string { return PluginName }

// Weight runs the plugin after its dependencies.
func (p *Plugin) Weight() uint { return 10 }

// Collects takes every jobs driver (by its Name) and, optionally, the otel tracer provider.
func (p *Plugin) Collects() []*dep.In {
	return []*dep.In{
		dep.Fits(func(pp any) {
			c := pp.(jobs.Constructor)
			p.constructorsMu.Lock()
			p.constructors[c.Name()] = c
			p.constructorsMu.Unlock()
		}, (*jobs.Constructor)(nil)),
		dep.Fits(func(pp any) {
			p.constructorsMu.Lock()
			p.tracer = pp.(Tracer)
			p.constructorsMu.Unlock()
		}, (*Tracer)(nil)),
	}
}

// RPC is served by the rpc plugin as the `jobs` service.
func (p *Plugin) RPC() any { return &rpc{p: p} }

// MetricsCollector is read by the metrics plugin.
func (p *Plugin) MetricsCollector() []prometheus.Collector { return p.metrics.collectors() }

func (p *Plugin) constructor(driver string) (jobs.Constructor, error) {
	p.constructorsMu.RLock()
	defer p.constructorsMu.RUnlock()
	if c, ok := p.constructors[driver]; ok {
		return c, nil
	}
	names := make([]string, 0, len(p.constructors))
	for n := range p.constructors {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("no driver named %q is registered (registered drivers: %v)", driver, names)
}

func (p *Plugin) groupFor(pipe Pipeline) (*workerGroup, error) {
	name, err := p.cfg.poolFor(pipe)
	if err != nil {
		return nil, err
	}
	p.groupsMu.RLock()
	g, ok := p.groups[name]
	p.groupsMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("pool %q is not running", name)
	}
	return g, nil
}

func (p *Plugin) allWorkers() []*worker.Process {
	var out []*worker.Process
	for _, g := range p.groupList() {
		out = append(out, g.workers()...)
	}
	return out
}
