package nats

import (
	"context"
	"sync"
	"time"
)

// limiter paces the fetch loop to rate_limit bits per second of message data (body and headers,
// as the NATS server meters push consumers). It allows a burst of one second's worth, and a
// message larger than that still passes (after its full wait). A nil limiter never waits.
type limiter struct {
	mu   sync.Mutex
	rate float64 // bits per second
	tat  time.Time
}

const limiterBurst = time.Second

func newLimiter(bitsPerSecond uint64) *limiter {
	if bitsPerSecond == 0 {
		return nil
	}
	return &limiter{rate: float64(bitsPerSecond)}
}

// wait blocks until bits may pass; false when ctx ended first.
func (l *limiter) wait(ctx context.Context, bits int) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	now := time.Now()
	if l.tat.Before(now.Add(-limiterBurst)) {
		l.tat = now.Add(-limiterBurst)
	}
	l.tat = l.tat.Add(time.Duration(float64(bits) / l.rate * float64(time.Second)))
	wait := l.tat.Sub(now)
	l.mu.Unlock()
	if wait <= 0 {
		return true
	}
	return sleepCtx(ctx, wait)
}
