package beanstalk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// itemState is where a reserved job is. Transitions happen under Driver.mu.
type itemState uint8

const (
	// stQueued: reserved, waiting for the feeder or in the plugin's queue.
	stQueued itemState = iota
	// stTaken: a worker took it (Context was called).
	stTaken
	// stSettling: an Ack, Nack or Requeue is in progress.
	stSettling
	// stDone: deleted, released, or given up.
	stDone
)

// Item is the beanstalk driver's jobs.Job: one job reserved on the consumer connection.
type Item struct {
	d        *Driver
	bid      uint64 // beanstalkd job id
	id       string
	job      string
	payload  []byte
	headers  map[string][]string // immutable
	priority int64
	autoAck  bool
	raw      bool          // the body was not a gob RR job
	ttr      time.Duration // the job's time-to-run

	// Guarded by d.mu.
	state   itemState
	lost    error // why the reservation ended without a command of ours (nil while it holds)
	touchAt time.Time
}

var _ jobs.Job = (*Item)(nil)

// errSettled is returned by claim for a job that was already acknowledged, nacked or requeued.
var errSettled = errors.New("already settled")

// ID returns the job id.
func (i *Item) ID() string { return i.id }

// GroupID returns the pipeline name (used by Queue.Remove).
func (i *Item) GroupID() string { return i.d.pipeline }

// Priority returns the job priority in the plugin's queue.
func (i *Item) Priority() int64 { return i.priority }

// Body returns the payload bytes.
func (i *Item) Body() []byte { return i.payload }

// Headers returns the job headers (may be nil). Callers must not modify the map.
func (i *Item) Headers() map[string][]string { return i.headers }

// Context returns the job context JSON and marks the job as taken by a worker. An auto_ack job is
// deleted from beanstalkd here, when a worker takes it (not when it is reserved), so auto_ack jobs
// still waiting in the plugin's queue at Stop or at a connection loss are not lost. A job whose
// reservation was lost before a worker took it is refused: beanstalkd delivers it again.
func (i *Item) Context() ([]byte, error) {
	d := i.d
	d.mu.Lock()
	if i.state == stQueued {
		if i.lost != nil {
			cause := i.lost
			d.mu.Unlock()
			return nil, d.lostError(i, cause)
		}
		i.state = stTaken
	}
	d.mu.Unlock()
	if i.autoAck {
		if err := d.settle(i, opDelete, 0); err != nil && !errors.Is(err, errSettled) {
			return nil, fmt.Errorf("auto_ack job could not be deleted, so it is not run now: %w", err)
		}
	}
	ctx := driverkit.JobContext{ID: i.id, Job: i.job, Driver: pluginName, Headers: i.headers, Queue: d.conf.Tube, Pipeline: d.pipeline}
	return ctx.Marshal()
}

// Ack deletes the job. A second Ack (or an Ack of an auto_ack job) is a no-op.
func (i *Item) Ack() error {
	return i.final("ack")
}

// Nack deletes the job, like NackWithOptions(false, 0) and like the stock driver: the jobs plugin
// calls plain Nack only when a job's context cannot be built, which would fail again on every
// redelivery.
func (i *Item) Nack() error {
	return i.final("nack")
}

// NackWithOptions releases the job to be ready again after delay seconds (headers and body kept,
// no copy: the stock driver put a copy and left the original to come back after its TTR) when
// requeue is true; otherwise it deletes the job.
func (i *Item) NackWithOptions(requeue bool, delay int) error {
	if !requeue {
		return i.final("nack")
	}
	return i.release(delay)
}

