package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	rrerrors "github.com/roadrunner-server/errors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const (
	// setupTimeout bounds the first connection and topology declaration.
	setupTimeout = 30 * time.Second
	// opTimeout bounds the publishes of Requeue and the calls of the supervisor.
	opTimeout = 15 * time.Second
	// minRetry and maxRetry bound the pause between reconnection attempts.
	minRetry = 100 * time.Millisecond
	maxRetry = time.Second
	// drainTimeout bounds the wait for a dead channel's consumer goroutine.
	drainTimeout = 5 * time.Second
)

// Driver is the amqp jobs.Driver of one pipeline: one connection with a publishing channel (confirm
// mode), a channel for declares and queue state, and, while consuming, a consumer channel.
//
// A supervisor goroutine keeps that in shape: when the connection or a channel closes (broker
// restart, network cut, consumer_timeout, a deleted queue) it reconnects with backoff, declares the
// topology again and restarts the consumer if the pipeline is consuming. Jobs of a dead consumer
// channel still in the shared queue are removed from it (RabbitMQ delivers them again).
type Driver struct {
	log      *zap.Logger
	queue    jobs.Queue
	pipeline string
	conf     Config
	instance string // prefix of publish tags (message_id)
	seq      atomic.Uint64

	wake       chan struct{}
	life       context.Context
	lifeCancel context.CancelFunc
	superDone  chan struct{}

	// op serializes lifecycle changes: reconnects, consumer starts and stops, Run, Pause, Resume,
	// Stop. A semaphore so waiting for it respects a context.
	op chan struct{}

	mu          sync.Mutex
	sess        *session     // nil while disconnected
	downErr     error        // why the driver is disconnected
	downSince   time.Time    // when the connection was lost
	redialWarn  bool         // the redial_timeout error was logged for this outage
	pubErr      error        // the publishing channel could not be reopened
	consumeErr  error        // the consumer could not be (re)started
	consuming   bool         // consumption is wanted (Run/Resume, not paused)
	stopped     bool         // Stop was called
	gen         *consumerGen // the consumer channel, nil before the first Run or after it died
	delayQueues map[string]time.Time
}

var _ jobs.Driver = (*Driver)(nil)

// NewDriver connects, declares the exchange (and the queue with its binding when conf.Queue is
// set) and returns a driver that does not consume until Run.
func NewDriver(log *zap.Logger, pipeline string, conf Config, queue jobs.Queue) (*Driver, error) {
	const op = rrerrors.Op("amqp_new_driver")
	if queue == nil {
		return nil, rrerrors.E(op, fmt.Errorf("amqp pipeline %q: nil queue", pipeline))
	}
	if pipeline == "" {
		return nil, rrerrors.E(op, errors.New("amqp pipeline: empty pipeline name"))
	}
	if log == nil {
		log = zap.NewNop()
	}
	conf = withDefaults(conf)
	var b [6]byte
	_, _ = rand.Read(b[:])
	d := &Driver{
		log:         log,
		queue:       queue,
		pipeline:    pipeline,
		conf:        conf,
		instance:    "rr-" + hex.EncodeToString(b[:]),
		wake:        make(chan struct{}, 1),
		superDone:   make(chan struct{}),
		op:          make(chan struct{}, 1),
		delayQueues: make(map[string]time.Time),
	}
	d.life, d.lifeCancel = context.WithCancel(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	s, err := d.connect(ctx)
	if err != nil {
		d.lifeCancel()
		return nil, rrerrors.E(op, fmt.Errorf("amqp pipeline %q: %w", pipeline, err))
	}
	d.sess = s
	go d.supervise()
	d.log.Debug("pipeline connected", zap.String("pipeline", pipeline), zap.String("addr", redactAddr(conf.Addr)),
		zap.String("exchange", conf.Exchange), zap.String("queue", conf.Queue), zap.String("routing_key", conf.RoutingKey))
	return d, nil
}

// withDefaults fills the zero values of a Config built by hand.
func withDefaults(c Config) Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Exchange == "" {
		c.Exchange = DefaultExchange
	}
	if c.ExchangeType == "" {
		c.ExchangeType = DefaultExchangeType
	}
	if c.Prefetch <= 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.Priority <= 0 {
		c.Priority = DefaultPriority
	}
	if c.RedialTimeout <= 0 {
		c.RedialTimeout = DefaultRedialTimeout
	}
	if c.ConsumerID == "" {
		c.ConsumerID = "roadrunner-" + newUUID()
	}
	return c
}

func pipelineField(d *Driver) zap.Field { return zap.String("pipeline", d.pipeline) }

func zapReason(r string) zap.Field { return zap.String("reason", r) }

func (d *Driver) publishTag() string {
	return d.instance + "-" + strconv.FormatUint(d.seq.Add(1), 10)
}

