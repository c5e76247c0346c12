package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// maxDelaySeconds caps a job delay (about 68 years) so due times cannot overflow.
const maxDelaySeconds = 1 << 31

// Driver is the memory jobs.Driver of one pipeline.
//
// Push appends to a FIFO backlog (or to the delay heap) and never blocks. A dispatcher goroutine,
// alive while the pipeline consumes, moves backlog items into the shared queue while fewer than
// prefetch jobs of this pipeline are in the queue or at a worker. One timer moves due delayed jobs
// to the backlog. All bookkeeping is guarded by mu; queue.Insert and queue.Remove are never called
// with mu held.
type Driver struct {
	log *zap.Logger
	// debug is whether log writes debug entries, decided once: Push runs on the RPC goroutine, whose
	// stack starts small, and zap's Check has a frame large enough to make that stack grow (a copy of
	// the whole stack on every push).
	debug bool
	queue jobs.Queue
	// tryQueue is queue's non-blocking insert when it has one (the jobs plugin's pq does). While the
	// pipeline runs with an empty backlog and a free prefetch slot, a pushed job goes straight into
	// the shared queue from Push: no hand-off to the dispatcher goroutine.
	tryQueue tryInserter
	pipeline string
	priority int64
	prefetch int
	epoch    time.Time // monotonic base of Item.due

	mu sync.Mutex
	// cond wakes the dispatcher: when it can move a job (the backlog is not empty and a prefetch
	// slot is free) or the run state changes. waiters counts dispatchers inside cond.Wait, so pushes
	// and acks do not signal (and wake a goroutine) when nobody waits for them.
	cond    *sync.Cond
	waiters int
	backlog fifo
	delayed delayHeap
	timer   *time.Timer
	armedAt int64 // due time the timer is armed for; 0 = not armed
	seq     uint32
	// lastName is the job name of the previous push. A push with the same name stores this string
	// instead of its own copy, so the jobs of a pipeline share one name (a queued job costs less).
	lastName string

	queued   int64 // items in stQueued (auto_ack ones included)
	reserved int64 // items in stReserved
	inflight int   // prefetch slots held: non-auto_ack items in stQueued or stReserved

	running bool
	stopped bool
	// handing is true while the dispatcher holds a job taken from the backlog that it has not put
	// into the shared queue yet; a direct insert then would overtake it.
	handing  bool
	gen      uint64        // bumped on every start/pause/stop; a dispatcher exits when it changes
	dispDone chan struct{} // closed when the newest dispatcher exits
	wg       sync.WaitGroup
}

var _ jobs.Driver = (*Driver)(nil)

// NewDriver returns a driver for pipeline feeding queue. It does not consume until Run.
func NewDriver(log *zap.Logger, pipeline string, conf Config, queue jobs.Queue) (*Driver, error) {
	const op = errors.Op("memory_new_driver")
	if queue == nil {
		return nil, errors.E(op, fmt.Errorf("memory pipeline %q: nil queue", pipeline))
	}
	if pipeline == "" {
		return nil, errors.E(op, errors.Str("memory pipeline: empty pipeline name"))
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
	d := &Driver{
		log:      log,
		debug:    log.Core().Enabled(zapcore.DebugLevel),
		queue:    queue,
		pipeline: pipeline,
		priority: conf.Priority,
		prefetch: conf.Prefetch,
		epoch:    time.Now(),
	}
	d.cond = sync.NewCond(&d.mu)
	d.tryQueue, _ = queue.(tryInserter)
	return d, nil
}

// tryInserter is implemented by shared queues with a non-blocking insert (the jobs plugin's pq).
type tryInserter interface {
	TryInsert(item jobs.Job) bool
}

// Push accepts a job. It never blocks on the shared queue.
func (d *Driver) Push(_ context.Context, msg jobs.Message) error {
	const op = errors.Op("memory_push")
	if msg == nil {
		return errors.E(op, fmt.Errorf("memory pipeline %q: nil message", d.pipeline))
	}
	prio := msg.Priority()
	if prio == 0 {
		prio = d.priority
	}
	it := &Item{
		drv:      d,
		id:       msg.ID(),
		priority: prio,
		payload:  msg.Payload(),
		headers:  msg.Headers(),
		autoAck:  msg.AutoAck(),
	}
	name := msg.Name()
	delay := msg.Delay()

	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return d.refuse(it.id)
	}
	if name != d.lastName {
		d.lastName = name
	}
	it.job = d.lastName
	d.enqueueLocked(it, delay)
	d.mu.Unlock()

	if d.debug {
		d.logPushed(it.id, delay)
	}
	return nil
}

