package jobs

import (
	"context"
	"os/exec"
	"testing"

	"github.com/roadrunner-server/pool/fsm"
	"github.com/roadrunner-server/pool/payload"
	staticPool "github.com/roadrunner-server/pool/pool/static_pool"
	"github.com/roadrunner-server/pool/worker"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// destroyRecorder is a Pool that records the context Destroy gets.
type destroyRecorder struct {
	workers   []*worker.Process
	destroyed context.Context
}

func (p *destroyRecorder) Workers() []*worker.Process { return p.workers }
func (p *destroyRecorder) Exec(context.Context, *payload.Payload, chan struct{}) (chan *staticPool.PExec, error) {
	return nil, nil
}
func (p *destroyRecorder) RemoveWorker(context.Context) error { return nil }
func (p *destroyRecorder) AddWorker() error                   { return nil }
func (p *destroyRecorder) Reset(context.Context) error        { return nil }
func (p *destroyRecorder) Destroy(ctx context.Context)        { p.destroyed = ctx }

func workerIn(t *testing.T, state int64) *worker.Process {
	t.Helper()
	w, err := worker.InitBaseWorker(exec.Command("true"), worker.WithLog(zap.NewNop()))
	require.NoError(t, err)
	w.State().Transition(state)
	return w
}

// With every worker idle, the pool is told to stop them now (a done context) instead of polling
// once a second; a busy worker keeps the normal Destroy and its grace period.
func TestIdleDestroyPool(t *testing.T) {
	idle := &destroyRecorder{workers: []*worker.Process{workerIn(t, fsm.StateReady), workerIn(t, fsm.StateReady)}}
	g := newWorkerGroup("default", nil, idle, 10, 1, zap.NewNop())
	g.pool.Destroy(context.Background())
	require.Error(t, idle.destroyed.Err(), "idle pool: destroyed at once")

	busy := &destroyRecorder{workers: []*worker.Process{workerIn(t, fsm.StateReady), workerIn(t, fsm.StateWorking)}}
	g = newWorkerGroup("default", nil, busy, 10, 1, zap.NewNop())
	grace, cancel := context.WithCancel(context.Background())
	defer cancel()
	g.pool.Destroy(grace)
	require.Same(t, grace, busy.destroyed, "busy pool: the caller's grace period")

	require.Nil(t, newWorkerGroup("default", nil, nil, 10, 1, zap.NewNop()).workers(), "no pool stays no pool")
}
