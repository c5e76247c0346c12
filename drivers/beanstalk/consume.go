package beanstalk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/beanstalkd/go-beanstalk"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const (
	// minPoll and maxPoll bound the pause between two reserve-with-timeout 0 polls while the
	// consumer holds jobs and the tube is empty (a push of this driver wakes it at once).
	minPoll = 5 * time.Millisecond
	maxPoll = 100 * time.Millisecond
	// minRetry and maxRetry bound the pause between two connection attempts.
	minRetry = 50 * time.Millisecond
	maxRetry = 2 * time.Second
	// minTouch is the shortest touch period (for jobs with a TTR of 1 s).
	minTouch = 100 * time.Millisecond
)

// opKind is a command on a reserved job, run by the consumer goroutine.
type opKind uint8

const (
	opDelete opKind = iota
	opRelease
)

func (k opKind) String() string {
	if k == opRelease {
		return "release"
	}
	return "delete"
}

// op is a command handed to the consumer goroutine; done receives its result.
type op struct {
	kind  opKind
	it    *Item
	delay time.Duration
	done  chan error
}

// touchEvery is how often a job with this TTR is touched: three times per TTR.
func touchEvery(ttr time.Duration) time.Duration {
	return max(ttr/3, minTouch)
}

// consume is the consumer goroutine: it owns the consumer connection. Each turn it runs the
// commands handed to it (they settle jobs workers finished), touches the jobs whose touch is due,
// and reserves one more job if the pipeline is consuming and below prefetch. It exits at Stop,
// after the last command; closing its connection releases whatever it still held.
func (d *Driver) consume() {
	defer close(d.loopDone)
	var c *conn
	poll, retry := minPoll, time.Duration(0)
	for {
		d.mu.Lock()
		ops := d.ops
		d.ops = nil
		stopped, running := d.stopped, d.running
		if stopped && len(ops) == 0 {
			d.loopExited = true
			d.mu.Unlock()
			break
		}
		d.mu.Unlock()

		for _, o := range ops {
			c = d.exec(c, o)
		}
		if stopped {
			continue // take the commands that came meanwhile, then exit
		}
		if c != nil {
			c = d.touchDue(c)
		}
		if !running {
			d.idle(0)
			continue
		}
		if c == nil {
			nc, err := dial(d.life, d.conf)
			if err != nil {
				if d.life.Err() == nil {
					d.setConsErr(err)
					retry = min(max(retry*2, minRetry), maxRetry)
					d.idle(retry)
				}
				continue
			}
			c, retry = nc, 0
			d.connected()
		}
		c, poll = d.reserve(c, poll)
	}

	if c != nil {
		c.close()
	}
	d.mu.Lock()
	n := len(d.held)
	for bid, it := range d.held {
		it.lost = errStopped
		delete(d.held, bid)
	}
	d.feed = nil
	d.mu.Unlock()
	if n > 0 {
		d.log.Info("jobs still reserved by the stopped pipeline were released to beanstalkd (those at a worker run again)",
			zap.String("pipeline", d.pipeline), zap.Int("count", n))
	}
}

// idle waits until the consumer is woken, limit passes (0: no limit) or a touch comes due.
func (d *Driver) idle(limit time.Duration) {
	d.mu.Lock()
	next, holding := d.nextTouch, len(d.held) > 0
	d.mu.Unlock()
	wait := limit
	if holding && !next.IsZero() {
		w := max(time.Until(next), 0)
		if wait <= 0 || w < wait {
			wait = w
		}
		if wait == 0 {
			return
		}
	}
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-d.wake:
	case <-timer:
	case <-d.life.Done():
	}
}