// refuse and logPushed keep Push's frame small (it runs on the RPC goroutine's stack).
//
//go:noinline
func (d *Driver) refuse(id string) error {
	return errors.E(errors.Op("memory_push"), fmt.Errorf("memory pipeline %q is stopped, job %q was not pushed", d.pipeline, id))
}

//go:noinline
func (d *Driver) logPushed(id string, delay int64) {
	d.log.Debug("job was pushed", zap.String("pipeline", d.pipeline), zap.String("id", id), zap.Int64("delay_seconds", delay))
}

// Run starts consuming the pipeline.
func (d *Driver) Run(_ context.Context, _ jobs.Pipeline) error {
	const op = errors.Op("memory_run")
	d.mu.Lock()
	if err := d.startLocked(); err != nil {
		d.mu.Unlock()
		return errors.E(op, err)
	}
	d.mu.Unlock()
	d.log.Info("pipeline was started", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

// Resume starts consuming again after Pause.
func (d *Driver) Resume(_ context.Context, _ string) error {
	const op = errors.Op("memory_resume")
	d.mu.Lock()
	if err := d.startLocked(); err != nil {
		d.mu.Unlock()
		return errors.E(op, err)
	}
	d.mu.Unlock()
	d.log.Info("pipeline was resumed", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

// Pause stops moving jobs to the shared queue; jobs already there still run and pushes are kept.
// It returns promptly unless the dispatcher is inside a blocked queue.Insert, in which case it
// waits for that Insert to return or for ctx.
func (d *Driver) Pause(ctx context.Context, _ string) error {
	const op = errors.Op("memory_pause")
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return errors.E(op, fmt.Errorf("memory pipeline %q is stopped", d.pipeline))
	}
	if !d.running {
		d.mu.Unlock()
		return errors.E(op, fmt.Errorf("memory pipeline %q: no active listeners, nothing to pause", d.pipeline))
	}
	d.running = false
	d.gen++
	d.cond.Broadcast()
	done := d.dispDone
	d.mu.Unlock()

	select {
	case <-done:
	case <-ctx.Done():
		d.log.Warn("pipeline was paused, but its dispatcher is still blocked inserting a job into the full queue",
			zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	}
	d.log.Info("pipeline was paused", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

// Stop stops consuming for good: queued, delayed and backlog jobs of this pipeline are dropped and
// removed from the shared queue. Jobs at a worker may still be acked (no-op). Idempotent.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	d.running = false
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
	}
	d.armedAt = 0
	dropped := d.backlog.len() + d.delayed.len()
	d.backlog.drop()
	d.delayed.drop()
	d.cond.Broadcast()
	d.mu.Unlock()

	// Free room for a dispatcher blocked in Insert, then wait for every dispatcher to exit.
	removed := d.removeFromQueue()
	exited := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(exited)
	}()
	select {
	case <-exited:
		removed += d.removeFromQueue()
	case <-ctx.Done():
		// The dispatcher removes this pipeline's jobs again when its Insert returns.
		d.log.Warn("pipeline dispatcher is still blocked inserting a job into the full queue",
			zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	}

	d.log.Info("pipeline was stopped", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline),
		zap.Int("dropped", dropped), zap.Int("removed_from_queue", removed))
	return nil
}

// State reports the pipeline counters.
func (d *Driver) State(_ context.Context) (*jobs.State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &jobs.State{
		Pipeline: d.pipeline,
		Driver:   pluginName,
		Queue:    d.pipeline,
		Priority: uint64(d.priority), //nolint:gosec // validated >= 1
		Active:   max(int64(d.backlog.len())+d.queued, 0),
		Delayed:  int64(d.delayed.len()),
		Reserved: max(d.reserved, 0),
		Ready:    d.running,
	}, nil
}

// startLocked launches a dispatcher (Run / Resume).
func (d *Driver) startLocked() error {
	if d.stopped {
		return fmt.Errorf("memory pipeline %q is stopped", d.pipeline)
	}
	if d.running {
		return fmt.Errorf("memory pipeline %q is already running", d.pipeline)
	}
	d.running = true
	d.gen++
	done := make(chan struct{})
	d.dispDone = done
	d.wg.Add(1)
	go d.dispatch(d.gen, done)
	return nil
}

// dispatch moves backlog items into the shared queue while the prefetch limit allows, until the
// generation changes (Pause / Stop).
func (d *Driver) dispatch(gen uint64, done chan struct{}) {
	defer d.wg.Done()
	defer close(done)

	limitLogged := false
	for {
		d.mu.Lock()
		d.handing = false
		for d.gen == gen && !d.canDispatchLocked() {
			if !limitLogged && d.backlog.len() > 0 {
				limitLogged = true
				if ce := d.log.Check(zapcore.DebugLevel, "prefetch limit was reached, waiting for the jobs to be processed"); ce != nil {
					ce.Write(zap.String("pipeline", d.pipeline), zap.Int("prefetch", d.prefetch))
				}
			}
			d.waiters++
			d.cond.Wait()
			d.waiters--
		}
		if d.gen != gen {
			stopped := d.stopped
			d.mu.Unlock()
			if stopped {
				d.removeFromQueue()
			}
			return
		}
		limitLogged = false
		it := d.backlog.pop()
		d.markQueuedLocked(it)
		d.handing = true
		d.mu.Unlock()

		d.queue.Insert(it)
	}
}

// markQueuedLocked accounts for an item handed to the shared queue.
func (d *Driver) markQueuedLocked(it *Item) {
	it.state = stQueued
	d.queued++
	if it.autoAck {
		it.acked = true
	} else {
		d.inflight++
	}
}

// canDispatchLocked reports whether the dispatcher has a job to move and a prefetch slot for it.
func (d *Driver) canDispatchLocked() bool {
	return d.backlog.len() > 0 && d.inflight < d.prefetch
}

// wakeLocked wakes a waiting dispatcher if it can now move a job.
func (d *Driver) wakeLocked() {
	if d.waiters > 0 && d.canDispatchLocked() {
		d.cond.Broadcast()
	}
}

// ReadOnlyHeaders tells the jobs plugin that the driver never writes to a pushed message's headers
// map (an Item keeps it as it is, and a requeue merges into a new map), so the plugin may give the
// jobs of a batch one shared map of trace headers instead of a copy each.
func (d *Driver) ReadOnlyHeaders() bool { return true }

// removeFromQueue removes this pipeline's jobs from the shared queue and settles their counters.
func (d *Driver) removeFromQueue() int {
	removed := d.queue.Remove(d.pipeline)
	if len(removed) == 0 {
		return 0
	}
	n := 0
	d.mu.Lock()
	for _, j := range removed {
		it, ok := j.(*Item)
		if !ok || it.drv != d || it.state != stQueued {
			continue
		}
		d.releaseLocked(it)
		n++
	}
	d.mu.Unlock()
	return n
}

// enqueueLocked puts a new item into the backlog, or into the delay heap when delay > 0.
func (d *Driver) enqueueLocked(it *Item, delay int64) {
	if delay > 0 {
		delay = min(delay, maxDelaySeconds)
		d.seq++
		it.seq = d.seq
		it.due = int64(time.Since(d.epoch)) + delay*int64(time.Second)
		it.state = stDelayed
		d.delayed.push(it)
		d.armLocked()
		return
	}
	it.state = stBacklog
	// Straight into the shared queue when the dispatcher would move it there at once anyway: running,
	// nothing ahead of it in the backlog or in the dispatcher's hands, a prefetch slot free and room
	// in the queue. TryInsert never blocks, so holding mu here is fine (the queue never calls back
	// into the driver under its own lock).
	if d.running && d.tryQueue != nil && !d.handing && d.backlog.len() == 0 && d.inflight < d.prefetch && d.tryQueue.TryInsert(it) {
		d.markQueuedLocked(it)
		return
	}
	d.backlog.push(it)
	d.wakeLocked()
}

// armLocked makes sure the timer fires no later than the earliest due time.
func (d *Driver) armLocked() {
	if d.delayed.len() == 0 {
		return
	}
	next := d.delayed.peek().due
	if d.armedAt != 0 && d.armedAt <= next {
		return
	}
	wait := max(time.Duration(next-int64(time.Since(d.epoch))), 0)
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.fireDelayed)
	} else {
		d.timer.Reset(wait)
	}
	d.armedAt = next
}

// fireDelayed moves every due delayed job to the backlog and re-arms the timer.
func (d *Driver) fireDelayed() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.armedAt = 0
	now := int64(time.Since(d.epoch))
	moved := 0
	for d.delayed.len() > 0 && d.delayed.peek().due <= now {
		it := d.delayed.pop()
		it.state = stBacklog
		d.backlog.push(it)
		moved++
	}
	d.armLocked()
	if moved > 0 {
		d.wakeLocked()
		if ce := d.log.Check(zapcore.DebugLevel, "delayed jobs are due"); ce != nil {
			ce.Write(zap.String("pipeline", d.pipeline), zap.Int("count", moved))
		}
	}
}

