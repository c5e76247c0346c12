package beanstalk

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/beanstalkd/go-beanstalk"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	rrerrors "github.com/roadrunner-server/errors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const (
	// maxDelaySeconds is beanstalkd's limit on a put or release delay (2^32-1 s).
	maxDelaySeconds = math.MaxUint32
	// startupDialLimit bounds the connection attempt NewDriver makes.
	startupDialLimit = 5 * time.Second
)

// Driver is the beanstalk jobs.Driver of one pipeline.
//
// Two connections per pipeline: the producer connection (put, stats-tube; one user at a time,
// guarded by prodSem) and the consumer connection, owned by the consumer goroutine (consume.go),
// which reserves jobs and runs every command on them: beanstalkd accepts delete, release and
// touch of a reserved job only from the connection that reserved it. Ack, Nack and Requeue hand
// their command to that goroutine and wait for its result. The goroutine blocks in a long
// reserve-with-timeout only while it holds no job (so no command can be waiting for it); Pause and
// Stop interrupt that reserve by closing the connection, which releases nothing that matters.
// While it holds jobs it polls with reserve-with-timeout 0 between commands, and touches every
// held job every third of its TTR, so a job never times out while it waits in the plugin's
// queue or runs at a worker. A third goroutine hands reserved jobs to the plugin's queue, whose
// Insert may block.
type Driver struct {
	log      *zap.Logger
	queue    jobs.Queue
	pipeline string
	conf     Config
	ttr      time.Duration

	prodSem chan struct{} // one slot: the right to use prod
	prod    *conn         // nil until dialled, and after it broke

	life       context.Context // cancelled by Stop
	lifeCancel context.CancelFunc
	wake       chan struct{} // wakes the consumer goroutine
	feedWake   chan struct{} // wakes the feeder goroutine
	loopDone   chan struct{}
	feedDone   chan struct{}

	mu         sync.Mutex
	running    bool // consuming (Run or Resume, not paused)
	stopped    bool
	started    bool // the consumer and feeder goroutines were started
	loopExited bool // the consumer goroutine took its last command
	held       map[uint64]*Item
	nextTouch  time.Time // earliest touchAt of the held jobs
	feed       []*Item   // reserved, not yet inserted into the plugin's queue
	ops        []*op     // commands for the consumer goroutine
	blocking   *conn     // the consumer connection while it waits in an idle reserve
	aborted    bool      // Pause or Stop closed blocking
	consErr    error     // why the consumer connection is down (nil when up)
	rawLogged  bool      // the first raw (non-RR) body was logged at info level
}

var _ jobs.Driver = (*Driver)(nil)