func (d *Driver) acquire(ctx context.Context) error {
	select {
	case d.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Driver) release() { <-d.op }

// signal wakes the supervisor.
func (d *Driver) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// session returns the live session, or nil and why there is none.
func (d *Driver) session() (*session, error) {
	d.mu.Lock()
	s, downErr, since := d.sess, d.downErr, d.downSince
	d.mu.Unlock()
	if s != nil && !s.isClosed() {
		return s, nil
	}
	if s != nil {
		downErr = s.closeErr()
	}
	if downErr == nil {
		downErr = errors.New("reconnecting")
	}
	if since.IsZero() {
		return nil, fmt.Errorf("%w at %s: %v", errNotConnected, redactAddr(d.conf.Addr), downErr)
	}
	return nil, fmt.Errorf("%w at %s since %s (%v): %v; reconnecting", errNotConnected, redactAddr(d.conf.Addr),
		since.UTC().Format(time.RFC3339), time.Since(since).Round(time.Second), downErr)
}

// Push publishes the job and returns once RabbitMQ confirmed it (so a nil error means the job is
// in a queue). A delayed job goes to its delay queue and reaches the pipeline's exchange when the
// delay is over. While the broker is unreachable Push fails at once.
func (d *Driver) Push(ctx context.Context, msg jobs.Message) error {
	const op = rrerrors.Op("amqp_push")
	if msg == nil {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: nil message", d.pipeline))
	}
	d.mu.Lock()
	stopped := d.stopped
	d.mu.Unlock()
	if stopped {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q is stopped, job %q was not pushed", d.pipeline, msg.ID()))
	}
	s, err := d.session()
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: job %q was not pushed: %w", d.pipeline, msg.ID(), err))
	}

	headers := make(map[string][]string, len(msg.Headers()))
	for k, v := range msg.Headers() {
		headers[k] = v
	}
	key := d.conf.RoutingKey
	if v, ok := headers[headerRoutingKey]; ok {
		delete(headers, headerRoutingKey)
		if len(v) == 1 && v[0] != "" {
			key = v[0]
		}
	}
	if key == "" && (d.conf.ExchangeType == amqp.ExchangeDirect || d.conf.ExchangeType == amqp.ExchangeTopic) {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: job %q was not pushed: empty routing key, consider adding the routing key name to the AMQP configuration (routing_key) or an %s header", d.pipeline, msg.ID(), headerRoutingKey))
	}
	prio := msg.Priority()
	if prio <= 0 {
		prio = d.conf.Priority
	}
	delay := max(msg.Delay(), 0)
	if delay > maxDelayMs/1000 {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: job %q was not pushed: delay %ds is longer than the maximum of %ds", d.pipeline, msg.ID(), delay, maxDelayMs/1000))
	}
	table, err := encodeTable(msg.ID(), msg.Name(), d.pipeline, headers, delay, prio, msg.AutoAck())
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: job %q: %w", d.pipeline, msg.ID(), err))
	}
	pub := amqp.Publishing{
		Headers:      table,
		ContentType:  contentType,
		DeliveryMode: amqp.Persistent,
		Timestamp:    time.Now().UTC(),
		Body:         msg.Payload(),
	}
	if delay == 0 {
		err = d.publish(ctx, s, d.conf.Exchange, key, pub)
	} else {
		err = d.publishDelayed(ctx, s, delay*1000, d.conf.Exchange, d.conf.Queue, key, pub)
	}
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: push job %q: %w", d.pipeline, msg.ID(), err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was pushed"); ce != nil {
		ce.Write(pipelineField(d), zap.String("id", msg.ID()), zap.Int64("delay_seconds", delay), zap.String("routing_key", key))
	}
	return nil
}

// Run starts consuming the pipeline (declaring the queue and its binding again). It fails while
// the broker is unreachable.
func (d *Driver) Run(ctx context.Context, p jobs.Pipeline) error {
	const op = rrerrors.Op("amqp_run")
	if p != nil && p.Name() != d.pipeline {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: no such pipeline registered: %s", d.pipeline, p.Name()))
	}
	started, err := d.startConsuming(ctx, true)
	if err != nil {
		return rrerrors.E(op, err)
	}
	if started {
		d.log.Info("pipeline was started", zap.String("driver", pluginName), pipelineField(d),
			zap.String("queue", d.conf.Queue), zap.String("exchange", d.conf.Exchange), zap.String("routing_key", d.conf.RoutingKey))
	}
	return nil
}