// reserveLocked marks a queued item as taken by a worker (Item.Context).
func (d *Driver) reserveLocked(it *Item) {
	if it.state != stQueued {
		return
	}
	d.queued--
	if it.acked {
		// auto_ack: already acknowledged at dispatch; nothing left to track.
		it.state = stDone
		return
	}
	it.state = stReserved
	d.reserved++
}

// releaseLocked finishes a queued or reserved item and frees its prefetch slot.
func (d *Driver) releaseLocked(it *Item) {
	switch it.state {
	case stQueued:
		d.queued--
	case stReserved:
		d.reserved--
	default:
		return
	}
	it.state = stDone
	if !it.acked {
		d.inflight--
		d.wakeLocked()
	}
}

// finish implements Ack and Nack: no-op for auto_ack jobs, finished jobs, or after Stop.
func (d *Driver) finish(it *Item, msg string) {
	d.mu.Lock()
	if it.acked || (it.state != stQueued && it.state != stReserved) {
		d.mu.Unlock()
		return
	}
	d.releaseLocked(it)
	d.mu.Unlock()
	if ce := d.log.Check(zapcore.DebugLevel, msg); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id))
	}
}

// requeue implements Requeue and NackWithOptions(true, delay): the old item is finished and a new
// one with the same id and priority and the merged headers goes to the backlog or the delay heap.
func (d *Driver) requeue(it *Item, headers map[string][]string, delay int) error {
	const op = errors.Op("memory_requeue")
	d.mu.Lock()
	if it.acked {
		d.mu.Unlock()
		return nil
	}
	if d.stopped {
		d.releaseLocked(it)
		d.mu.Unlock()
		return errors.E(op, fmt.Errorf("memory pipeline %q is stopped, job %q can't be requeued", d.pipeline, it.id))
	}
	if it.state != stQueued && it.state != stReserved {
		d.mu.Unlock()
		return errors.E(op, fmt.Errorf("memory pipeline %q: job %q was already acknowledged or requeued", d.pipeline, it.id))
	}
	d.releaseLocked(it)
	n := &Item{
		drv:      d,
		id:       it.id,
		job:      it.job,
		priority: it.priority,
		payload:  it.payload,
		headers:  driverkit.MergeHeaders(it.headers, headers),
		autoAck:  it.autoAck,
	}
	d.enqueueLocked(n, int64(max(delay, 0)))
	d.mu.Unlock()

	if ce := d.log.Check(zapcore.DebugLevel, "job was requeued"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Int("delay_seconds", delay))
	}
	return nil
}

