package jobs

import (
	"context"
	"sync"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/pool/fsm"
	"github.com/roadrunner-server/pool/payload"
	"github.com/roadrunner-server/pool/pool"
	staticPool "github.com/roadrunner-server/pool/pool/static_pool"
	"github.com/roadrunner-server/pool/worker"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/pq"
)

// Pool is the part of the PHP worker pool the plugin uses (implemented by static_pool.Pool).
type Pool interface {
	Workers() []*worker.Process
	Exec(ctx context.Context, p *payload.Payload, stopCh chan struct{}) (chan *staticPool.PExec, error)
	RemoveWorker(ctx context.Context) error
	AddWorker() error
	Reset(ctx context.Context) error
	Destroy(ctx context.Context)
}

// workerGroup is one worker pool with its own priority queue and pollers. With the stock `jobs.pool`
// layout there is exactly one; named `jobs.pools` get one each, so a pool of slow workers never holds
// the pollers of another (a shared queue would let one saturated pool starve the rest).
type workerGroup struct {
	name    string
	cfg     *pool.Config
	pool    Pool
	queue   *pq.Queue[jobs.Job]
	pollers int

	// resetMu lets Reset replace workers while no Exec is starting (read side held per Exec).
	resetMu sync.RWMutex

	// pollCtx stops the pollers from taking new jobs; execCtx aborts jobs still running when the
	// shutdown grace period runs out.
	pollCtx    context.Context
	stopPoll   context.CancelFunc
	execCtx    context.Context
	abortExecs context.CancelFunc
	wg         sync.WaitGroup
	// verdicts applies slow drivers' verdicts off the pollers.
	verdicts *backgroundVerdicts

	log *zap.Logger
}

func newWorkerGroup(name string, cfg *pool.Config, p Pool, queueSize uint64, pollers int, log *zap.Logger) *workerGroup {
	if p != nil {
		p = idleDestroyPool{p}
	}
	g := &workerGroup{
		name:     name,
		cfg:      cfg,
		pool:     p,
		queue:    pq.New[jobs.Job](queueSize),
		pollers:  pollers,
		verdicts: newBackgroundVerdicts(pollers),
		log:      log.With(zap.String("pool", name)),
	}
	g.pollCtx, g.stopPoll = context.WithCancel(context.Background())
	g.execCtx, g.abortExecs = context.WithCancel(context.Background())
	return g
}

// start launches the pollers; h handles each job they take.
func (g *workerGroup) start(h *jobHandler) {
	for range g.pollers {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.poll(h)
		}()
	}
}

// stop stops intake at once, lets running jobs finish until ctx is done, then aborts them.
// It returns when every poller has exited and the verdicts of finished jobs were applied (or ctx
// is done), so the drivers can be stopped next.
func (g *workerGroup) stop(ctx context.Context) {
	g.stopPoll()
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		g.log.Warn("grace period is over, aborting running jobs")
		g.abortExecs()
		<-done
	}
	g.verdicts.wait(ctx, g.log)
}

func (g *workerGroup) workers() []*worker.Process {
	if g.pool == nil {
		return nil
	}
	return g.pool.Workers()
}

func (g *workerGroup) reset(ctx context.Context) error {
	g.resetMu.Lock()
	defer g.resetMu.Unlock()
	return g.pool.Reset(ctx)
}

// idleDestroyPool makes Destroy of a pool whose workers are all idle immediate. The pool's own
// Destroy checks once a second whether every worker is back before it stops them, so even an idle
// pool took a full second to shut down. The plugin destroys a pool only after its pollers have
// exited, so no job can start meanwhile; when every worker is ready, Destroy is given a context that
// is already done, which makes the pool stop each worker at once (gracefully: a stop frame, then a
// wait for the process to exit). A pool with a busy worker gets the normal Destroy.
type idleDestroyPool struct {
	Pool
}

func (p idleDestroyPool) Destroy(ctx context.Context) {
	for _, w := range p.Workers() {
		if w.State().CurrentState() != fsm.StateReady {
			p.Pool.Destroy(ctx)
			return
		}
	}
	now, cancel := context.WithCancel(ctx)
	cancel()
	p.Pool.Destroy(now)
}
