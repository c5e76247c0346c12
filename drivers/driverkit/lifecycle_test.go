package driverkit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func TestLifecycleRunPauseResume(t *testing.T) {
	var mu sync.Mutex
	state := ConsumeState{Driver: "fake", Pipeline: "p"}
	firsts := 0
	running := make(chan struct{}, 4)
	l := &Lifecycle{
		Mu: &mu, State: &state, Parent: context.Background(), Log: zap.NewNop(), LoopName: "loop",
		First: func() { firsts++ },
		Loop: func(ctx context.Context, done chan struct{}) {
			running <- struct{}{}
			<-ctx.Done()
			close(done)
		},
	}

	require.NoError(t, l.Run())
	<-running
	require.EqualError(t, l.Run(), `fake pipeline "p" is already running`)

	// Pause returns once the loop has exited.
	require.NoError(t, l.Pause(context.Background()))
	mu.Lock()
	require.False(t, state.Running())
	mu.Unlock()
	require.EqualError(t, l.Pause(context.Background()), `fake pipeline "p": no active listeners, nothing to pause`)

	require.NoError(t, l.Resume())
	<-running
	require.Equal(t, 1, firsts, "the background goroutines start once, not on every resume")
}

// A loop that does not exit (blocked inserting into a full queue) does not hold Pause past ctx.
func TestLifecyclePauseBoundedByCtx(t *testing.T) {
	var mu sync.Mutex
	state := ConsumeState{Driver: "fake", Pipeline: "p"}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	l := &Lifecycle{
		Mu: &mu, State: &state, Parent: context.Background(), Log: zap.NewNop(), LoopName: "loop",
		Loop: func(_ context.Context, done chan struct{}) {
			<-release
			close(done)
		},
	}
	require.NoError(t, l.Run())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.NoError(t, l.Pause(ctx))
	require.Error(t, ctx.Err(), "Pause returned only when ctx ended")
}

func TestWithOp(t *testing.T) {
	require.NoError(t, WithOp("x_run", nil))
	require.EqualError(t, WithOp("x_run", errors.New("boom")), "x_run: boom")
}
