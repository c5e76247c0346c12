package kafka

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	rrerrors "github.com/roadrunner-server/errors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const (
	// maxDelaySeconds caps a job delay (about 68 years).
	maxDelaySeconds = 1 << 31
	// pushTimeout bounds a Push whose context has no deadline.
	pushTimeout = time.Minute
	// opTimeout bounds the re-produce of a requeue, commits and admin calls.
	opTimeout = 30 * time.Second
	// requeueFallbackDelay is how long a job whose requeue could not be produced waits before it
	// runs again from this process.
	requeueFallbackDelay = time.Second
	// commitInterval is how often finished offsets are committed (and at Stop and on revoke).
	commitInterval = 500 * time.Millisecond
	// revokeWait bounds how long a revoke waits for the revoked partitions' jobs at workers to
	// finish before it commits (the group's rebalance timeout is 60 s).
	revokeWait = 30 * time.Second
	// maxRetryWait caps the pause between polls that return only errors.
	maxRetryWait = time.Second
)

// Driver is the kafka jobs.Driver of one pipeline.
//
// Push produces a record (key = job id, value = payload, headers = job headers + rr_*). While the
// pipeline consumes, a poll loop fetches records (at most prefetch unfinished ones) and inserts them
// into the shared queue; a record whose rr_delay_until lies ahead is held by the driver until then.
// Each partition's records are tracked, and with a consumer group the driver commits, every
// commitInterval, the offset below which every record is finished, so an unfinished job is never
// skipped: after a restart or a rebalance, consumption resumes at the first unfinished record.
// Requeue and NackWithOptions(true) re-produce the job (headers merged, delay as rr_delay_until)
// and only then count the original as finished. The shared queue's Insert is never called with mu
// held.
type Driver struct {
	log      *zap.Logger
	queue    jobs.Queue
	pipeline string
	conf     Config
	base     []kgo.Opt // options shared by every client of the pipeline
	prod     *kgo.Client
	adm      *kadm.Client

	life       context.Context
	lifeCancel context.CancelFunc
	bgWG       sync.WaitGroup

	// batchMu is held while a batch of records is registered and inserted into the shared queue
	// (by the poll loop and the delay loop) and by the group callbacks, so a revoke never races a
	// batch in flight.
	batchMu sync.Mutex
	// commitMu serializes commits.
	commitMu sync.Mutex

	wake      chan struct{} // a prefetch slot was freed
	delayWake chan struct{} // the delayed heap or the running state changed

	mu        sync.Mutex
	cons      *kgo.Client // created at the first Run/Resume
	running   bool
	stopped   bool
	runCancel context.CancelFunc
	runDone   chan struct{}
	paused    []string // topics paused with PauseFetchTopics
	trackers  map[tpKey]*tracker
	assigned  map[tpKey]bool // group: the partitions assigned to this member
	seen      map[string]bool
	delayed   delayQueue
	seq       uint64
	nQueued   int
	nReserved int
	fetchErr  error
	commitErr error
}

var _ jobs.Driver = (*Driver)(nil)

