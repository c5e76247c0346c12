package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	rrerrors "github.com/roadrunner-server/errors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const (
	// connectTimeout bounds one dial of the server.
	connectTimeout = 5 * time.Second
	// reconnectWait is the pause between reconnect attempts (nats.go adds up to 100 ms of jitter).
	reconnectWait = time.Second
	// pingInterval: a dead connection is noticed after two unanswered pings.
	pingInterval = 10 * time.Second
	// opTimeout bounds the broker calls of acks, requeues, deletes and pushes without a deadline.
	opTimeout = 10 * time.Second
	// setupTimeout bounds the connection, stream and consumer setup at construction.
	setupTimeout = 30 * time.Second
	// fetchWait is how long one pull request waits for messages before the next one is sent (and
	// at most how long Pause and Stop wait for the pending one).
	fetchWait = time.Second
	// maxRetryWait caps the pause between attempts while fetching fails.
	maxRetryWait = 2 * time.Second
	// maxDelaySeconds caps a job delay (about 68 years).
	maxDelaySeconds = 1 << 31
)

// Driver is the nats jobs.Driver of one pipeline.
//
// Jobs are messages of Config.Subject in the JetStream stream Config.Stream. While the pipeline
// consumes, a fetch loop pulls up to prefetch messages (minus those this process holds) from the
// durable consumer and inserts them into the shared queue; the consumer's MaxAckPending is
// prefetch too. Every held message gets a progress signal (InProgress) every ack_wait/3, so the
// server does not redeliver it while it waits in the shared queue or runs. Delayed jobs are
// published to <subject>.rr-delayed; a second durable consumer holds each of them back
// (NakWithDelay) until it is due, then publishes it to the subject and acks it. The shared
// queue's Insert is never called with mu held.
type Driver struct {
	log      *zap.Logger
	queue    jobs.Queue
	pipeline string
	conf     Config
	delayed  string // the delayed subject
	nc       *nats.Conn
	js       jetstream.JetStream
	names    [2]string // durable consumer names: main, delayed
	wake     chan struct{}
	limiter  *limiter

	life       context.Context
	lifeCancel context.CancelFunc
	bgWG       sync.WaitGroup
	setupMu    sync.Mutex // one repair at a time

	mu        sync.Mutex
	consume   driverkit.ConsumeState // guarded by mu
	stream    jetstream.Stream
	mainCons  jetstream.Consumer
	delayCons jetstream.Consumer
	held      map[uint64]*Item // non-auto_ack messages in the shared queue or at a worker, by stream seq
	connErr   error            // why the connection is down, nil while connected
	fetchErr  error
	delayErr  error
}

var _ jobs.Driver = (*Driver)(nil)

// NewDriver connects to the server, creates or updates the stream and the pipeline's durable
// consumers, and returns a driver that does not consume until Run.
func NewDriver(log *zap.Logger, pipeline string, conf Config, queue jobs.Queue) (*Driver, error) {
	const op = rrerrors.Op("nats_new_driver")
	if queue == nil {
		return nil, rrerrors.E(op, fmt.Errorf("nats pipeline %q: nil queue", pipeline))
	}
	if pipeline == "" {
		return nil, rrerrors.E(op, errors.New("nats pipeline: empty pipeline name"))
	}
	if log == nil {
		log = zap.NewNop()
	}
	conf = withDefaults(conf)
	if err := validSubject(conf.Subject); err != nil {
		return nil, rrerrors.E(op, fmt.Errorf("nats pipeline %q: subject %v, got %q", pipeline, err, conf.Subject))
	}
	if err := validStreamName(conf.Stream); err != nil {
		return nil, rrerrors.E(op, fmt.Errorf("nats pipeline %q: stream %v, got %q", pipeline, err, conf.Stream))
	}
	main, delayedName := consumerNames(pipeline, conf.Subject)
	d := &Driver{
		consume:  driverkit.ConsumeState{Driver: pluginName, Pipeline: pipeline},
		log:      log,
		queue:    queue,
		pipeline: pipeline,
		conf:     conf,
		delayed:  delayedSubject(conf.Subject),
		names:    [2]string{main, delayedName},
		wake:     make(chan struct{}, 1),
		limiter:  newLimiter(conf.RateLimit),
		held:     make(map[uint64]*Item),
	}
	d.life, d.lifeCancel = context.WithCancel(context.Background())

	nc, err := connect(conf.Addr, pipeline, d)
	if err != nil {
		d.lifeCancel()
		return nil, rrerrors.E(op, fmt.Errorf("nats pipeline %q: connect to %s: %w", pipeline, redactURL(conf.Addr), err))
	}
	d.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		d.lifeCancel()
		return nil, rrerrors.E(op, fmt.Errorf("nats pipeline %q: %w", pipeline, err))
	}
	d.js = js

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := d.setup(ctx); err != nil {
		nc.Close()
		d.lifeCancel()
		return nil, rrerrors.E(op, fmt.Errorf("nats pipeline %q: %s: %w", pipeline, redactURL(conf.Addr), err))
	}
	return d, nil
}