// Requeue makes the job ready again after delay seconds. Without new headers the job is released
// (same beanstalkd job). A release cannot change a job's body, so with headers the job is put
// again with the headers merged over its own (given keys win), then the original is deleted: put
// first, so a failure never loses it. If the put fails the job is released unchanged instead.
func (i *Item) Requeue(headers map[string][]string, delay int) error {
	merged := driverkit.MergeHeaders(i.headers, headers)
	if sameHeaders(merged, i.headers) {
		return i.release(delay)
	}
	d := i.d
	if err := d.claim(i); err != nil {
		if errors.Is(err, errSettled) {
			if i.autoAck {
				return nil
			}
			return fmt.Errorf("beanstalk pipeline %q: job %q was already acknowledged or requeued", d.pipeline, i.id)
		}
		return err
	}
	w := &wireItem{
		Job:     i.job,
		Ident:   i.id,
		Payload: i.payload,
		Hdrs:    merged,
		Options: &wireOptions{Priority: i.priority, Pipeline: d.pipeline, Delay: delay, AutoAck: i.autoAck, Queue: d.conf.Tube},
		TTR:     int64(d.ttr / time.Second),
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.conf.Timeout)
	bid, err := d.putItem(ctx, w, delaySeconds(delay))
	cancel()
	if err != nil {
		if rerr := d.run(i, opRelease, delaySeconds(delay)); rerr != nil {
			return fmt.Errorf("beanstalk pipeline %q: requeue job %q: put the copy with the new headers: %w; release the original: %w", d.pipeline, i.id, err, rerr)
		}
		return fmt.Errorf("beanstalk pipeline %q: requeue job %q: put the copy with the new headers: %w; the job was released with its old headers instead", d.pipeline, i.id, err)
	}
	if err := d.run(i, opDelete, 0); err != nil {
		return fmt.Errorf("beanstalk pipeline %q: job %q was requeued as beanstalk job %d, but the original could not be deleted, so it may run twice: %w", d.pipeline, i.id, bid, err)
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was requeued with new headers"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", i.id), zap.Uint64("beanstalk_id", bid), zap.Int("delay_seconds", delay))
	}
	return nil
}

// final deletes the job (Ack, Nack).
func (i *Item) final(what string) error {
	err := i.d.settle(i, opDelete, 0)
	if errors.Is(err, errSettled) {
		return nil
	}
	if err == nil {
		if ce := i.d.log.Check(zapcore.DebugLevel, "job was "+what+"ed"); ce != nil {
			ce.Write(zap.String("pipeline", i.d.pipeline), zap.String("id", i.id))
		}
	}
	return err
}

// release makes the job ready again after delay seconds.
func (i *Item) release(delay int) error {
	d := i.d
	err := d.settle(i, opRelease, delaySeconds(delay))
	if errors.Is(err, errSettled) {
		if i.autoAck {
			return nil
		}
		return fmt.Errorf("beanstalk pipeline %q: job %q was already acknowledged or requeued", d.pipeline, i.id)
	}
	if err == nil {
		if delay <= 0 {
			d.signal()
		}
		if ce := d.log.Check(zapcore.DebugLevel, "job was released"); ce != nil {
			ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", i.id), zap.Int("delay_seconds", delay))
		}
	}
	return err
}

// claim starts settling a job: errSettled when it already was, an error when its reservation was
// lost (nil for a job that never reached a worker: nothing ran, beanstalkd has it again).
func (d *Driver) claim(it *Item) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case it.state == stSettling || it.state == stDone:
		return errSettled
	case it.lost != nil:
		taken := it.state == stTaken
		it.state = stDone
		if !taken {
			return errSettled
		}
		return d.lostError(it, it.lost)
	case d.loopExited:
		it.state = stDone
		return d.lostError(it, errStopped)
	}
	it.state = stSettling
	return nil
}

// settle claims the job and runs one command on it.
func (d *Driver) settle(it *Item, kind opKind, delay time.Duration) error {
	if err := d.claim(it); err != nil {
		return err
	}
	return d.run(it, kind, delay)
}

// run hands a command on a claimed job to the consumer goroutine and waits for its result (the
// goroutine never waits in a long reserve while it holds a job, and every command is bounded by
// the timeout).
func (d *Driver) run(it *Item, kind opKind, delay time.Duration) error {
	o := &op{kind: kind, it: it, delay: delay, done: make(chan error, 1)}
	d.mu.Lock()
	if d.loopExited {
		it.state = stDone
		d.mu.Unlock()
		return d.lostError(it, errStopped)
	}
	d.ops = append(d.ops, o)
	// Rare: the connection was lost and replaced between claim and here, and the consumer went into
	// an idle reserve (it holds no job). Cut it short rather than wait for it.
	d.abortBlockingLocked()
	d.mu.Unlock()
	d.signal()
	err := <-o.done
	d.mu.Lock()
	it.state = stDone
	d.mu.Unlock()
	return err
}

// delaySeconds converts a delay in seconds for put and release (negative = none).
func delaySeconds(delay int) time.Duration {
	return time.Duration(min(max(int64(delay), 0), maxDelaySeconds)) * time.Second
}

// sameHeaders reports whether a and b hold the same keys and values.
func sameHeaders(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}