// NewDriver connects the producer, pings the brokers, creates the missing consumer topics when
// create_topics is set, and returns a driver that does not consume until Run.
func NewDriver(log *zap.Logger, pipeline string, conf Config, queue jobs.Queue) (*Driver, error) {
	const op = rrerrors.Op("kafka_new_driver")
	if queue == nil {
		return nil, rrerrors.E(op, fmt.Errorf("kafka pipeline %q: nil queue", pipeline))
	}
	if pipeline == "" {
		return nil, rrerrors.E(op, errors.New("kafka pipeline: empty pipeline name"))
	}
	if len(conf.Brokers) == 0 {
		return nil, rrerrors.E(op, fmt.Errorf("kafka pipeline %q: no brokers: set %s.%s", pipeline, globalSection, keyBrokers))
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
	if conf.PingTimeout <= 0 {
		conf.PingTimeout = DefaultPingTimeout
	}
	base, err := baseOpts(&conf, log)
	if err != nil {
		return nil, rrerrors.E(op, fmt.Errorf("kafka pipeline %q: %w", pipeline, err))
	}
	prod, err := kgo.NewClient(append(append([]kgo.Opt{}, base...), producerOpts(conf.Producer)...)...)
	if err != nil {
		return nil, rrerrors.E(op, fmt.Errorf("kafka pipeline %q: create the producer: %w", pipeline, err))
	}
	d := &Driver{
		log:       log,
		queue:     queue,
		pipeline:  pipeline,
		conf:      conf,
		base:      base,
		prod:      prod,
		adm:       kadm.NewClient(prod),
		wake:      make(chan struct{}, 1),
		delayWake: make(chan struct{}, 1),
		trackers:  make(map[tpKey]*tracker),
		assigned:  make(map[tpKey]bool),
		seen:      make(map[string]bool),
	}
	d.life, d.lifeCancel = context.WithCancel(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), conf.PingTimeout)
	defer cancel()
	if err := prod.Ping(ctx); err != nil {
		d.lifeCancel()
		prod.Close()
		return nil, rrerrors.E(op, fmt.Errorf("kafka pipeline %q: brokers %s did not answer within %s: %w",
			pipeline, strings.Join(conf.Brokers, ","), conf.PingTimeout, err))
	}
	if conf.CreateTopics != nil {
		if err := d.createTopics(); err != nil {
			d.lifeCancel()
			prod.Close()
			return nil, rrerrors.E(op, err)
		}
	}

	d.bgWG.Add(1)
	go d.delayLoop()
	if conf.Group != nil {
		d.bgWG.Add(1)
		go d.commitLoop()
	}
	return d, nil
}

// createTopics creates the consumed topics that do not exist yet, with create_topics' partitions,
// replication factor and configs. Existing topics are left as they are.
func (d *Driver) createTopics() error {
	topics := d.conf.topicNames()
	if len(topics) == 0 {
		return nil
	}
	ct := d.conf.CreateTopics
	var configs map[string]*string
	if len(ct.Configs) > 0 {
		configs = make(map[string]*string, len(ct.Configs))
		for k, v := range ct.Configs {
			configs[k] = kadm.StringPtr(v)
		}
	}
	ctx, cancel := context.WithTimeout(d.life, opTimeout)
	defer cancel()
	resp, err := d.adm.CreateTopics(ctx, ct.Partitions, ct.ReplicationFactor, configs, topics...)
	if err != nil {
		return fmt.Errorf("kafka pipeline %q: create topics %s: %w", d.pipeline, strings.Join(topics, ","), err)
	}
	for _, r := range resp.Sorted() {
		switch {
		case r.Err == nil:
			d.log.Info("topic was created", zap.String("pipeline", d.pipeline), zap.String("topic", r.Topic),
				zap.Int32("partitions", r.NumPartitions), zap.Int16("replication_factor", r.ReplicationFactor))
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
		default:
			msg := r.Err.Error()
			if r.ErrMessage != "" {
				msg += ": " + r.ErrMessage
			}
			return fmt.Errorf("kafka pipeline %q: create topic %q (%s): %s", d.pipeline, r.Topic, keyCreateTopics, msg)
		}
	}
	return nil
}