func withDefaults(conf Config) Config {
	if conf.Addr == "" {
		conf.Addr = DefaultAddr
	}
	if conf.Subject == "" {
		conf.Subject = DefaultSubject
	}
	if conf.Stream == "" {
		conf.Stream = DefaultStream
	}
	if conf.Priority <= 0 {
		conf.Priority = DefaultPriority
	}
	if conf.Prefetch <= 0 {
		conf.Prefetch = DefaultPrefetch
	}
	conf.Prefetch = min(conf.Prefetch, maxPrefetch)
	if conf.AckWait <= 0 {
		conf.AckWait = DefaultAckWait
	}
	conf.AckWait = max(conf.AckWait, minAckWait)
	return conf
}

// setup creates or updates the stream (with the subject and the delayed subject) and both durable
// consumers. It runs at construction, and again when a fetch finds them gone.
func (d *Driver) setup(ctx context.Context) error {
	d.setupMu.Lock()
	defer d.setupMu.Unlock()
	// Pipelines of this process on the same stream set up one at a time (the jobs plugin starts
	// pipelines in parallel, and a stream update replaces the whole subject list). Another process
	// changing the stream at the same moment can still make a step fail: retry.
	unlock := lockStream(d.conf.Addr, d.conf.Stream)
	defer unlock()
	var err error
	for attempt := 1; ; attempt++ {
		if err = d.setupOnce(ctx); err == nil || attempt >= setupAttempts || !retryableSetupError(err) {
			return err
		}
		if !sleepCtx(ctx, time.Duration(attempt)*100*time.Millisecond) {
			return err
		}
	}
}

