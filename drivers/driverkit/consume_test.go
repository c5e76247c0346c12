package driverkit

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConsumeStateLifecycle(t *testing.T) {
	s := ConsumeState{Driver: "fake", Pipeline: "p"}
	firsts, loops := 0, make(chan context.Context, 4)
	loop := func(ctx context.Context, done chan struct{}) {
		loops <- ctx
		<-ctx.Done()
		close(done)
	}
	_, err := s.Pause()
	require.EqualError(t, err, `fake pipeline "p": no active listeners, nothing to pause`)

	require.NoError(t, s.Start(context.Background(), func() { firsts++ }, loop))
	require.True(t, s.Running())
	require.EqualError(t, s.Start(context.Background(), nil, loop), `fake pipeline "p" is already running`)
	ctx1 := <-loops

	done, err := s.Pause()
	require.NoError(t, err)
	require.False(t, s.Running())
	require.True(t, WaitDone(context.Background(), done), "Pause cancels the loop")
	require.Error(t, ctx1.Err())

	require.NoError(t, s.Start(context.Background(), func() { firsts++ }, loop))
	require.Equal(t, 1, firsts, "first runs before the first loop only")
	<-loops

	done, first := s.Stop()
	require.True(t, first)
	require.True(t, s.Stopped())
	require.False(t, s.Running())
	require.True(t, WaitDone(context.Background(), done))
	_, first = s.Stop()
	require.False(t, first, "Stop is idempotent")
	require.EqualError(t, s.Start(context.Background(), nil, loop), `fake pipeline "p" is stopped`)
	_, err = s.Pause()
	require.EqualError(t, err, `fake pipeline "p" is stopped`)
}

func TestConsumeStateStopWithoutRunAndWaitDeadline(t *testing.T) {
	var s ConsumeState
	done, first := s.Stop()
	require.True(t, first)
	require.Nil(t, done)
	require.True(t, WaitDone(context.Background(), nil))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	require.False(t, WaitDone(ctx, make(chan struct{})), "a loop that does not exit is reported")
}