// Push produces the job to its topic (the job's Kafka topic, else the pipeline's first topic) and
// returns once Kafka stored it. A delay becomes the rr_delay_until header: consumers hold the record
// until then.
func (d *Driver) Push(ctx context.Context, msg jobs.Message) error {
	const op = rrerrors.Op("kafka_push")
	if msg == nil {
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q: nil message", d.pipeline))
	}
	if d.isStopped() {
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q is stopped, job %q was not pushed", d.pipeline, msg.ID()))
	}
	topic := msg.Topic()
	if topic == "" {
		topic = d.conf.defaultTopic()
	}
	if topic == "" {
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q: job %q names no topic and the pipeline consumes none by name (set %s.topics, or push with a Kafka topic)",
			d.pipeline, msg.ID(), keyConsumerOptions))
	}
	prio := msg.Priority()
	if prio <= 0 {
		prio = d.conf.Priority
	}
	rj := &recordJob{
		ID: msg.ID(), Job: msg.Name(), Pipeline: d.pipeline, Priority: prio, AutoAck: msg.AutoAck(),
		Headers: msg.Headers(), Payload: msg.Payload(),
	}
	delay := min(max(msg.Delay(), 0), maxDelaySeconds)
	if delay > 0 {
		rj.DelayUntil = time.Now().Add(time.Duration(delay) * time.Second)
	}
	rec := encodeRecord(topic, rj)
	if d.conf.Producer.PartitioningStrategy == PartitionManual {
		rec.Partition = msg.Partition()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pushTimeout)
		defer cancel()
	}
	if err := d.produce(ctx, rec); err != nil {
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q: push job %q to topic %q: %w", d.pipeline, msg.ID(), topic, err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was pushed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", msg.ID()), zap.String("topic", rec.Topic),
			zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset), zap.Int64("delay_seconds", delay))
	}
	return nil
}

// produce stores rec and waits for Kafka's answer, or for ctx.
func (d *Driver) produce(ctx context.Context, rec *kgo.Record) error {
	done := make(chan error, 1)
	d.prod.Produce(ctx, rec, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("Kafka did not confirm the record in time (%w); it may still be stored", ctx.Err()) //nolint:staticcheck // Kafka is a name
	}
}

// Run starts consuming the pipeline.
func (d *Driver) Run(_ context.Context, _ jobs.Pipeline) error {
	const op = rrerrors.Op("kafka_run")
	if err := d.start(); err != nil {
		return rrerrors.E(op, err)
	}
	d.log.Info("pipeline was started", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline),
		zap.String("topics", d.conf.queueName()), zap.Bool("group", d.conf.Group != nil))
	return nil
}

// Resume starts consuming again after Pause: the topics are resumed with ResumeFetchTopics and the
// records the client buffered meanwhile are delivered.
func (d *Driver) Resume(_ context.Context, _ string) error {
	const op = rrerrors.Op("kafka_resume")
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
		return fmt.Errorf("kafka pipeline %q is stopped", d.pipeline)
	}
	if d.running {
		return fmt.Errorf("kafka pipeline %q is already running", d.pipeline)
	}
	if !d.conf.consumes() {
		// A producer-only pipeline: nothing to fetch.
		d.running = true
		return nil
	}
	if d.cons == nil {
		cons, err := kgo.NewClient(d.consumerOpts()...)
		if err != nil {
			return fmt.Errorf("kafka pipeline %q: create the consumer: %w", d.pipeline, err)
		}
		d.cons = cons
	}
	if len(d.paused) > 0 {
		d.cons.ResumeFetchTopics(d.paused...)
		d.paused = nil
	}
	ctx, cancel := context.WithCancel(d.life)
	done := make(chan struct{})
	d.running = true
	d.runCancel = cancel
	d.runDone = done
	go d.pollLoop(ctx, d.cons, done)
	signal(d.delayWake)
	return nil
}

// consumerOpts are the options of the consumer client.
func (d *Driver) consumerOpts() []kgo.Opt {
	opts := append(append([]kgo.Opt{}, d.base...), consumerOpts(d.conf.Consumer)...)
	if g := d.conf.Group; g != nil {
		opts = append(opts,
			kgo.ConsumerGroup(g.GroupID),
			// Offsets are committed by the driver, only below finished records.
			kgo.DisableAutoCommit(),
			kgo.OnPartitionsAssigned(d.onAssigned),
			kgo.OnPartitionsRevoked(d.onRevoked),
			kgo.OnPartitionsLost(d.onLost),
		)
		if g.InstanceID != "" {
			opts = append(opts, kgo.InstanceID(g.InstanceID))
		}
		if g.BlockRebalanceOnPoll {
			opts = append(opts, kgo.BlockRebalanceOnPoll())
		}
	}
	return opts
}