// NewDriver returns a driver for pipeline that does not consume until Run. It tries to connect
// once (so a wrong address shows in the log at start), but a beanstalkd that is down does not fail
// the pipeline: pushes fail until it is back, and consumption starts when it is reachable.
func NewDriver(log *zap.Logger, pipeline string, conf Config, queue jobs.Queue) (*Driver, error) {
	const op = rrerrors.Op("beanstalk_new_driver")
	if queue == nil {
		return nil, rrerrors.E(op, fmt.Errorf("beanstalk pipeline %q: nil queue", pipeline))
	}
	if pipeline == "" {
		return nil, rrerrors.E(op, errors.New("beanstalk pipeline: empty pipeline name"))
	}
	if log == nil {
		log = zap.NewNop()
	}
	if conf.Network == "" {
		var err error
		if conf.Addr == "" {
			conf.Addr = DefaultAddr
		}
		if conf.Network, conf.Address, err = parseAddr(conf.Addr); err != nil {
			return nil, rrerrors.E(op, fmt.Errorf("beanstalk pipeline %q: addr %w", pipeline, err))
		}
	}
	if conf.Timeout < minTimeout {
		conf.Timeout = DefaultTimeout
	}
	if conf.Tube == "" {
		conf.Tube = DefaultTube
	}
	if err := checkTubeName(conf.Tube); err != nil {
		return nil, rrerrors.E(op, fmt.Errorf("beanstalk pipeline %q: tube %w", pipeline, err))
	}
	if conf.ReserveTimeout < minReserveTimeout {
		conf.ReserveTimeout = DefaultReserveTimeout
	}
	if conf.Priority <= 0 {
		conf.Priority = DefaultPriority
	}
	if conf.Prefetch <= 0 {
		conf.Prefetch = DefaultPrefetch
	}

	d := &Driver{
		log:      log,
		queue:    queue,
		pipeline: pipeline,
		conf:     conf,
		ttr:      conf.ttr(),
		prodSem:  make(chan struct{}, 1),
		wake:     make(chan struct{}, 1),
		feedWake: make(chan struct{}, 1),
		loopDone: make(chan struct{}),
		feedDone: make(chan struct{}),
		held:     make(map[uint64]*Item),
	}
	d.life, d.lifeCancel = context.WithCancel(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), min(conf.Timeout, startupDialLimit))
	defer cancel()
	if c, err := dial(ctx, conf); err != nil {
		log.Warn("beanstalkd is not reachable yet; pushes fail and nothing is consumed until it is",
			zap.String("driver", pluginName), zap.String("pipeline", pipeline), zap.Error(err))
	} else {
		d.prod = c
	}
	return d, nil
}

// errStopped is the cause recorded for jobs whose reservation ended because the pipeline stopped.
var errStopped = errors.New("the pipeline was stopped")

func (d *Driver) stoppedErr() error {
	return fmt.Errorf("beanstalk pipeline %q is stopped", d.pipeline)
}

// Push puts the job on the tube: the gob body of the stock driver, priority tube_priority, the
// job's delay (native), TTR = timeout. It fails (within ctx) when beanstalkd is unreachable.
func (d *Driver) Push(ctx context.Context, msg jobs.Message) error {
	const op = rrerrors.Op("beanstalk_push")
	if msg == nil {
		return rrerrors.E(op, fmt.Errorf("beanstalk pipeline %q: nil message", d.pipeline))
	}
	if d.isStopped() {
		return rrerrors.E(op, fmt.Errorf("beanstalk pipeline %q is stopped, job %q was not pushed", d.pipeline, msg.ID()))
	}
	delay := min(max(msg.Delay(), 0), maxDelaySeconds)
	w := &wireItem{
		Job:     msg.Name(),
		Ident:   msg.ID(),
		Payload: msg.Payload(),
		Hdrs:    msg.Headers(),
		Options: &wireOptions{
			Priority: msg.Priority(),
			Pipeline: d.pipeline,
			Delay:    int(delay),
			AutoAck:  msg.AutoAck(),
			Queue:    d.conf.Tube,
		},
		TTR: int64(d.ttr / time.Second),
	}
	bid, err := d.putItem(ctx, w, time.Duration(delay)*time.Second)
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("beanstalk pipeline %q: push job %q: %w", d.pipeline, msg.ID(), err))
	}
	if delay == 0 {
		d.signal()
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was pushed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", msg.ID()), zap.Uint64("beanstalk_id", bid), zap.Int64("delay_seconds", delay))
	}
	return nil
}

// putItem encodes w and puts it on the tube.
func (d *Driver) putItem(ctx context.Context, w *wireItem, delay time.Duration) (uint64, error) {
	body, err := encodeJob(w)
	if err != nil {
		return 0, fmt.Errorf("encode the job: %w", err)
	}
	var bid uint64
	err = d.withProducer(ctx, func(c *conn) error {
		var err error
		bid, err = c.put(body, d.conf.TubePriority, delay, d.ttr)
		return err
	})
	switch {
	case err == nil:
		return bid, nil
	case errors.Is(err, beanstalk.ErrJobTooBig):
		return 0, fmt.Errorf("the job is %d bytes encoded, more than beanstalkd's max-job-size (its -z option, 65535 by default): %w", len(body), err)
	case errors.Is(err, beanstalk.ErrBuried):
		return 0, fmt.Errorf("beanstalkd is out of memory and buried job %d instead of queueing it (kick it once memory is available): %w", bid, err)
	case errors.Is(err, beanstalk.ErrDraining):
		return 0, fmt.Errorf("beanstalkd is draining and accepts no new jobs: %w", err)
	}
	return 0, err
}

