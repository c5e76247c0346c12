package googlepubsub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	rrerrors "github.com/roadrunner-server/errors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// setupTimeout bounds the creation of the topics and the subscription at construction (retries of
// an unreachable server included). A variable for tests.
var setupTimeout = 15 * time.Second

const (
	// pushTimeout bounds a Push (retries of transient errors included) when the caller's context
	// allows more: a Push to an unreachable Pub/Sub fails after it with the server's error.
	pushTimeout = 5 * time.Second
	// opTimeout bounds the calls of Ack, Nack, Requeue, lease extensions and hand-backs.
	opTimeout = 15 * time.Second
	// pullWait bounds one Pull: the server answers as soon as a message arrives, or with nothing
	// shortly before this deadline. A Pull is never cancelled (see pull), so it also bounds how
	// long Pause and Stop keep the jobs they hand back.
	pullWait = 5 * time.Second
	// maxRetryWait caps the pause between attempts while Pub/Sub is unreachable.
	maxRetryWait = time.Second
	// maxHeldDelayed caps the delayed messages one pipeline holds in memory until they are due.
	// Past it, a delayed message is handed back to Pub/Sub until its time (at most 600 s at once).
	maxHeldDelayed = 1000
	// maxNackDelaySeconds is the longest ack deadline Pub/Sub accepts, so the longest delay of a
	// nack; longer requeue delays publish a copy.
	maxNackDelaySeconds = 600
	// ackBatch is how many ack ids go in one Acknowledge or ModifyAckDeadline call.
	ackBatch = 1000
	// settleTick is how often a stopped driver checks whether its last jobs were settled.
	settleTick = 20 * time.Millisecond
)

// Driver is the google_pub_sub jobs.Driver of one pipeline.
//
// Push publishes a message with the stock attribute layout and returns once Pub/Sub stored it.
// While the pipeline consumes, a pull loop asks the subscription for as many messages as prefetch
// allows (jobs of this pipeline in the shared queue or at a worker) and inserts them into the
// shared queue; a keeper renews the ack deadline of every held message every third of it, for as
// long as the job waits or runs. A message whose delay (rr_delay, counted from its publish time)
// has not elapsed is held aside with its lease renewed, and enters the queue when due. Pause and
// Stop end the pull loop (never cancelling a Pull in flight) and hand the messages not yet at a
// worker back to Pub/Sub. The shared queue's Insert is never called with mu held.
type Driver struct {
	log      *zap.Logger
	queue    jobs.Queue
	pipeline string
	conf     Config
	client   *pubsub.Client
	topic    string // full resource names
	sub      string
	dlt      string
	// retention is the subscription's message retention (0 = unknown): longer delays are refused.
	retention time.Duration
	// subAckDeadline is the subscription's own ack deadline (what a pull grants).
	subAckDeadline time.Duration
	wake           chan struct{}

	keepCtx    context.Context // ends when the client is closed
	keepCancel context.CancelFunc
	keeperOnce sync.Once
	bg         sync.WaitGroup // the keeper
	closeOnce  sync.Once
	closed     chan struct{} // closed once the client is closed

	mu        sync.Mutex
	held      map[string]*Item // by ack id: delayed, queued, reserved and parked messages
	nQueued   int
	nReserved int
	nDelayed  int
	nParked   int
	running   bool
	stopped   bool
	gen       uint64             // incremented by every start, Pause and Stop
	loopStop  context.CancelFunc // ends the current pull loop
	nLoops    int                // pull loops still running
	// pulling holds the deadline of each loop's Pull in flight (by generation).
	pulling map[uint64]time.Time
	pullErr error
	// ops counts calls to Pub/Sub of settled jobs still running (ack, nack, requeue, hand-backs):
	// the client stays open for them after Stop.
	ops int
}

var _ jobs.Driver = (*Driver)(nil)

