package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// blockingAckJob is a job whose Ack waits until release is closed, like a durable driver waiting
// for its commit.
type blockingAckJob struct {
	jobs.Job
	acked   chan struct{}
	release chan struct{}
}

func (j *blockingAckJob) ID() string                   { return "j1" }
func (j *blockingAckJob) GroupID() string              { return "slow" }
func (j *blockingAckJob) Headers() map[string][]string { return nil }
func (j *blockingAckJob) Ack() error {
	<-j.release
	close(j.acked)
	return nil
}

func newVerdictHandler(t *testing.T) (*jobHandler, *pipelineEntry, *workerGroup) {
	t.Helper()
	reg := newRegistry()
	e := &pipelineEntry{pipe: Pipeline{"name": "slow"}}
	_, ok := reg.add(e)
	require.True(t, ok)
	h := &jobHandler{metrics: newMetrics(nil), tracing: newTracing(), log: zap.NewNop(), pipelines: reg}
	g := newWorkerGroup("default", nil, nil, 10, 1, zap.NewNop())
	return h, e, g
}

func TestFastVerdictsAreAppliedOnThePoller(t *testing.T) {
	h, _, g := newVerdictHandler(t)
	job := &blockingAckJob{acked: make(chan struct{}), release: make(chan struct{})}
	close(job.release)
	h.settle(g, job, nil, response{Type: respAck}, time.Now())
	select {
	case <-job.acked:
	default:
		t.Fatal("a pipeline with fast verdicts was acknowledged in the background")
	}
}

func TestSlowVerdictsFreeThePollerAndShutdownWaitsForThem(t *testing.T) {
	h, e, g := newVerdictHandler(t)
	for range 50 {
		e.verdicts.observe(5 * time.Millisecond)
	}
	require.True(t, e.verdicts.slow())

	job := &blockingAckJob{acked: make(chan struct{}), release: make(chan struct{})}
	returned := make(chan struct{})
	go func() {
		h.settle(g, job, nil, response{Type: respAck}, time.Now())
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the poller waited for a slow ack")
	}

	stopped := make(chan struct{})
	go func() {
		g.stop(context.Background())
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("the group stopped before the pending ack was applied")
	case <-time.After(50 * time.Millisecond):
	}
	close(job.release)
	<-job.acked
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return after the ack was applied")
	}
}

func TestBackgroundVerdictsAreBounded(t *testing.T) {
	b := newBackgroundVerdicts(1)
	release := make(chan struct{})
	for range verdictSlotsPerPoller {
		require.True(t, b.tryGo(func() { <-release }))
	}
	require.False(t, b.tryGo(func() {}), "with every slot taken the poller applies the verdict itself")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	b.wait(ctx, zap.NewNop()) // returns at the deadline although verdicts are pending
	close(release)
	b.wait(context.Background(), zap.NewNop())
	require.Empty(t, b.slots, "every slot was given back")
}

func TestVerdictTimerSwitchesBothWays(t *testing.T) {
	var v verdictTimer
	require.False(t, v.slow())
	for range 30 {
		v.observe(time.Millisecond)
	}
	require.True(t, v.slow())
	for range 60 {
		v.observe(time.Microsecond)
	}
	require.False(t, v.slow(), "a pipeline whose driver got fast again goes back to the poller")
}