// withProducer runs fn on the producer connection, dialling it when needed, within ctx. A
// connection that breaks is dropped; when it was an old one (beanstalkd may have closed it since),
// fn is tried once more on a new connection.
func (d *Driver) withProducer(ctx context.Context, fn func(*conn) error) error {
	select {
	case d.prodSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for the connection to beanstalkd at %s: %w", d.conf.Addr, ctx.Err())
	}
	defer func() { <-d.prodSem }()
	for attempt := 0; ; attempt++ {
		fresh := false
		if d.prod == nil {
			if d.isStopped() {
				return d.stoppedErr()
			}
			c, err := dial(ctx, d.conf)
			if err != nil {
				return err
			}
			d.prod, fresh = c, true
		}
		c := d.prod
		err := c.do(ctx, d.conf.Timeout, func() error { return fn(c) })
		if !broken(err) {
			return err
		}
		c.close()
		d.prod = nil
		if fresh || attempt > 0 || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("beanstalkd at %s: %w", d.conf.Addr, err)
		}
	}
}

// Run starts consuming the pipeline.
func (d *Driver) Run(_ context.Context, _ jobs.Pipeline) error {
	const op = rrerrors.Op("beanstalk_run")
	if err := d.start(); err != nil {
		return rrerrors.E(op, err)
	}
	d.log.Info("pipeline was started", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline),
		zap.String("addr", d.conf.Addr), zap.String("tube", d.conf.Tube))
	return nil
}

// Resume starts consuming again after Pause.
func (d *Driver) Resume(_ context.Context, _ string) error {
	const op = rrerrors.Op("beanstalk_resume")
	if err := d.start(); err != nil {
		return rrerrors.E(op, err)
	}
	d.log.Info("pipeline was resumed", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

func (d *Driver) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return d.stoppedErr()
	}
	if d.running {
		return fmt.Errorf("beanstalk pipeline %q is already running", d.pipeline)
	}
	d.running = true
	if !d.started {
		d.started = true
		go d.consume()
		go d.feedLoop()
	}
	d.signal()
	return nil
}

