package amqp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// consumerGen is one consumer channel. It outlives Pause/Resume (the consumer is cancelled and
// started again on it, so jobs taken before a pause are still acknowledged on it) and ends when the
// channel closes; a new one is opened then.
type consumerGen struct {
	ch     *amqp.Channel
	closed chan struct{}
	err    atomic.Pointer[amqp.Error]
	// ackMu orders the ack and nack frames with the bookkeeping of multiple_ack: a delivery
	// acknowledged twice would make RabbitMQ close the channel.
	ackMu sync.Mutex

	// Guarded by Driver.mu.
	dead        bool             // closed and cleaned up: its jobs are delivered again
	outstanding map[uint64]*Item // taken, not auto_ack, not settled: by delivery tag
	running     bool             // a consumer goroutine reads its deliveries
	done        chan struct{}    // closed when that goroutine exits
	drained     <-chan struct{}  // done of the last consumer goroutine (nil before the first)
}

func (g *consumerGen) isClosed() bool {
	if g.ch != nil && g.ch.IsClosed() {
		return true
	}
	select {
	case <-g.closed:
		return true
	default:
		return false
	}
}

func (d *Driver) currentGen() *consumerGen {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}

// supervise reconciles the connection and the consumer with what is wanted whenever something
// closes or changes, retrying with backoff while that fails.
func (d *Driver) supervise() {
	defer close(d.superDone)
	backoff := minRetry
	for {
		retry := false
		if d.acquire(d.life) == nil {
			retry = d.reconcile()
			d.release()
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if retry {
			timer = time.NewTimer(backoff)
			fire = timer.C
			backoff = min(backoff*2, maxRetry)
		} else {
			backoff = minRetry
		}
		select {
		case <-d.life.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-d.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// reconcile runs under d.op. It reports whether something failed and must be retried.
func (d *Driver) reconcile() bool {
	d.mu.Lock()
	stopped := d.stopped
	s := d.sess
	d.mu.Unlock()
	if stopped {
		return false
	}
	ctx, cancel := context.WithTimeout(d.life, opTimeout)
	defer cancel()

	if s != nil && s.isClosed() {
		d.lostSession(s)
		s = nil
	}
	if s == nil {
		ns, err := d.connect(ctx)
		if err != nil {
			d.setDown(err)
			return true
		}
		if !d.setUp(ns) {
			return false
		}
		s = ns
	}
	if p := s.pub.Load(); p == nil || p.isClosed() {
		if err := d.reopenPublisher(ctx, s, p); err != nil {
			return true
		}
	}
	if g := d.currentGen(); g != nil && g.isClosed() {
		d.dropGen(g)
	}
	d.mu.Lock()
	want := d.consuming && !d.stopped
	running := d.gen != nil && d.gen.running
	d.mu.Unlock()
	if want && !running {
		if err := d.startConsumer(ctx, s); err != nil {
			d.mu.Lock()
			first := d.consumeErr == nil
			d.consumeErr = err
			d.mu.Unlock()
			if first && !s.isClosed() {
				d.log.Error("the consumer could not be restarted, retrying", pipelineField(d), zap.Error(err))
			}
			return true
		}
		d.mu.Lock()
		d.consumeErr = nil
		d.mu.Unlock()
		d.log.Info("consuming again", pipelineField(d), zap.String("queue", d.conf.Queue))
	}
	return false
}

// connect dials, declares the topology and opens the publishing channel.
func (d *Driver) connect(ctx context.Context) (*session, error) {
	s, err := d.dial()
	if err != nil {
		return nil, err
	}
	if err := d.declareTopology(ctx, s); err != nil {
		s.close()
		return nil, err
	}
	p, err := d.openPublisher(s)
	if err != nil {
		s.close()
		return nil, err
	}
	s.pub.Store(p)
	return s, nil
}

// reopenPublisher replaces a closed publishing channel (a publish to a deleted exchange closes it),
// declaring the topology again first.
func (d *Driver) reopenPublisher(ctx context.Context, s *session, old *publisher) error {
	if old != nil {
		if e := old.err.Load(); e != nil {
			d.log.Warn("the publishing channel was closed by RabbitMQ, reopening it", pipelineField(d), zap.Error(e))
		}
	}
	err := d.declareTopology(ctx, s)
	var p *publisher
	if err == nil {
		p, err = d.openPublisher(s)
	}
	d.mu.Lock()
	first := d.pubErr == nil
	d.pubErr = err
	d.mu.Unlock()
	if err != nil {
		if first && !s.isClosed() {
			d.log.Error("the publishing channel could not be reopened, retrying", pipelineField(d), zap.Error(err))
		}
		return err
	}
	s.pub.Store(p)
	return nil
}

// lostSession forgets a closed connection and its consumer channel.
func (d *Driver) lostSession(s *session) {
	err := s.closeErr()
	d.mu.Lock()
	if d.sess == s {
		d.sess = nil
	}
	d.downErr = err
	d.downSince = time.Now()
	d.redialWarn = false
	d.mu.Unlock()
	d.log.Error("connection to RabbitMQ was lost, reconnecting", pipelineField(d), zap.String("addr", redactAddr(d.conf.Addr)), zap.Error(err))
	if g := d.currentGen(); g != nil {
		d.dropGen(g)
	}
	s.close()
}

// setDown records a failed reconnection attempt.
func (d *Driver) setDown(err error) {
	d.mu.Lock()
	if d.downSince.IsZero() {
		d.downSince = time.Now()
	}
	d.downErr = err
	since := d.downSince
	warn := !d.redialWarn && time.Since(since) > d.conf.RedialTimeout
	if warn {
		d.redialWarn = true
	}
	d.mu.Unlock()
	if warn {
		d.log.Error("RabbitMQ is still unreachable after redial_timeout; the driver keeps trying",
			pipelineField(d), zap.Duration("redial_timeout", d.conf.RedialTimeout), zap.Time("down_since", since), zap.Error(err))
	} else if ce := d.log.Check(zapcore.DebugLevel, "reconnection attempt failed"); ce != nil {
		ce.Write(pipelineField(d), zap.Error(err))
	}
}

// setUp installs a new session; false (and the session closed) if the driver stopped meanwhile.
func (d *Driver) setUp(s *session) bool {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		s.close()
		return false
	}
	since := d.downSince
	d.sess = s
	d.downErr = nil
	d.downSince = time.Time{}
	d.pubErr = nil
	d.mu.Unlock()
	d.log.Info("connection to RabbitMQ is back", pipelineField(d), zap.Duration("down_for", time.Since(since).Round(time.Millisecond)))
	return true
}

// startConsumer (under d.op) opens a consumer channel if needed, declares the topology (which
// recreates a queue deleted meanwhile) and starts a consumer goroutine.
func (d *Driver) startConsumer(ctx context.Context, s *session) error {
	g := d.currentGen()
	if g == nil {
		ch, err := s.conn.Channel()
		if err != nil {
			return fmt.Errorf("open the consumer channel: %w", err)
		}
		if err := ch.Qos(d.conf.Prefetch, 0, false); err != nil {
			_ = ch.Close()
			return fmt.Errorf("set prefetch %d (basic.qos): %w", d.conf.Prefetch, err)
		}
		g = &consumerGen{ch: ch, closed: make(chan struct{}), outstanding: make(map[uint64]*Item)}
		closes := ch.NotifyClose(make(chan *amqp.Error, 1))
		go func() {
			if e, ok := <-closes; ok && e != nil {
				g.err.Store(e)
			}
			close(g.closed)
			d.signal()
		}()
		d.mu.Lock()
		d.gen = g
		d.mu.Unlock()
	}
	if err := d.declareTopology(ctx, s); err != nil {
		return err
	}
	deliveries, err := g.ch.Consume(d.conf.Queue, d.conf.ConsumerID, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume queue %q as %q: %w", d.conf.Queue, d.conf.ConsumerID, err)
	}
	done := make(chan struct{})
	d.mu.Lock()
	g.running = true
	g.done = done
	g.drained = done
	d.mu.Unlock()
	go d.consume(g, deliveries, done)
	return nil
}

// consume moves deliveries into the shared queue until the consumer is cancelled or its channel
// closes. auto_ack jobs are acknowledged on receipt.
func (d *Driver) consume(g *consumerGen, deliveries <-chan amqp.Delivery, done chan struct{}) {
	defer func() {
		d.mu.Lock()
		if g.done == done {
			g.running = false
		}
		d.mu.Unlock()
		close(done)
		d.signal()
	}()
	for dv := range deliveries {
		m, warnings := decodeMessage(dv.Headers, dv.MessageId, d.conf.Priority)
		for _, w := range warnings {
			d.log.Warn("job metadata could not be read, using defaults", pipelineField(d), zap.String("id", m.id), zap.String("problem", w))
		}
		it := &Item{
			drv:      d,
			gen:      g,
			tag:      dv.DeliveryTag,
			id:       m.id,
			job:      m.job,
			priority: m.priority,
			payload:  dv.Body,
			headers:  m.headers,
			autoAck:  m.autoAck,
		}
		if it.autoAck {
			g.ackMu.Lock()
			err := g.ch.Ack(dv.DeliveryTag, false)
			g.ackMu.Unlock()
			if err != nil {
				d.log.Warn("auto_ack job could not be acknowledged, RabbitMQ delivers it again", pipelineField(d), zap.String("id", it.id), zap.Error(err))
				continue
			}
			it.settled = true
		} else {
			d.mu.Lock()
			if g.dead || d.stopped {
				// Not handed over: RabbitMQ delivers it again once the channel is closed.
				d.mu.Unlock()
				continue
			}
			g.outstanding[dv.DeliveryTag] = it
			d.mu.Unlock()
		}
		if ce := d.log.Check(zapcore.DebugLevel, "job was received"); ce != nil {
			ce.Write(pipelineField(d), zap.String("id", it.id), zap.Bool("redelivered", dv.Redelivered))
		}
		d.queue.Insert(it)
	}
}

// cancelConsumer cancels the running consumer (basic.cancel) and waits for its goroutine to hand
// over the deliveries it already received, or for ctx.
func (d *Driver) cancelConsumer(ctx context.Context, g *consumerGen) {
	if d.sendCancel(ctx, g) {
		d.waitConsumer(ctx, g)
	}
}

// sendCancel sends basic.cancel for the running consumer; false if there is none or ctx ended.
func (d *Driver) sendCancel(ctx context.Context, g *consumerGen) bool {
	d.mu.Lock()
	running := g.running
	d.mu.Unlock()
	if !running {
		return false
	}
	if g.isClosed() {
		return true
	}
	errc := make(chan error, 1)
	go func() { errc <- g.ch.Cancel(d.conf.ConsumerID, false) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, amqp.ErrClosed) {
			d.log.Warn("the consumer could not be cancelled, closing its channel", pipelineField(d), zap.Error(err))
			_ = g.ch.Close()
		}
		return true
	case <-ctx.Done():
		d.log.Warn("the consumer cancellation is still in progress", pipelineField(d))
		return false
	}
}

// waitConsumer waits for the consumer goroutine of g to exit, or for ctx.
func (d *Driver) waitConsumer(ctx context.Context, g *consumerGen) {
	d.mu.Lock()
	running, done := g.running, g.done
	d.mu.Unlock()
	if !running || done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
		d.log.Warn("the consumer is still handing over received jobs (the shared queue is full)", pipelineField(d))
	}
}

// waitDrained waits for the last consumer goroutine of g to exit.
func (d *Driver) waitDrained(ctx context.Context, g *consumerGen) error {
	d.mu.Lock()
	drained := g.drained
	d.mu.Unlock()
	if drained == nil {
		return nil
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("amqp pipeline %q: the previous consumer is still handing over received jobs (the shared queue is full): %w", d.pipeline, ctx.Err())
	}
}

// dropGen cleans up a closed consumer channel: its unacknowledged jobs are back in the queue on
// the broker, so those still waiting in the shared queue are removed from it (they would run twice
// otherwise), and acknowledging those at a worker fails.
func (d *Driver) dropGen(g *consumerGen) {
	d.mu.Lock()
	done := g.done
	running := g.running
	d.mu.Unlock()
	if running && done != nil {
		select {
		case <-done:
		case <-time.After(drainTimeout):
			d.log.Warn("the consumer of a closed channel is still handing over jobs", pipelineField(d))
		}
	}
	d.mu.Lock()
	if g.dead {
		d.mu.Unlock()
		return
	}
	g.dead = true
	atWorkers := len(g.outstanding)
	g.outstanding = map[uint64]*Item{}
	if d.gen == g {
		d.gen = nil
	}
	d.mu.Unlock()
	_ = g.ch.Close()

	removed := d.queue.Remove(d.pipeline)
	purged := 0
	for _, j := range removed {
		if it, ok := j.(*Item); ok && it.drv == d && it.gen == g && !it.autoAck {
			purged++
			continue
		}
		d.queue.Insert(j)
	}
	var reason error = amqp.ErrClosed
	if e := g.err.Load(); e != nil {
		reason = e
	}
	d.log.Warn("the consumer channel was closed; its unacknowledged jobs are back in the queue on RabbitMQ",
		pipelineField(d), zap.Int("removed_from_shared_queue", purged), zap.Int("at_workers", atWorkers-purged), zap.Error(reason))
}

// settleKind is what settle sends for a delivery.
type settleKind uint8

const (
	settleAck         settleKind = iota // basic.ack, multiple with multiple_ack
	settleAckSingle                     // basic.ack of this delivery only (after a requeue)
	settleNack                          // basic.nack without requeue
	settleNackRequeue                   // basic.nack with requeue
)

var errAlreadySettled = errors.New("the job was already acknowledged, nacked or requeued")

// settle sends an ack or nack for it. implicitAcked is true (and nothing sent) when a multiple_ack
// of a later delivery already acknowledged it. allowBusy lets a requeue settle its own job.
func (d *Driver) settle(it *Item, kind settleKind, allowBusy bool) (implicitAcked bool, err error) {
	g := it.gen
	g.ackMu.Lock()
	defer g.ackMu.Unlock()
	d.mu.Lock()
	switch {
	case it.settled && it.implicit:
		d.mu.Unlock()
		return true, nil
	case it.settled:
		d.mu.Unlock()
		return false, errAlreadySettled
	case it.busy && !allowBusy:
		d.mu.Unlock()
		return false, errors.New("the job is being requeued")
	case g.dead:
		it.settled = true
		d.mu.Unlock()
		return false, errChannelGone
	}
	it.settled = true
	delete(g.outstanding, it.tag)
	multiple := false
	if kind == settleAck && d.conf.MultipleAck {
		multiple = true
		for tag, o := range g.outstanding {
			if tag < it.tag && o.busy {
				multiple = false // a requeue in progress may still need to nack its job
				break
			}
		}
		if multiple {
			for tag, o := range g.outstanding {
				if tag < it.tag {
					o.settled, o.implicit = true, true
					delete(g.outstanding, tag)
				}
			}
		}
	}
	d.mu.Unlock()

	switch kind {
	case settleAck, settleAckSingle:
		err = g.ch.Ack(it.tag, multiple)
	case settleNack:
		err = g.ch.Nack(it.tag, false, false)
	case settleNackRequeue:
		err = g.ch.Nack(it.tag, false, true)
	}
	if err != nil {
		if errors.Is(err, amqp.ErrClosed) {
			return false, errChannelGone
		}
		return false, err
	}
	return false, nil
}

func (d *Driver) ack(it *Item) error {
	if it.autoAck {
		return nil
	}
	if _, err := d.settle(it, settleAck, false); err != nil {
		return fmt.Errorf("amqp pipeline %q: ack job %q: %w", d.pipeline, it.id, err)
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was acknowledged"); ce != nil {
		ce.Write(pipelineField(d), zap.String("id", it.id))
	}
	return nil
}

// nack sends basic.nack (requeue: RabbitMQ puts the message back in its place). A job already
// acknowledged by a multiple_ack is published again instead when requeue is asked for.
func (d *Driver) nack(it *Item, requeue bool) error {
	if it.autoAck {
		return nil
	}
	kind := settleNack
	if requeue {
		kind = settleNackRequeue
	}
	implicit, err := d.settle(it, kind, false)
	if err != nil {
		return fmt.Errorf("amqp pipeline %q: nack job %q: %w", d.pipeline, it.id, err)
	}
	if implicit && requeue {
		if err := d.republish(it, nil, 0); err != nil {
			return fmt.Errorf("amqp pipeline %q: nack job %q: it was acknowledged by multiple_ack and its copy could not be published, the job is lost: %w", d.pipeline, it.id, err)
		}
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was nacked"); ce != nil {
		ce.Write(pipelineField(d), zap.String("id", it.id), zap.Bool("requeue", requeue))
	}
	return nil
}

// requeue publishes a copy of the job (headers merged, after delay seconds) to the pipeline's
// queue, waits for its confirm, and only then acknowledges the original: the job is neither lost
// nor duplicated. If the copy cannot be published, the original is nacked back to the queue.
func (d *Driver) requeue(it *Item, extra map[string][]string, delay int) error {
	if it.autoAck {
		return nil
	}
	delay = min(max(delay, 0), maxDelayMs/1000)
	d.mu.Lock()
	switch {
	case it.busy:
		d.mu.Unlock()
		return fmt.Errorf("amqp pipeline %q: requeue job %q: the job is already being requeued", d.pipeline, it.id)
	case it.settled && !it.implicit:
		d.mu.Unlock()
		return fmt.Errorf("amqp pipeline %q: requeue job %q: %w", d.pipeline, it.id, errAlreadySettled)
	case !it.settled && it.gen.dead:
		it.settled = true
		d.mu.Unlock()
		return fmt.Errorf("amqp pipeline %q: requeue job %q: %w", d.pipeline, it.id, errChannelGone)
	}
	it.busy = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		it.busy = false
		d.mu.Unlock()
	}()

	if err := d.republish(it, extra, delay); err != nil {
		implicit, nerr := d.settle(it, settleNackRequeue, true)
		switch {
		case implicit:
			return fmt.Errorf("amqp pipeline %q: requeue job %q: it was acknowledged by multiple_ack and its copy could not be published, the job is lost: %w", d.pipeline, it.id, err)
		case nerr != nil:
			return fmt.Errorf("amqp pipeline %q: requeue job %q: %w; and the original could not be nacked: %v", d.pipeline, it.id, err, nerr)
		}
		return fmt.Errorf("amqp pipeline %q: requeue job %q: %w; the original was put back in the queue (without the delay)", d.pipeline, it.id, err)
	}
	if _, err := d.settle(it, settleAckSingle, true); err != nil {
		return fmt.Errorf("amqp pipeline %q: requeue job %q: the copy is queued but the original could not be acknowledged, so the job may run twice: %w", d.pipeline, it.id, err)
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was requeued"); ce != nil {
		ce.Write(pipelineField(d), zap.String("id", it.id), zap.Int("delay_seconds", delay))
	}
	return nil
}

// republish publishes a copy of the job straight to the pipeline's queue (through the default
// exchange, so a fanout or topic exchange does not copy it to other queues), after delay seconds.
func (d *Driver) republish(it *Item, extra map[string][]string, delay int) error {
	s, err := d.session()
	if err != nil {
		return err
	}
	headers := driverkit.MergeHeaders(it.headers, extra)
	table, err := encodeTable(it.id, it.job, d.pipeline, headers, int64(delay), it.priority, false)
	if err != nil {
		return err
	}
	pub := amqp.Publishing{
		Headers:      table,
		ContentType:  contentType,
		DeliveryMode: amqp.Persistent,
		Timestamp:    time.Now().UTC(),
		Body:         it.payload,
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if delay == 0 {
		return d.publish(ctx, s, "", d.conf.Queue, pub)
	}
	return d.publishDelayed(ctx, s, int64(delay)*1000, "", d.conf.Queue, d.conf.Queue, pub)
}