// reserve reserves at most one job. With no job held and no command waiting it waits up to
// reserve_timeout on the server (Pause and Stop cut that short); otherwise it only polls, so the
// commands of running jobs never wait behind it.
func (d *Driver) reserve(c *conn, poll time.Duration) (*conn, time.Duration) {
	d.mu.Lock()
	held := len(d.held)
	if held >= d.conf.Prefetch {
		d.mu.Unlock()
		if ce := d.log.Check(zapcore.DebugLevel, "prefetch limit was reached, waiting for the jobs to be processed"); ce != nil {
			ce.Write(zap.String("pipeline", d.pipeline), zap.Int("prefetch", d.conf.Prefetch))
		}
		d.idle(0)
		return c, poll
	}
	blocking := held == 0 && len(d.ops) == 0
	if blocking {
		if !d.running || d.stopped {
			d.mu.Unlock()
			return c, poll
		}
		d.blocking = c
	}
	d.mu.Unlock()

	var timeout time.Duration
	if blocking {
		timeout = d.conf.ReserveTimeout
	}
	var bid uint64
	var body []byte
	err := c.do(context.Background(), timeout+d.conf.Timeout, func() error {
		var err error
		bid, body, err = c.tubes.Reserve(timeout)
		return err
	})
	if blocking {
		d.mu.Lock()
		d.blocking = nil
		aborted := d.aborted
		d.aborted = false
		d.mu.Unlock()
		if aborted {
			// Pause or Stop closed the connection: beanstalkd released anything reserved on it.
			c.close()
			return nil, minPoll
		}
	}

	switch {
	case err == nil:
	case errors.Is(err, beanstalk.ErrTimeout):
		if !blocking {
			d.idle(poll)
			poll = min(poll*2, maxPoll)
		}
		return c, poll
	case errors.Is(err, beanstalk.ErrDeadline):
		// A held job is within a second of its TTR (beanstalkd's safety margin): touch them all.
		d.mu.Lock()
		for _, it := range d.held {
			it.touchAt = time.Time{}
		}
		d.nextTouch = time.Time{}
		d.mu.Unlock()
		c = d.touchDue(c)
		if c != nil {
			d.idle(poll)
			poll = min(poll*2, maxPoll)
		}
		return c, poll
	case broken(err):
		d.lose(c, err)
		return nil, minPoll
	default:
		// The server is draining or short of memory: keep the connection, try again later.
		d.log.Warn("beanstalkd refused to reserve a job, retrying", zap.String("pipeline", d.pipeline), zap.Error(err))
		d.idle(maxRetry)
		return c, poll
	}
	return d.accept(c, bid, body), minPoll
}

// accept turns a reserved job into an Item and hands it to the feeder.
func (d *Driver) accept(c *conn, bid uint64, body []byte) *conn {
	it := d.newItem(bid, body)
	if it.ttr == 0 {
		// Not put by this driver: ask beanstalkd for the job's TTR, to touch it in time.
		err := c.do(context.Background(), d.conf.Timeout, func() error {
			var err error
			it.ttr, _, err = c.jobStats(bid)
			return err
		})
		if broken(err) {
			d.lose(c, err)
			return nil
		}
		if err != nil || it.ttr <= 0 {
			it.ttr = time.Second // unknown: touch as often as the shortest TTR needs
		}
	}

	now := time.Now()
	d.mu.Lock()
	if !d.running || d.stopped {
		d.mu.Unlock()
		// Paused while reserving: give the job back at once.
		err := c.do(context.Background(), d.conf.Timeout, func() error { return c.bc.Release(bid, d.conf.TubePriority, 0) })
		if broken(err) {
			d.lose(c, err)
			return nil
		}
		return c
	}
	it.touchAt = now.Add(touchEvery(it.ttr))
	if d.nextTouch.IsZero() || it.touchAt.Before(d.nextTouch) {
		d.nextTouch = it.touchAt
	}
	d.held[bid] = it
	d.feed = append(d.feed, it)
	d.mu.Unlock()
	d.signalFeeder()
	if ce := d.log.Check(zapcore.DebugLevel, "job was reserved"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Uint64("beanstalk_id", bid))
	}
	return c
}

// newItem decodes a reserved body. A body that is not a gob RR job (put by another producer, or
// garbage) is delivered as it is, as the stock driver does: the body is the payload, the job name
// "deduced_by_rr", the id a fresh UUID, the priority the pipeline's.
func (d *Driver) newItem(bid uint64, body []byte) *Item {
	it := &Item{d: d, bid: bid, priority: d.conf.Priority}
	w, err := decodeJob(body)
	if err != nil {
		it.id, it.job, it.payload, it.raw = newUUID(), rawJobName, body, true
		if it.payload == nil {
			it.payload = []byte{}
		}
		d.mu.Lock()
		first := !d.rawLogged
		d.rawLogged = true
		d.mu.Unlock()
		level := zapcore.DebugLevel
		if first {
			level = zapcore.InfoLevel
		}
		if ce := d.log.Check(level, "job body is not a RoadRunner job (gob), it is delivered as a raw payload with job name "+rawJobName+" (logged at info level once)"); ce != nil {
			ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Uint64("beanstalk_id", bid),
				zap.Int("size", len(body)), zap.NamedError("decode_error", err))
		}
		return it
	}
	it.id, it.job, it.payload, it.headers = w.Ident, w.Job, w.Payload, w.Hdrs
	if it.id == "" {
		it.id = newUUID()
	}
	if it.job == "" {
		it.job = rawJobName
	}
	if it.payload == nil {
		it.payload = []byte{}
	}
	if w.Options != nil {
		if w.Options.Priority > 0 {
			it.priority = w.Options.Priority
		}
		it.autoAck = w.Options.AutoAck
	}
	if w.TTR > 0 && w.TTR <= maxDelaySeconds {
		it.ttr = time.Duration(w.TTR) * time.Second
	}
	return it
}