func (d *Driver) setupOnce(ctx context.Context) error {
	s, err := ensureStream(ctx, d.js, d.conf.Stream, []string{d.conf.Subject, d.delayed})
	if err != nil {
		return err
	}
	policy := jetstream.DeliverAllPolicy
	if d.conf.DeliverNew {
		policy = jetstream.DeliverNewPolicy
	}
	mainCons, err := ensureConsumer(ctx, s, jetstream.ConsumerConfig{
		Durable:       d.names[0],
		Description:   fmt.Sprintf("rrjobs pipeline %s", d.pipeline),
		FilterSubject: d.conf.Subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       d.conf.AckWait,
		MaxAckPending: d.conf.Prefetch,
		MaxDeliver:    -1,
		DeliverPolicy: policy,
	})
	if err != nil {
		return err
	}
	delayCons, err := ensureConsumer(ctx, s, jetstream.ConsumerConfig{
		Durable:       d.names[1],
		Description:   fmt.Sprintf("rrjobs pipeline %s: delayed jobs", d.pipeline),
		FilterSubject: d.delayed,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       delayedAckWait,
		MaxAckPending: -1,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.stream, d.mainCons, d.delayCons = s, mainCons, delayCons
	d.mu.Unlock()
	return nil
}

// Push publishes the job and waits for the stream's ack: nil means the job is stored. A delayed
// job goes to the delayed subject. While the connection is down the push fails at once.
func (d *Driver) Push(ctx context.Context, msg jobs.Message) error {
	const op = rrerrors.Op("nats_push")
	if msg == nil {
		return rrerrors.E(op, fmt.Errorf("nats pipeline %q: nil message", d.pipeline))
	}
	d.mu.Lock()
	stopped, connErr := d.consume.Stopped(), d.connErr
	d.mu.Unlock()
	if stopped {
		return rrerrors.E(op, fmt.Errorf("nats pipeline %q is stopped, job %q was not pushed", d.pipeline, msg.ID()))
	}
	if !d.nc.IsConnected() {
		return rrerrors.E(op, fmt.Errorf("nats pipeline %q: push job %q: %w; the job was not stored", d.pipeline, msg.ID(), d.notConnected(connErr)))
	}
	prio := msg.Priority()
	if prio <= 0 {
		prio = d.conf.Priority
	}
	j := job{
		id:       msg.ID(),
		name:     msg.Name(),
		payload:  msg.Payload(),
		headers:  msg.Headers(),
		priority: prio,
		autoAck:  msg.AutoAck(),
		delay:    min(max(msg.Delay(), 0), maxDelaySeconds),
	}
	subject := d.conf.Subject
	if j.delay > 0 {
		j.notBefore = time.Now().Add(time.Duration(j.delay) * time.Second).UnixMilli()
		subject = d.delayed
	}
	if err := d.publish(ctx, &j, subject, ""); err != nil {
		return rrerrors.E(op, fmt.Errorf("nats pipeline %q: push job %q: %w; the job was not stored", d.pipeline, msg.ID(), err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was pushed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", msg.ID()), zap.Int64("delay_seconds", j.delay))
	}
	return nil
}

// publish stores j on subject and waits for the stream's ack (within ctx, or opTimeout when ctx
// has no deadline). msgID, when set, lets the stream drop a repeated publish (Nats-Msg-Id).
func (d *Driver) publish(ctx context.Context, j *job, subject, msgID string) error {
	body, hdr, err := j.encode(d.pipeline)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return d.publishRaw(ctx, &nats.Msg{Subject: subject, Data: body, Header: hdr}, msgID)
}

func (d *Driver) publishRaw(ctx context.Context, m *nats.Msg, msgID string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opTimeout)
		defer cancel()
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(d.conf.Stream)}
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := d.js.PublishMsg(ctx, m, opts...); err != nil {
		if !d.nc.IsConnected() {
			d.mu.Lock()
			connErr := d.connErr
			d.mu.Unlock()
			return fmt.Errorf("publish to subject %q of stream %q: %w (%w)", m.Subject, d.conf.Stream, err, d.notConnected(connErr))
		}
		return fmt.Errorf("publish to subject %q of stream %q at %s: %w", m.Subject, d.conf.Stream, redactURL(d.conf.Addr), err)
	}
	return nil
}

// notConnected describes a lost connection.
func (d *Driver) notConnected(cause error) error {
	status := d.nc.Status().String()
	if cause != nil {
		return fmt.Errorf("not connected to the NATS server at %s (%s: %v)", redactURL(d.conf.Addr), status, cause)
	}
	return fmt.Errorf("not connected to the NATS server at %s (%s)", redactURL(d.conf.Addr), status)
}

// Run starts consuming the pipeline.
func (d *Driver) Run(_ context.Context, _ jobs.Pipeline) error {
	return driverkit.WithOp("nats_run", d.lifecycle().Run(zap.String("stream", d.conf.Stream), zap.String("subject", d.conf.Subject), zap.String("consumer", d.names[0])))
}

// Resume starts consuming again after Pause.
func (d *Driver) Resume(_ context.Context, _ string) error {
	return driverkit.WithOp("nats_resume", d.lifecycle().Resume())
}

// Pause stops fetching; jobs already in the shared queue still run (their progress signals go on)
// and pushes are stored. It waits for the fetch loop to exit, or for ctx.
func (d *Driver) Pause(ctx context.Context, _ string) error {
	return driverkit.WithOp("nats_pause", d.lifecycle().Pause(ctx))
}

// lifecycle is Run, Resume and Pause on this driver's consume loop.
func (d *Driver) lifecycle() *driverkit.Lifecycle {
	return &driverkit.Lifecycle{
		Mu: &d.mu, State: &d.consume, Parent: d.life, Log: d.log, LoopName: "fetch loop",
		First: func() {
			d.bgWG.Add(2)
			go d.heartbeat()
			go d.delayLoop()
		},
		Loop: d.consumeLoop,
	}
}

// Stop stops consuming for good: the pipeline's jobs are taken out of the shared queue and handed
// back to the server (Nak, so they are delivered again at once, to any consumer), the stream is
// deleted with delete_stream_on_stop, and the connection is flushed and closed. Jobs still at a
// worker are delivered again after ack_wait. Idempotent.
func (d *Driver) Stop(ctx context.Context) error {
	const op = rrerrors.Op("nats_stop")
	d.mu.Lock()
	done, first := d.consume.Stop()
	d.mu.Unlock()
	if !first {
		return nil
	}
	// The delayed-jobs loop and the progress signals end too (their pending pull request in
	// parallel with the fetch loop's).
	d.lifeCancel()

	// Free room for a fetch loop blocked in Insert, then wait for its pending pull request to end
	// and for it to exit; only then hand the jobs back (see fetchOnce).
	taken := d.takeFromQueue()
	if !driverkit.WaitDone(ctx, done) {
		d.log.Warn("pipeline fetch loop is still blocked inserting a job into the full queue",
			zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	}
	released := d.handBack(append(taken, d.takeFromQueue()...))

	bgDone := make(chan struct{})
	go func() {
		d.bgWG.Wait()
		close(bgDone)
	}()
	select {
	case <-bgDone:
	case <-ctx.Done():
	}

	var stopErr error
	if d.conf.DeleteStreamOnStop {
		dctx, cancel := context.WithTimeout(ctx, opTimeout)
		err := d.js.DeleteStream(dctx, d.conf.Stream)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			stopErr = fmt.Errorf("nats pipeline %q: delete stream %q (delete_stream_on_stop): %w", d.pipeline, d.conf.Stream, err)
			d.log.Error("stream could not be deleted", zap.String("pipeline", d.pipeline), zap.String("stream", d.conf.Stream), zap.Error(err))
		}
	}
	if d.nc.IsConnected() {
		fctx, cancel := context.WithTimeout(ctx, opTimeout)
		if err := d.nc.FlushWithContext(fctx); err != nil {
			d.log.Warn("acknowledgements could not be flushed before closing the connection, their jobs are delivered again after ack_wait",
				zap.String("pipeline", d.pipeline), zap.Error(err))
		}
		cancel()
	}
	d.nc.Close()

	d.mu.Lock()
	atWorkers := len(d.held)
	d.mu.Unlock()
	d.log.Info("pipeline was stopped", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline),
		zap.Int("handed_back", released), zap.Int("left_to_ack_wait", atWorkers))
	if stopErr != nil {
		return rrerrors.E(op, stopErr)
	}
	return nil
}

// State reports the consumer's counts: Active = messages not delivered yet (NumPending), Reserved
// = delivered and not acked yet (NumAckPending: in a shared queue or at a worker, in any rr
// instance sharing the consumer, or waiting for a redelivery), Delayed = delayed jobs not due yet.
// While the connection is down Ready is false, the counts are 0 and ErrorMessage says why.
func (d *Driver) State(ctx context.Context) (*jobs.State, error) {
	d.mu.Lock()
	st := &jobs.State{
		Pipeline: d.pipeline,
		Driver:   pluginName,
		Queue:    d.conf.Subject,
		Priority: uint64(d.conf.Priority), //nolint:gosec // >= 1
	}
	running, stopped, connErr, fetchErr, delayErr := d.consume.Running(), d.consume.Stopped(), d.connErr, d.fetchErr, d.delayErr
	mainCons, delayCons := d.mainCons, d.delayCons
	d.mu.Unlock()

	if stopped {
		st.ErrorMessage = fmt.Sprintf("nats pipeline %q is stopped", d.pipeline)
		return st, nil
	}
	if !d.nc.IsConnected() {
		st.ErrorMessage = fmt.Sprintf("nats pipeline %q: %v", d.pipeline, d.notConnected(connErr))
		return st, nil
	}
	st.Ready = running
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opTimeout)
		defer cancel()
	}
	ci, err := mainCons.Info(ctx)
	if err != nil {
		st.ErrorMessage = fmt.Sprintf("nats pipeline %q: read consumer %q of stream %q: %v", d.pipeline, d.names[0], d.conf.Stream, err)
		return st, nil
	}
	di, err := delayCons.Info(ctx)
	if err != nil {
		st.ErrorMessage = fmt.Sprintf("nats pipeline %q: read consumer %q of stream %q: %v", d.pipeline, d.names[1], d.conf.Stream, err)
		return st, nil
	}
	st.Active = int64(min(ci.NumPending, 1<<62)) //nolint:gosec // bounded
	st.Reserved = int64(ci.NumAckPending)
	st.Delayed = int64(min(di.NumPending, 1<<62)) + int64(di.NumAckPending) //nolint:gosec // bounded
	switch {
	case running && fetchErr != nil:
		st.ErrorMessage = fmt.Sprintf("nats pipeline %q: fetch failed: %v", d.pipeline, fetchErr)
	case delayErr != nil:
		st.ErrorMessage = fmt.Sprintf("nats pipeline %q: delayed jobs cannot be moved: %v", d.pipeline, delayErr)
	}
	return st, nil
}