// Resume starts consuming again after Pause.
func (d *Driver) Resume(ctx context.Context, pipeline string) error {
	const op = rrerrors.Op("amqp_resume")
	if pipeline != d.pipeline {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: no such pipeline: %s", d.pipeline, pipeline))
	}
	if _, err := d.startConsuming(ctx, false); err != nil {
		return rrerrors.E(op, err)
	}
	d.log.Info("pipeline was resumed", zap.String("driver", pluginName), pipelineField(d))
	return nil
}

// startConsuming implements Run (idempotent) and Resume (an error when already consuming).
func (d *Driver) startConsuming(ctx context.Context, idempotent bool) (bool, error) {
	if d.conf.Queue == "" {
		return false, fmt.Errorf("amqp pipeline %q: empty queue name, consider adding the queue name to the AMQP configuration", d.pipeline)
	}
	if err := d.acquire(ctx); err != nil {
		return false, fmt.Errorf("amqp pipeline %q: wait for a reconnect or pause in progress: %w", d.pipeline, err)
	}
	defer d.release()
	d.mu.Lock()
	stopped, consuming := d.stopped, d.consuming
	d.mu.Unlock()
	switch {
	case stopped:
		return false, fmt.Errorf("amqp pipeline %q is stopped", d.pipeline)
	case consuming && idempotent:
		return false, nil
	case consuming:
		return false, fmt.Errorf("amqp pipeline %q: amqp listener is already in the active state", d.pipeline)
	}
	s, err := d.session()
	if err != nil {
		return false, fmt.Errorf("amqp pipeline %q: %w", d.pipeline, err)
	}
	if g := d.currentGen(); g != nil {
		if err := d.waitDrained(ctx, g); err != nil {
			return false, err
		}
		if g.isClosed() {
			d.dropGen(g)
		}
	}
	if err := d.startConsumer(ctx, s); err != nil {
		return false, fmt.Errorf("amqp pipeline %q: %w", d.pipeline, err)
	}
	d.mu.Lock()
	d.consuming = true
	d.consumeErr = nil
	d.mu.Unlock()
	return true, nil
}

// Pause cancels the consumer (basic.cancel). Jobs already taken from the queue still run and are
// acknowledged on the same channel; pushes keep being stored.
func (d *Driver) Pause(ctx context.Context, pipeline string) error {
	const op = rrerrors.Op("amqp_pause")
	if pipeline != d.pipeline {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: no such pipeline: %s", d.pipeline, pipeline))
	}
	if err := d.acquire(ctx); err != nil {
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: wait for a reconnect or resume in progress: %w", d.pipeline, err))
	}
	defer d.release()
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q is stopped", d.pipeline))
	}
	if !d.consuming {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("amqp pipeline %q: no active listeners, nothing to pause", d.pipeline))
	}
	d.consuming = false
	d.consumeErr = nil
	g := d.gen
	d.mu.Unlock()

	if g != nil {
		d.cancelConsumer(ctx, g)
	}
	d.log.Info("pipeline was paused", zap.String("driver", pluginName), pipelineField(d))
	return nil
}

// Stop stops consuming for good: the consumer is cancelled, the pipeline's jobs are removed from
// the shared queue and the connection is closed, so RabbitMQ puts every unacknowledged job back in
// the queue. With delete_queue_on_stop the queue is deleted first. Idempotent, bounded by ctx.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	d.consuming = false
	d.mu.Unlock()

	locked := d.acquire(ctx) == nil
	if locked {
		defer d.release()
	}
	s, _ := d.session()
	g := d.currentGen()
	if g != nil && s != nil {
		d.sendCancel(ctx, g)
	}
	// Free room for a consumer blocked inserting into a full queue, let it finish, then remove
	// what it inserted meanwhile.
	removed := d.drainConsumer(ctx, g)

	if d.conf.DeleteQueueOnStop && d.conf.Queue != "" && s != nil {
		var purged int
		err := s.call(ctx, func(ch *amqp.Channel) error {
			var err error
			purged, err = ch.QueueDelete(d.conf.Queue, false, false, false)
			return err
		})
		if err != nil {
			d.log.Error("queue could not be deleted (delete_queue_on_stop)", pipelineField(d), zap.String("queue", d.conf.Queue), zap.Error(err))
		} else {
			d.log.Info("queue was deleted (delete_queue_on_stop)", pipelineField(d), zap.String("queue", d.conf.Queue), zap.Int("messages", purged))
		}
	}

	d.mu.Lock()
	if g := d.gen; g != nil {
		g.dead = true
		g.outstanding = map[uint64]*Item{}
	}
	d.sess = nil
	d.mu.Unlock()
	d.lifeCancel()

	closed := make(chan struct{})
	go func() {
		if s != nil {
			s.close()
		}
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		d.log.Warn("connection is still closing", pipelineField(d))
	}
	select {
	case <-d.superDone:
	case <-ctx.Done():
	}
	d.log.Info("pipeline was stopped", zap.String("driver", pluginName), pipelineField(d), zap.Int("returned_to_queue", removed))
	return nil
}

