package driverkit

import (
	"context"
	"fmt"
)

// ConsumeState is whether a broker driver consumes: the goroutine that takes jobs from the broker
// (the consume loop) runs between Run/Resume and Pause, and Stop is final. It holds no lock of its
// own: it is guarded by the driver's mutex, the one that guards what the driver reads together with
// it, so every method must be called with that mutex held. Waiting for a paused or stopped loop to
// exit (WaitDone) is done after releasing it.
type ConsumeState struct {
	// Driver and Pipeline name the pipeline in errors ("<driver> pipeline "<name>" is stopped").
	Driver, Pipeline string

	running, stopped, begun bool
	cancel                  context.CancelFunc
	done                    chan struct{}
}

// Running reports whether the consume loop runs (between Run/Resume and Pause/Stop).
func (s *ConsumeState) Running() bool { return s.running }

// Stopped reports whether Stop was called; nothing starts again after it.
func (s *ConsumeState) Stopped() bool { return s.stopped }

// Start launches loop(ctx, done) in a goroutine, ctx being cancelled by Pause and Stop (and by
// parent); loop must close done when it returns. first runs once, before the first loop starts:
// the driver's background goroutines that outlive a pause (heartbeats, lease extension).
func (s *ConsumeState) Start(parent context.Context, first func(), loop func(ctx context.Context, done chan struct{})) error {
	if s.stopped {
		return fmt.Errorf("%s pipeline %q is stopped", s.Driver, s.Pipeline)
	}
	if s.running {
		return fmt.Errorf("%s pipeline %q is already running", s.Driver, s.Pipeline)
	}
	if !s.begun {
		s.begun = true
		if first != nil {
			first()
		}
	}
	ctx, cancel := context.WithCancel(parent)
	s.running, s.cancel, s.done = true, cancel, make(chan struct{})
	go loop(ctx, s.done)
	return nil
}

// Pause cancels the consume loop and returns the channel closed when it has exited.
func (s *ConsumeState) Pause() (<-chan struct{}, error) {
	if s.stopped {
		return nil, fmt.Errorf("%s pipeline %q is stopped", s.Driver, s.Pipeline)
	}
	if !s.running {
		return nil, fmt.Errorf("%s pipeline %q: no active listeners, nothing to pause", s.Driver, s.Pipeline)
	}
	s.running = false
	s.cancel()
	return s.done, nil
}

// Stop marks the pipeline stopped for good and cancels the consume loop. It returns the channel
// closed when the last loop has exited (nil when none ever ran) and whether this call stopped the
// pipeline (false: it was stopped already).
func (s *ConsumeState) Stop() (<-chan struct{}, bool) {
	if s.stopped {
		return nil, false
	}
	s.stopped, s.running = true, false
	if s.cancel == nil {
		return nil, true
	}
	s.cancel()
	return s.done, true
}

// WaitDone waits until done is closed (a nil done counts as closed) and reports false when ctx
// ended first: the loop is still blocked, typically inserting a job into the full shared queue.
func WaitDone(ctx context.Context, done <-chan struct{}) bool {
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