// NewDriver connects to Pub/Sub, creates the topic, the subscription (and the dead-letter topic)
// when missing, and returns a driver that does not consume until Run.
func NewDriver(log *zap.Logger, pipeline string, conf Config, queue jobs.Queue) (*Driver, error) {
	const op = rrerrors.Op("google_pub_sub_new_driver")
	if queue == nil {
		return nil, rrerrors.E(op, fmt.Errorf("%s pipeline %q: nil queue", pluginName, pipeline))
	}
	if pipeline == "" {
		return nil, rrerrors.E(op, fmt.Errorf("%s pipeline: empty pipeline name", pluginName))
	}
	if log == nil {
		log = zap.NewNop()
	}
	if conf.Priority <= 0 {
		conf.Priority = DefaultPriority
	}
	if conf.Prefetch <= 0 {
		conf.Prefetch = DefaultPrefetch
	}
	if conf.AckDeadline <= 0 {
		conf.AckDeadline = DefaultAckDeadline
	}
	conf.AckDeadline = min(max(conf.AckDeadline, minAckDeadline), maxAckDeadline)
	if conf.Endpoint == "" {
		conf.Endpoint = DefaultEndpoint
	}
	if conf.Subscription == "" {
		conf.Subscription = DefaultSubscription(pipeline)
	}
	if conf.DeadLetterTopic != "" && conf.MaxDeliveryAttempts <= 0 {
		conf.MaxDeliveryAttempts = DefaultMaxDeliveryAttempts
	}
	if conf.ProjectID == "" || conf.Topic == "" {
		return nil, rrerrors.E(op, fmt.Errorf("%s pipeline %q: %s and %s are required", pluginName, pipeline, keyProjectID, keyTopic))
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	// The client keeps the context it was created with for its credentials: not the setup one.
	client, err := newClient(context.Background(), conf)
	if err != nil {
		return nil, rrerrors.E(op, fmt.Errorf("%s pipeline %q: %w", pluginName, pipeline, err))
	}
	d := &Driver{
		log:      log,
		queue:    queue,
		pipeline: pipeline,
		conf:     conf,
		client:   client,
		topic:    topicPath(conf.ProjectID, conf.Topic),
		sub:      subscriptionPath(conf.ProjectID, conf.Subscription),
		wake:     make(chan struct{}, 1),
		closed:   make(chan struct{}),
		held:     make(map[string]*Item),
		pulling:  make(map[uint64]time.Time),
	}
	if conf.DeadLetterTopic != "" {
		d.dlt = topicPath(conf.ProjectID, conf.DeadLetterTopic)
	}
	d.keepCtx, d.keepCancel = context.WithCancel(context.Background())

	if err := d.setup(ctx); err != nil {
		d.closeClient()
		return nil, rrerrors.E(op, fmt.Errorf("%s pipeline %q: Pub/Sub at %s, project %q: %w", pluginName, pipeline, conf.Endpoint, conf.ProjectID, err))
	}
	log.Debug("pipeline was created", zap.String("driver", pluginName), zap.String("pipeline", pipeline),
		zap.String("topic", d.topic), zap.String("subscription", d.sub), zap.String("dead_letter_topic", d.dlt))
	return d, nil
}

// Push publishes the job and returns once Pub/Sub confirmed it stored the message.
func (d *Driver) Push(ctx context.Context, msg jobs.Message) error {
	const op = rrerrors.Op("google_pub_sub_push")
	if msg == nil {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: nil message", pluginName, d.pipeline))
	}
	if d.isStopped() {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q is stopped, job %q was not pushed", pluginName, d.pipeline, msg.ID()))
	}
	prio := msg.Priority()
	if prio <= 0 {
		prio = d.conf.Priority
	}
	delay := min(max(msg.Delay(), 0), maxDelaySeconds)
	if d.retention > 0 && time.Duration(delay)*time.Second >= d.retention {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: job %q: a delay of %d s is not shorter than the message retention of subscription %s (%s): the message would expire before it is due",
			pluginName, d.pipeline, msg.ID(), delay, d.sub, d.retention))
	}
	w := &wireJob{ID: msg.ID(), Job: msg.Name(), Payload: msg.Payload(), Headers: msg.Headers(), Priority: prio, Delay: delay, AutoAck: msg.AutoAck()}
	m, err := w.encode()
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: job %q: %w", pluginName, d.pipeline, msg.ID(), err))
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	msgID, err := d.publish(ctx, d.topic, m)
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: push job %q to %s at %s: %w", pluginName, d.pipeline, msg.ID(), d.topic, d.conf.Endpoint, err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was pushed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", msg.ID()), zap.String("message_id", msgID), zap.Int64("delay_seconds", delay))
	}
	return nil
}

// Run starts consuming the pipeline.
func (d *Driver) Run(_ context.Context, _ jobs.Pipeline) error {
	const op = rrerrors.Op("google_pub_sub_run")
	if err := d.start(); err != nil {
		return rrerrors.E(op, err)
	}
	d.log.Info("pipeline was started", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline),
		zap.String("topic", d.topic), zap.String("subscription", d.sub))
	return nil
}

// Resume starts consuming again after Pause. Jobs that Pause set aside and that were not handed
// back yet go straight back to the shared queue.
func (d *Driver) Resume(_ context.Context, _ string) error {
	const op = rrerrors.Op("google_pub_sub_resume")
	if err := d.start(); err != nil {
		return rrerrors.E(op, err)
	}
	// Not in this goroutine: putting them back into a full queue may block.
	go d.flushParked(context.Background())
	d.log.Info("pipeline was resumed", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

func (d *Driver) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return fmt.Errorf("%s pipeline %q is stopped", pluginName, d.pipeline)
	}
	if d.running {
		return fmt.Errorf("%s pipeline %q is already running", pluginName, d.pipeline)
	}
	d.running = true
	d.gen++
	ctx, cancel := context.WithCancel(context.Background())
	d.loopStop = cancel
	d.pullErr = nil
	d.nLoops++
	go d.pullLoop(ctx, d.gen)
	d.keeperOnce.Do(func() {
		d.bg.Add(1)
		go d.keeper()
	})
	return nil
}