// drainConsumer removes the pipeline's jobs from the shared queue until the consumer goroutine of g
// (if any) exited, so one blocked inserting into a full queue can finish. It returns how many jobs
// it removed.
func (d *Driver) drainConsumer(ctx context.Context, g *consumerGen) int {
	own := func(it *Item) bool { return it.drv == d }
	var done chan struct{}
	if g != nil {
		d.mu.Lock()
		if g.running {
			done = g.done
		}
		d.mu.Unlock()
	}
	removed := 0
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		removed += len(driverkit.RemoveFromQueue(d.queue, d.pipeline, own))
		if done == nil {
			return removed
		}
		select {
		case <-done:
			done = nil
		case <-t.C:
		case <-ctx.Done():
			d.log.Warn("the consumer is still handing over received jobs (the shared queue is full)", pipelineField(d))
			return removed
		}
	}
}

// State reports Active = messages ready in the queue, Delayed = messages in this pipeline's delay
// queues that this process knows of, Reserved = jobs this process took from the queue and has not
// acknowledged yet (in the shared queue or at a worker). Ready is false while paused or while the
// broker is unreachable; ErrorMessage then says why (so /ready reports the pipeline unhealthy).
func (d *Driver) State(ctx context.Context) (*jobs.State, error) {
	d.mu.Lock()
	st := &jobs.State{
		Pipeline: d.pipeline,
		Driver:   pluginName,
		Queue:    d.conf.Queue,
		Priority: uint64(d.conf.Priority), //nolint:gosec // validated >= 1
	}
	stopped, consuming, consumeErr, pubErr := d.stopped, d.consuming, d.consumeErr, d.pubErr
	running := false
	if g := d.gen; g != nil && !g.dead {
		st.Reserved = int64(len(g.outstanding))
		running = g.running
	}
	now := time.Now()
	names := make([]string, 0, len(d.delayQueues))
	for name, until := range d.delayQueues {
		if now.After(until) {
			delete(d.delayQueues, name)
			continue
		}
		names = append(names, name)
	}
	d.mu.Unlock()
	sort.Strings(names)

	if stopped {
		st.ErrorMessage = fmt.Sprintf("amqp pipeline %q is stopped", d.pipeline)
		return st, nil
	}
	s, err := d.session()
	if err != nil {
		st.ErrorMessage = fmt.Sprintf("amqp pipeline %q: %v", d.pipeline, err)
		return st, nil
	}
	st.Ready = consuming && running
	switch {
	case consuming && !running && consumeErr != nil:
		st.ErrorMessage = fmt.Sprintf("amqp pipeline %q: the consumer could not be restarted: %v; retrying", d.pipeline, consumeErr)
	case consuming && !running:
		st.ErrorMessage = fmt.Sprintf("amqp pipeline %q: the consumer is being restarted", d.pipeline)
	case pubErr != nil:
		st.ErrorMessage = fmt.Sprintf("amqp pipeline %q: the publishing channel could not be reopened: %v; retrying", d.pipeline, pubErr)
	}

	if d.conf.Queue != "" {
		err := s.call(ctx, func(ch *amqp.Channel) error {
			q, err := ch.QueueDeclarePassive(d.conf.Queue, d.conf.Durable, d.conf.QueueAutoDelete, d.conf.Exclusive, false, d.conf.QueueHeaders)
			if err != nil {
				return err
			}
			st.Active = int64(q.Messages)
			return nil
		})
		if err != nil && st.ErrorMessage == "" {
			st.ErrorMessage = fmt.Sprintf("amqp pipeline %q: read the state of queue %q: %v", d.pipeline, d.conf.Queue, err)
		}
	}
	for _, name := range names {
		var gone bool
		err := s.call(ctx, func(ch *amqp.Channel) error {
			q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
			if err != nil {
				var ae *amqp.Error
				if errors.As(err, &ae) && ae.Code == amqp.NotFound {
					gone = true
					return nil
				}
				return err
			}
			st.Delayed += int64(q.Messages)
			return nil
		})
		if gone {
			d.mu.Lock()
			delete(d.delayQueues, name)
			d.mu.Unlock()
		}
		if err != nil {
			if st.ErrorMessage == "" {
				st.ErrorMessage = fmt.Sprintf("amqp pipeline %q: read the state of delay queue %q: %v", d.pipeline, name, err)
			}
			break
		}
	}
	return st, nil
}

// trackDelayQueue records a delay queue for State until it expires.
func (d *Driver) trackDelayQueue(name string, until time.Time) {
	d.mu.Lock()
	if until.After(d.delayQueues[name]) {
		d.delayQueues[name] = until
	}
	d.mu.Unlock()
}