// Pause stops reserving jobs; the jobs already reserved still run (and are kept reserved) and
// pushes are stored. It does not wait: an idle reserve in progress is interrupted.
func (d *Driver) Pause(_ context.Context, _ string) error {
	const op = rrerrors.Op("beanstalk_pause")
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return rrerrors.E(op, d.stoppedErr())
	}
	if !d.running {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("beanstalk pipeline %q: no active listeners, nothing to pause", d.pipeline))
	}
	d.running = false
	d.abortBlockingLocked()
	d.mu.Unlock()
	d.signal()
	d.log.Info("pipeline was paused", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

// abortBlockingLocked interrupts an idle reserve by closing its connection. The consumer holds
// no job then, so nothing is lost; a job reserved at that very moment is released by beanstalkd.
func (d *Driver) abortBlockingLocked() {
	if d.blocking != nil {
		d.aborted = true
		d.blocking.close()
		d.blocking = nil
	}
}

// Stop stops consuming for good. The pipeline's jobs still in the plugin's queue are taken out;
// the consumer goroutine runs the commands already handed to it (acks of finished jobs) and closes
// its connection, so beanstalkd releases every job still reserved (in the queue, or at a worker:
// those run again). Bounded by ctx. Idempotent.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped, d.running = true, false
	d.abortBlockingLocked()
	started := d.started
	d.mu.Unlock()
	d.lifeCancel()
	d.signal()

	removed := len(d.dropFromQueue())
	if started {
		select {
		case <-d.loopDone:
		case <-ctx.Done():
			d.log.Warn("pipeline consumer is still finishing a command", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
		}
		select {
		case <-d.feedDone:
		case <-ctx.Done():
			d.log.Warn("pipeline feeder is still blocked inserting a job into the full queue", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
		}
		removed += len(d.dropFromQueue())
	}

	select {
	case d.prodSem <- struct{}{}:
		if d.prod != nil {
			d.prod.close()
			d.prod = nil
		}
		<-d.prodSem
	case <-ctx.Done():
	}
	d.log.Info("pipeline was stopped", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline),
		zap.Int("released_from_queue", removed))
	return nil
}

// dropFromQueue takes this driver's jobs out of the plugin's queue. They are reserved on the
// consumer connection; whoever calls this makes sure that connection is closed (so beanstalkd
// releases them) or already was.
func (d *Driver) dropFromQueue() []*Item {
	return driverkit.RemoveFromQueue(d.queue, d.pipeline, func(it *Item) bool { return it.d == d })
}

// State reports the tube's counts from stats-tube (per tube, not server-wide as the stock v5
// driver did): Active = ready, Delayed = delayed, Reserved = reserved (by any consumer). Ready is
// false while paused, and while the consumer cannot reach beanstalkd; ErrorMessage then says why.
func (d *Driver) State(ctx context.Context) (*jobs.State, error) {
	d.mu.Lock()
	st := &jobs.State{
		Pipeline: d.pipeline,
		Driver:   pluginName,
		Queue:    d.conf.Tube,
		Priority: uint64(d.conf.Priority), //nolint:gosec // >= 1
		Ready:    d.running && d.consErr == nil,
	}
	running, consErr := d.running, d.consErr
	d.mu.Unlock()

	var ready, delayed, reserved int64
	err := d.withProducer(ctx, func(c *conn) error {
		var err error
		ready, delayed, reserved, err = c.tubeCounts()
		return err
	})
	switch {
	case err != nil:
		st.Ready = false
		st.ErrorMessage = fmt.Sprintf("beanstalk pipeline %q: read the stats of tube %q: %v", d.pipeline, d.conf.Tube, err)
	case running && consErr != nil:
		st.ErrorMessage = fmt.Sprintf("beanstalk pipeline %q: the consumer lost beanstalkd at %s and is reconnecting: %v", d.pipeline, d.conf.Addr, consErr)
	}
	if err == nil {
		st.Active, st.Delayed, st.Reserved = ready, delayed, reserved
	}
	return st, nil
}

func (d *Driver) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

// signal wakes the consumer goroutine (a command, a push, a state change).
func (d *Driver) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// feedLoop inserts reserved jobs into the plugin's queue, whose Insert blocks while it is full;
// the consumer goroutine never waits for it. Ends at Stop.
func (d *Driver) feedLoop() {
	defer close(d.feedDone)
	for {
		d.mu.Lock()
		if d.stopped {
			d.mu.Unlock()
			return
		}
		var it *Item
		for it == nil && len(d.feed) > 0 {
			it = d.feed[0]
			d.feed[0] = nil
			d.feed = d.feed[1:]
			if it.lost != nil || it.state != stQueued {
				it = nil
			}
		}
		if len(d.feed) == 0 {
			d.feed = nil
		}
		d.mu.Unlock()
		if it == nil {
			select {
			case <-d.feedWake:
			case <-d.life.Done():
			}
			continue
		}
		d.queue.Insert(it)
		if d.isStopped() {
			d.dropFromQueue()
			return
		}
	}
}

func (d *Driver) signalFeeder() {
	select {
	case d.feedWake <- struct{}{}:
	default:
	}
}