// Pause stops pulling and takes the pipeline's jobs that are not at a worker yet out of the shared
// queue. They are handed back to Pub/Sub (nacked: another consumer may take them; delayed ones
// when due) as soon as the Pull in flight, if any, has returned (within pullWait): handing them
// back earlier would let that Pull take them again. What that Pull returns is handed back too.
// Resume before then puts them straight back into the queue. Jobs at workers run to the end and
// are acked normally; pushes are still published. Pause does not wait for the Pull; a hand-back
// it makes itself is bounded by ctx.
func (d *Driver) Pause(ctx context.Context, _ string) error {
	const op = rrerrors.Op("google_pub_sub_pause")
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q is stopped", pluginName, d.pipeline))
	}
	if !d.running {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: no active listeners, nothing to pause", pluginName, d.pipeline))
	}
	d.running = false
	d.gen++
	d.loopStop()
	d.loopStop = nil
	d.parkDelayedLocked()
	d.mu.Unlock()

	d.park(ctx, d.takeQueued())
	d.flushParked(ctx)
	d.log.Info("pipeline was paused", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

// Stop stops consuming for good. The jobs not at a worker yet are handed back to Pub/Sub at once
// (for another consumer, or this pipeline after a restart), invisible until the Pull in flight,
// if any, has ended (at most pullWait + 1 s). The client stays open until that Pull has returned
// (what it brings is handed back too) and the jobs at workers are settled, or an ack deadline
// has passed. Idempotent; it does not wait for the Pull, and its hand-back is bounded by ctx.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	d.running = false
	d.gen++
	if d.loopStop != nil {
		d.loopStop()
		d.loopStop = nil
	}
	d.parkDelayedLocked()
	d.mu.Unlock()

	d.park(ctx, d.takeQueued())
	d.flushParked(ctx)
	atWorkers := d.heldCount()
	if d.idle() {
		d.closeClient()
	} else {
		go d.closeWhenSettled()
	}
	d.log.Info("pipeline was stopped", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline), zap.Int("at_workers", atWorkers))
	return nil
}

// closeWhenSettled closes the client once no job is held any more (the jobs at workers were
// acked, nacked or requeued), or after an ack deadline, when Pub/Sub redelivers them anyway.
func (d *Driver) closeWhenSettled() {
	deadline := time.NewTimer(d.conf.AckDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(settleTick)
	defer tick.Stop()
	for !d.idle() {
		select {
		case <-deadline.C:
			d.closeClient()
			return
		case <-tick.C:
		}
	}
	d.closeClient()
}

// closeClient stops the keeper and closes the client (once).
func (d *Driver) closeClient() {
	d.closeOnce.Do(func() {
		d.keepCancel()
		d.bg.Wait()
		if err := d.client.Close(); err != nil {
			d.log.Debug("client was closed with an error", zap.String("pipeline", d.pipeline), zap.Error(err))
		}
		close(d.closed)
	})
}

func (d *Driver) isClosed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}

// State reports what this process knows about the pipeline: Active = its jobs in the shared queue
// (and those Pause or Stop set aside until they are handed back), Reserved = its jobs at workers, Delayed = delayed messages it holds until they are due. Messages
// still in the subscription (the backlog) are not counted: Pub/Sub reports those only through Cloud
// Monitoring (num_undelivered_messages), and the emulator not at all.
func (d *Driver) State(_ context.Context) (*jobs.State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := &jobs.State{
		Pipeline: d.pipeline,
		Driver:   pluginName,
		Queue:    d.conf.Topic,
		Priority: uint64(d.conf.Priority), //nolint:gosec // validated >= 1
		Ready:    d.running,
		Active:   int64(d.nQueued + d.nParked),
		Reserved: int64(d.nReserved),
		Delayed:  int64(d.nDelayed),
	}
	if d.running && d.pullErr != nil {
		st.ErrorMessage = fmt.Sprintf("%s pipeline %q: pull from %s failed: %v", pluginName, d.pipeline, d.sub, d.pullErr)
	}
	return st, nil
}

func (d *Driver) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

// idle reports whether no job is held, no call of a settled job is running and no pull loop is left.
func (d *Driver) idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.held) == 0 && d.ops == 0 && d.nLoops == 0
}

func (d *Driver) heldCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.held)
}

// signal wakes the pull loop (a prefetch slot was freed).
func (d *Driver) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}