// onDisconnect records a lost connection (nats.go reconnects by itself).
func (d *Driver) onDisconnect(_ *nats.Conn, err error) {
	d.mu.Lock()
	stopped := d.consume.Stopped()
	if err == nil {
		err = errors.New("connection closed")
	}
	d.connErr = err
	d.mu.Unlock()
	if stopped {
		return
	}
	d.log.Error("connection to the NATS server was lost, reconnecting", zap.String("pipeline", d.pipeline),
		zap.String("addr", redactURL(d.conf.Addr)), zap.Error(err))
}

// onReconnect clears the error; the fetch loops send new pull requests by themselves.
func (d *Driver) onReconnect(nc *nats.Conn) {
	d.mu.Lock()
	d.connErr = nil
	d.mu.Unlock()
	d.signal()
	d.log.Info("connection to the NATS server is back", zap.String("pipeline", d.pipeline), zap.String("url", redactURL(nc.ConnectedUrl())))
}

func (d *Driver) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	subject := ""
	if sub != nil {
		subject = sub.Subject
	}
	d.log.Warn("NATS client error", zap.String("pipeline", d.pipeline), zap.String("subscription", subject), zap.Error(err))
}

// signal wakes the fetch loop (a prefetch slot was freed, or the connection is back).
func (d *Driver) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Driver) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.consume.Stopped()
}

// sleepCtx sleeps for dur unless ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