// exec runs a command on a held job and sends its result. It returns the connection, or nil when
// the connection broke.
func (d *Driver) exec(c *conn, o *op) *conn {
	it := o.it
	d.mu.Lock()
	current := c != nil && d.held[it.bid] == it
	cause := it.lost
	d.mu.Unlock()
	if !current {
		if cause == nil {
			cause = errors.New("no connection to beanstalkd")
		}
		o.done <- d.lostError(it, cause)
		return c
	}
	err := c.do(context.Background(), d.conf.Timeout, func() error {
		if o.kind == opRelease {
			return c.bc.Release(it.bid, d.conf.TubePriority, o.delay)
		}
		return c.bc.Delete(it.bid)
	})
	if broken(err) {
		d.lose(c, err)
		o.done <- d.lostError(it, err)
		return nil
	}
	d.mu.Lock()
	delete(d.held, it.bid)
	d.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("beanstalk pipeline %q: %s job %q (beanstalk id %d): beanstalkd no longer has it reserved by this consumer, its TTR expired or it was deleted: %w",
			d.pipeline, o.kind, it.id, it.bid, err)
	}
	o.done <- err
	return c
}

// touchDue touches the held jobs whose touch is due. It returns the connection, or nil when it
// broke.
func (d *Driver) touchDue(c *conn) *conn {
	now := time.Now()
	d.mu.Lock()
	if len(d.held) == 0 || (!d.nextTouch.IsZero() && now.Before(d.nextTouch)) {
		d.mu.Unlock()
		return c
	}
	var due []*Item
	for _, it := range d.held {
		if !it.touchAt.After(now) {
			due = append(due, it)
		}
	}
	d.mu.Unlock()

	for _, it := range due {
		err := c.do(context.Background(), d.conf.Timeout, func() error { return c.bc.Touch(it.bid) })
		if broken(err) {
			d.lose(c, err)
			return nil
		}
		d.mu.Lock()
		switch {
		case err == nil:
			it.touchAt = time.Now().Add(touchEvery(it.ttr))
		case d.held[it.bid] == it:
			it.lost = fmt.Errorf("its reservation expired before it could be touched (TTR %s): %w", it.ttr, err)
			delete(d.held, it.bid)
			d.log.Warn("job reservation expired before it could be touched: another consumer may run it too",
				zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Uint64("beanstalk_id", it.bid), zap.Duration("ttr", it.ttr))
		}
		d.mu.Unlock()
	}

	d.mu.Lock()
	d.nextTouch = time.Time{}
	for _, it := range d.held {
		if d.nextTouch.IsZero() || it.touchAt.Before(d.nextTouch) {
			d.nextTouch = it.touchAt
		}
	}
	d.mu.Unlock()
	return c
}

// lose closes a connection that broke. Every job reserved on it is released by beanstalkd and
// will be delivered again, so those still in the plugin's queue are taken out (they would run
// twice), and the acks of those at a worker fail.
func (d *Driver) lose(c *conn, cause error) {
	c.close()
	d.mu.Lock()
	n := len(d.held)
	for bid, it := range d.held {
		it.lost = cause
		delete(d.held, bid)
	}
	d.feed = nil
	d.nextTouch = time.Time{}
	d.mu.Unlock()
	removed := len(d.dropFromQueue())
	d.setConsErr(cause)
	if n > 0 {
		d.log.Warn("jobs reserved on the lost connection go back to beanstalkd and are delivered again",
			zap.String("pipeline", d.pipeline), zap.Int("reserved", n), zap.Int("taken_from_queue", removed))
	}
}

// setConsErr records why the consumer connection is down; the first failure is logged as an error.
func (d *Driver) setConsErr(err error) {
	d.mu.Lock()
	prev := d.consErr
	d.consErr = err
	d.mu.Unlock()
	if prev == nil {
		d.log.Error("connection to beanstalkd was lost, reconnecting", zap.String("pipeline", d.pipeline),
			zap.String("addr", d.conf.Addr), zap.Error(err))
	}
}

// connected records a new consumer connection.
func (d *Driver) connected() {
	d.mu.Lock()
	prev := d.consErr
	d.consErr = nil
	d.mu.Unlock()
	if prev != nil {
		d.log.Info("connection to beanstalkd is back, consuming again", zap.String("pipeline", d.pipeline), zap.String("addr", d.conf.Addr))
	}
}

// lostError explains why a command on a job could not run.
func (d *Driver) lostError(it *Item, cause error) error {
	if errors.Is(cause, errStopped) {
		return fmt.Errorf("beanstalk pipeline %q: job %q: the pipeline was stopped and beanstalkd released the job, so it runs again", d.pipeline, it.id)
	}
	return fmt.Errorf("beanstalk pipeline %q: job %q: its reservation was lost (%v); beanstalkd releases it, so it runs again", d.pipeline, it.id, cause)
}