// fifo is a slice-backed FIFO of items.
type fifo struct {
	buf  []*Item
	head int
}

func (f *fifo) len() int { return len(f.buf) - f.head }

func (f *fifo) push(it *Item) { f.buf = append(f.buf, it) }

func (f *fifo) pop() *Item {
	it := f.buf[f.head]
	f.buf[f.head] = nil
	f.head++
	switch {
	case f.head == len(f.buf):
		f.head = 0
		if cap(f.buf) > 4096 {
			f.buf = nil
		} else {
			f.buf = f.buf[:0]
		}
	case f.head >= 1024 && f.head*2 >= len(f.buf):
		n := copy(f.buf, f.buf[f.head:])
		clear(f.buf[n:])
		f.buf = f.buf[:n]
		f.head = 0
	}
	return it
}

// drop marks every item done and empties the FIFO.
func (f *fifo) drop() {
	for _, it := range f.buf[f.head:] {
		it.state = stDone
	}
	f.buf = nil
	f.head = 0
}

// delayHeap is a binary min-heap of items ordered by due time, then push order.
type delayHeap []*Item

func (h delayHeap) len() int { return len(h) }

func (h delayHeap) peek() *Item { return h[0] }

func (h delayHeap) less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return int32(h[i].seq-h[j].seq) < 0 //nolint:gosec // serial-number comparison: seq may wrap
}

func (h *delayHeap) push(it *Item) {
	*h = append(*h, it)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *delayHeap) pop() *Item {
	s := *h
	it := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = nil
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s.less(l, m) {
			m = l
		}
		if r < len(s) && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	if len(s) == 0 {
		s = nil
	}
	*h = s
	return it
}

// drop marks every item done and empties the heap.
func (h *delayHeap) drop() {
	for _, it := range *h {
		it.state = stDone
	}
	*h = nil
}