// Pause stops fetching (PauseFetchTopics) and stops the poll loop: what the client buffered stays
// buffered, and jobs already in the shared queue still run. Delayed jobs that come due wait for
// Resume. It waits for the poll loop to exit, or for ctx.
func (d *Driver) Pause(ctx context.Context, _ string) error {
	const op = rrerrors.Op("kafka_pause")
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q is stopped", d.pipeline))
	}
	if !d.running {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q: no active listeners, nothing to pause", d.pipeline))
	}
	d.running = false
	cancel, done, cons := d.runCancel, d.runDone, d.cons
	d.runCancel, d.runDone = nil, nil
	if cons != nil {
		d.paused = d.fetchTopicsLocked()
		cons.PauseFetchTopics(d.paused...)
	}
	d.mu.Unlock()

	if cancel != nil {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			d.log.Warn("pipeline was paused, but its poll loop is still blocked inserting a job into the full queue",
				zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
		}
	}
	d.log.Info("pipeline was paused", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

// fetchTopicsLocked are the topics to pause: the configured ones and every topic records came from
// (regular expression consumers).
func (d *Driver) fetchTopicsLocked() []string {
	set := map[string]bool{}
	for _, t := range d.conf.topicNames() {
		set[t] = true
	}
	for t := range d.seen {
		set[t] = true
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Stop stops consuming for good: the pipeline's jobs are taken out of the shared queue (not
// finished, so they are fetched again later, by this or another consumer), delayed jobs are
// dropped the same way, the finished offsets are committed, the group is left and the clients are
// closed. Idempotent; bounded by ctx.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	d.running = false
	cancel, done, cons := d.runCancel, d.runDone, d.cons
	d.mu.Unlock()

	// Free room for a poll loop blocked in Insert, then wait for it to exit.
	released := d.dropFromQueue()
	if cancel != nil {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			d.log.Warn("pipeline poll loop is still blocked inserting a job into the full queue",
				zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
		}
	}
	released += d.dropFromQueue()
	released += d.dropDelayed(nil)

	d.lifeCancel()
	waitCtx(ctx, d.bgWG.Wait)

	if cons != nil {
		if d.conf.Group != nil {
			cctx, ccancel := context.WithTimeout(ctx, opTimeout)
			if err := d.commit(cctx, nil); err != nil {
				d.log.Warn("offsets could not be committed at stop: the jobs finished since the last commit run again",
					zap.String("pipeline", d.pipeline), zap.Error(err))
			}
			ccancel()
		}
		if !waitCtx(ctx, cons.CloseAllowingRebalance) {
			d.log.Warn("the consumer is still closing (leaving the group)", zap.String("pipeline", d.pipeline))
		}
	}
	if !waitCtx(ctx, d.prod.Close) {
		d.log.Warn("the producer is still closing", zap.String("pipeline", d.pipeline))
	}

	d.mu.Lock()
	atWorkers := d.nReserved
	d.mu.Unlock()
	d.log.Info("pipeline was stopped", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline),
		zap.Int("released", released), zap.Int("at_workers", atWorkers))
	return nil
}

// waitCtx runs fn and waits for it, or for ctx (then fn keeps running); it reports whether fn
// returned.
func waitCtx(ctx context.Context, fn func()) bool {
	done := make(chan struct{})
	go func() {
		fn()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// State reports the pipeline: Active = records not fetched yet (the lag from the log end, computed
// with the admin API) plus fetched jobs waiting in the shared queue; Reserved = jobs at workers;
// Delayed = delayed jobs this process holds until they are due (a delayed record not fetched yet
// counts as Active). Errors (an unreachable cluster, a failing fetch) go to ErrorMessage.
func (d *Driver) State(ctx context.Context) (*jobs.State, error) {
	d.mu.Lock()
	st := &jobs.State{
		Pipeline: d.pipeline,
		Driver:   pluginName,
		Queue:    d.conf.queueName(),
		Priority: uint64(d.conf.Priority), //nolint:gosec // >= 1
		Ready:    d.running,
		Active:   int64(d.nQueued),
		Reserved: int64(d.nReserved),
		Delayed:  int64(len(d.delayed)),
	}
	snap := lagSnapshot{
		next:    make(map[tpKey]int64, len(d.trackers)),
		joined:  d.cons != nil && d.conf.Group != nil,
		topics:  d.fetchTopicsLocked(),
		running: d.running,
	}
	for k, t := range d.trackers {
		if !t.dead && t.next >= 0 {
			snap.next[k] = t.next
		}
	}
	if snap.joined {
		snap.assigned = make(map[tpKey]bool, len(d.assigned))
		for k := range d.assigned {
			snap.assigned[k] = true
		}
	}
	fetchErr, commitErr, running := d.fetchErr, d.commitErr, d.running
	d.mu.Unlock()

	lag, err := d.lag(ctx, &snap)
	st.Active += lag
	switch {
	case err != nil:
		st.ErrorMessage = fmt.Sprintf("kafka pipeline %q: read the topic offsets: %v", d.pipeline, err)
	case running && fetchErr != nil:
		st.ErrorMessage = fmt.Sprintf("kafka pipeline %q: fetch failed: %v", d.pipeline, fetchErr)
	case commitErr != nil:
		st.ErrorMessage = fmt.Sprintf("kafka pipeline %q: offset commit failed: %v", d.pipeline, commitErr)
	}
	return st, nil
}

// lagSnapshot is what lag needs from the driver's state.
type lagSnapshot struct {
	next     map[tpKey]int64
	assigned map[tpKey]bool
	joined   bool
	running  bool
	topics   []string
}

// lag counts the records of the consumed partitions this process has not fetched: log end minus
// the fetch position, or minus the group's committed offset (else the log start, or nothing with
// consumer_offset AtEnd) for partitions not fetched from yet. A group member counts its assigned
// partitions only.
func (d *Driver) lag(ctx context.Context, s *lagSnapshot) (int64, error) {
	if len(s.topics) == 0 || d.isStopped() {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	ends, err := d.adm.ListEndOffsets(ctx, s.topics...)
	if err != nil && len(ends) == 0 {
		return 0, err
	}
	var (
		committed kadm.OffsetResponses
		starts    kadm.ListedOffsets
		loadErr   error
		total     int64
	)
	ends.Each(func(lo kadm.ListedOffset) {
		if lo.Err != nil || lo.Partition < 0 || lo.Offset < 0 {
			return
		}
		key := tpKey{lo.Topic, lo.Partition}
		if parts := d.conf.Consumer.ConsumePartitions; parts != nil {
			if _, ok := parts[lo.Topic][lo.Partition]; !ok {
				return
			}
		}
		if s.joined && !s.assigned[key] {
			return
		}
		if next, ok := s.next[key]; ok {
			total += max(lo.Offset-next, 0)
			return
		}
		base := int64(-1)
		if g := d.conf.Group; g != nil {
			if committed == nil && loadErr == nil {
				committed, loadErr = d.adm.FetchOffsets(ctx, g.GroupID)
				if errors.Is(loadErr, kerr.GroupIDNotFound) {
					loadErr = nil // nothing committed yet
				}
				if committed == nil {
					committed = kadm.OffsetResponses{}
				}
			}
			if r, ok := committed.Lookup(lo.Topic, lo.Partition); ok && r.Err == nil && r.At >= 0 {
				base = r.At
			}
		}
		if base < 0 {
			if off := d.conf.Consumer.ConsumerOffset; off != nil && off.Type == OffsetAtEnd {
				return
			}
			if starts == nil && loadErr == nil {
				starts, loadErr = d.adm.ListStartOffsets(ctx, s.topics...)
				if starts == nil {
					starts = kadm.ListedOffsets{}
				}
			}
			if so, ok := starts.Lookup(lo.Topic, lo.Partition); ok && so.Err == nil && so.Offset >= 0 {
				base = so.Offset
			} else {
				base = 0
			}
		}
		total += max(lo.Offset-base, 0)
	})
	return total, loadErr
}

// dropFromQueue takes this pipeline's jobs out of the shared queue without finishing them (Kafka
// delivers them again).
func (d *Driver) dropFromQueue() int {
	removed := d.queue.Remove(d.pipeline)
	n := 0
	d.mu.Lock()
	for _, j := range removed {
		it, ok := j.(*Item)
		if !ok || it.drv != d || it.state != stQueued {
			continue
		}
		d.setState(it, stDone)
		n++
	}
	d.mu.Unlock()
	if n > 0 {
		signal(d.wake)
	}
	return n
}

// dropDelayed drops the held delayed jobs of the given partitions (all when keys is nil) without
// finishing them.
func (d *Driver) dropDelayed(keys map[tpKey]bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	kept := d.delayed[:0]
	n := 0
	for _, it := range d.delayed {
		if keys == nil || keys[it.key()] {
			it.heapIdx = -1
			d.dropDelayedLocked(it)
			n++
			continue
		}
		kept = append(kept, it)
	}
	for i := len(kept); i < len(d.delayed); i++ {
		d.delayed[i] = nil
	}
	d.delayed = kept
	for i, it := range d.delayed {
		it.heapIdx = i
	}
	heap.Init(&d.delayed)
	return n
}

// dropDelayedLocked marks a delayed item, already out of the heap, as given up.
func (d *Driver) dropDelayedLocked(it *Item) {
	it.state = stDone
}

// setState moves it to state s, keeping the counters. Call with mu held. Delayed items are counted
// by the heap, so callers push or pop them themselves.
func (d *Driver) setState(it *Item, s itemState) {
	switch it.state {
	case stQueued:
		d.nQueued--
		it.tr.queued--
	case stReserved:
		d.nReserved--
		it.tr.reserved--
	}
	it.state = s
	switch s {
	case stQueued:
		d.nQueued++
		it.tr.queued++
	case stReserved:
		d.nReserved++
		it.tr.reserved++
	}
}

// taken records that a worker took it (Context). An auto_ack job is finished at this point.
func (d *Driver) taken(it *Item) {
	d.mu.Lock()
	if it.state != stQueued {
		d.mu.Unlock()
		return
	}
	if it.autoAck {
		d.settleLocked(it)
		d.mu.Unlock()
		signal(d.wake)
		if ce := d.log.Check(zapcore.DebugLevel, "auto_ack job was acknowledged at hand-off"); ce != nil {
			ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id))
		}
		return
	}
	d.setState(it, stReserved)
	d.mu.Unlock()
}

// settleLocked finishes it: its offset no longer holds back its partition's commit.
func (d *Driver) settleLocked(it *Item) {
	d.setState(it, stDone)
	if !it.tr.dead {
		it.tr.settle(it.ent)
	}
}

// finish implements Ack and the final Nack.
func (d *Driver) finish(it *Item, what string) error {
	op := rrerrors.Op("kafka_" + what)
	d.mu.Lock()
	if it.state == stDone {
		// auto_ack, or already finished.
		d.mu.Unlock()
		return nil
	}
	if it.requeueing {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q: job %q is being requeued", d.pipeline, it.id))
	}
	stopped, dead := d.stopped, it.tr.dead
	d.settleLocked(it)
	d.mu.Unlock()
	signal(d.wake)
	if stopped && d.conf.Group != nil {
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q is stopped: the %s of job %q could not be committed, Kafka delivers the job again",
			d.pipeline, what, it.id))
	}
	if dead {
		d.log.Debug("job finished after its partition was revoked: the new owner may run it again",
			zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.String("topic", it.topic), zap.Int32("partition", it.partition))
	}
	if what == "nack" {
		d.log.Info("job was nacked without requeue, it is finished", zap.String("pipeline", d.pipeline), zap.String("id", it.id),
			zap.String("topic", it.topic), zap.Int32("partition", it.partition), zap.Int64("offset", it.offset))
	} else if ce := d.log.Check(zapcore.DebugLevel, "job was acknowledged"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.String("topic", it.topic),
			zap.Int32("partition", it.partition), zap.Int64("offset", it.offset))
	}
	return nil
}

