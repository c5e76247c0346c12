package driverkit

import (
	"context"
	"sync"

	"github.com/roadrunner-server/errors"
	"go.uber.org/zap"
)

// Lifecycle is Run, Resume and Pause of a broker driver whose consume loop is a ConsumeState,
// written once for every such driver (postgres, nats, sqs). A driver builds it when it needs it
// from its own fields; Stop stays the driver's, since what it hands back differs per broker.
type Lifecycle struct {
	// Mu is the driver's mutex, the one that guards State.
	Mu    sync.Locker
	State *ConsumeState
	// Parent ends with the driver; it cancels every consume loop.
	Parent context.Context
	// First and Loop are ConsumeState.Start's: the background goroutines that outlive a pause,
	// started once, and the consume loop.
	First func()
	Loop  func(ctx context.Context, done chan struct{})
	Log   *zap.Logger
	// LoopName names the loop in the warning of a Pause that did not see it exit ("fetch loop").
	LoopName string
}

// Run starts consuming and logs it with fields, which say what the pipeline consumes.
func (l *Lifecycle) Run(fields ...zap.Field) error {
	if err := l.start(); err != nil {
		return err
	}
	l.Log.Info("pipeline was started", append(l.pipelineFields(), fields...)...)
	return nil
}

// Resume starts consuming again after Pause.
func (l *Lifecycle) Resume() error {
	if err := l.start(); err != nil {
		return err
	}
	l.Log.Info("pipeline was resumed", l.pipelineFields()...)
	return nil
}

// Pause stops the consume loop and waits for it to exit, or for ctx: a loop blocked inserting a job
// into the full shared queue exits once there is room, and Pause does not wait for that.
func (l *Lifecycle) Pause(ctx context.Context) error {
	l.Mu.Lock()
	done, err := l.State.Pause()
	l.Mu.Unlock()
	if err != nil {
		return err
	}
	if !WaitDone(ctx, done) {
		l.Log.Warn("pipeline was paused, but its "+l.LoopName+" is still blocked inserting a job into the full queue", l.pipelineFields()...)
	}
	l.Log.Info("pipeline was paused", l.pipelineFields()...)
	return nil
}

func (l *Lifecycle) start() error {
	l.Mu.Lock()
	defer l.Mu.Unlock()
	return l.State.Start(l.Parent, l.First, l.Loop)
}

func (l *Lifecycle) pipelineFields() []zap.Field {
	return []zap.Field{zap.String("driver", l.State.Driver), zap.String("pipeline", l.State.Pipeline)}
}

// WithOp wraps a non-nil err in RoadRunner's error with op, as the Driver methods return them; nil
// stays nil.
func WithOp(op string, err error) error {
	if err == nil {
		return nil
	}
	return errors.E(errors.Op(op), err)
}
