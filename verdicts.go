package jobs

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Applying a worker's verdict (Ack, Nack, Requeue) costs what the driver needs to make it durable:
// nothing for memory, a group commit's fsync for boltdb, a round trip for PostgreSQL. A poller that
// waited for it would leave its worker idle meanwhile, so verdicts of pipelines that proved slow are
// applied in the background, by at most verdictSlotsPerPoller goroutines per poller, while the
// poller takes the next job. Fast verdicts stay on the poller: a goroutine per job would cost more
// than the ack itself. A job is acknowledged only when its verdict was applied, and shutdown waits
// for the verdicts in flight before it stops the drivers, so nothing is lost on the way.
const (
	// slowVerdict is the average verdict time above which a pipeline's verdicts go to the background.
	slowVerdict = 100 * time.Microsecond
	// verdictSlotsPerPoller bounds the background verdicts of a group (times its pollers): enough
	// for a durable driver to batch many acks into one commit, and a bound on jobs held in memory.
	verdictSlotsPerPoller = 8
)

// verdictTimer keeps a pipeline's average verdict time (an exponentially weighted moving average).
type verdictTimer struct {
	avg atomic.Int64 // nanoseconds
}

func (v *verdictTimer) slow() bool { return time.Duration(v.avg.Load()) > slowVerdict }

// observe folds one verdict's duration into the average (weight 1/8). Concurrent updates may lose
// a sample, which only delays the switch by a job or two.
func (v *verdictTimer) observe(d time.Duration) {
	old := v.avg.Load()
	v.avg.Store(old + (int64(d)-old)/8)
}

// backgroundVerdicts runs verdicts off the pollers, bounded by its slots.
type backgroundVerdicts struct {
	slots chan struct{}
	wg    sync.WaitGroup
}

func newBackgroundVerdicts(pollers int) *backgroundVerdicts {
	return &backgroundVerdicts{slots: make(chan struct{}, max(1, pollers)*verdictSlotsPerPoller)}
}

// tryGo runs apply in the background when a slot is free and reports whether it did; with every
// slot taken the caller applies the verdict itself, which slows its intake to the driver's pace.
func (b *backgroundVerdicts) tryGo(apply func()) bool {
	select {
	case b.slots <- struct{}{}:
	default:
		return false
	}
	b.wg.Go(func() {
		defer func() { <-b.slots }()
		apply()
	})
	return true
}

// wait returns when every background verdict was applied, or when ctx is done (a driver that hangs
// must not hang shutdown: its unacknowledged jobs stay with the driver and are delivered again).
func (b *backgroundVerdicts) wait(ctx context.Context, log *zap.Logger) {
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("grace period is over with worker verdicts still being applied; their jobs stay with their drivers", zap.Int("pending", len(b.slots)))
	}
}