// requeue implements Requeue and NackWithOptions(true, delay): the job is produced again (headers
// merged, due after delay seconds) and only then is the original finished. If the produce fails,
// the original stays unfinished in Kafka and runs again from this process after the delay (at
// least requeueFallbackDelay).
func (d *Driver) requeue(it *Item, headers map[string][]string, delay int) error {
	const op = rrerrors.Op("kafka_requeue")
	d.mu.Lock()
	if it.state == stDone && it.autoAck {
		d.mu.Unlock()
		return nil
	}
	if it.state == stDone || it.requeueing {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q: job %q was already acknowledged or requeued", d.pipeline, it.id))
	}
	if d.stopped {
		d.mu.Unlock()
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q is stopped: job %q was not requeued, Kafka delivers it again", d.pipeline, it.id))
	}
	it.requeueing = true
	d.mu.Unlock()

	secs := min(max(delay, 0), maxDelaySeconds)
	var due time.Time
	if secs > 0 {
		due = time.Now().Add(time.Duration(secs) * time.Second)
	}
	rec := encodeRecord(it.topic, it.recordJob(headers, due))
	if d.conf.Producer.PartitioningStrategy == PartitionManual {
		rec.Partition = it.partition
	}
	ctx, cancel := context.WithTimeout(d.life, opTimeout)
	err := d.produce(ctx, rec)
	cancel()

	d.mu.Lock()
	it.requeueing = false
	if err == nil {
		d.settleLocked(it)
		d.mu.Unlock()
		signal(d.wake)
		if ce := d.log.Check(zapcore.DebugLevel, "job was requeued"); ce != nil {
			ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.String("topic", rec.Topic),
				zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset), zap.Int("delay_seconds", secs))
		}
		return nil
	}
	if d.stopped || it.tr.dead {
		// The record is still unfinished in Kafka: whoever consumes the partition next runs it.
		d.setState(it, stDone)
		d.mu.Unlock()
		signal(d.wake)
		return rrerrors.E(op, fmt.Errorf("kafka pipeline %q: requeue job %q: %w; Kafka delivers the job again", d.pipeline, it.id, err))
	}
	// Run it again from here; it keeps its place in the partition, so nothing is committed past it.
	cp := d.cloneLocked(it, driverkit.MergeHeaders(it.headers, headers), time.Now().Add(max(time.Duration(secs)*time.Second, requeueFallbackDelay)))
	d.setState(it, stDone)
	d.mu.Unlock()
	signal(d.wake)
	signal(d.delayWake)
	d.log.Warn("the requeued job could not be produced to Kafka; it runs again from this process after its delay",
		zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.String("topic", it.topic),
		zap.Int32("partition", it.partition), zap.Int64("offset", it.offset), zap.Time("due", cp.due), zap.Error(err))
	return nil
}

// cloneLocked makes a delayed copy of it (same record, same tracker entry) due at due, with headers.
func (d *Driver) cloneLocked(it *Item, headers map[string][]string, due time.Time) *Item {
	d.seq++
	cp := &Item{
		drv: d, tr: it.tr, ent: it.ent, seq: d.seq,
		topic: it.topic, partition: it.partition, offset: it.offset,
		id: it.id, job: it.job, priority: it.priority, payload: it.payload, headers: headers, autoAck: it.autoAck,
		due: due, state: stDelayed,
	}
	heap.Push(&d.delayed, cp)
	return cp
}

func (d *Driver) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

// signal wakes a loop waiting on ch.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
