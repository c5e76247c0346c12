package boltdb

import (
	"context"
	stderrors "errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const (
	// maxDelaySeconds caps a job delay (about 68 years) so due times cannot overflow.
	maxDelaySeconds = 1 << 31
	// takeBatch caps the jobs the dispatcher moves to in-flight in one transaction.
	takeBatch = 512
	// promoteBatch caps the due delayed jobs moved to ready in one transaction.
	promoteBatch = 10_000
	// retryAfterError is how long the dispatcher or the delay timer waits after a failed
	// transaction before trying again.
	retryAfterError = time.Second
	// nackDelaySeconds is the delay of a job given back with a plain Nack().
	nackDelaySeconds = 1
)

// Driver is the boltdb jobs.Driver of one pipeline, owning one database file.
//
// Every change to the file goes through one committer goroutine that batches the operations
// waiting at that moment (pushes, hand-outs, acks, requeues, due delayed jobs) into one fsync'd
// transaction, and answers each caller once its batch is durable. The counters below mirror the
// buckets: they are computed from the file at open and updated, under mu, only after a commit.
// queue.Insert and queue.Remove are never called with mu held.
type Driver struct {
	log      *zap.Logger
	queue    jobs.Queue
	pipeline string
	priority int64
	prefetch int
	file     string // canonical absolute path
	db       *bolt.DB

	seq      atomic.Uint64 // last sequence number handed out
	stopping atomic.Bool   // set by Stop: the dispatcher stops inserting at once

	// The committer.
	ops        chan *op
	opsMu      sync.RWMutex // guards opsClosed and sending on ops
	opsClosed  bool
	commitDone chan struct{}

	mu sync.Mutex
	// cond is broadcast when ready jobs appear, a prefetch slot frees, or the run state changes.
	cond     *sync.Cond
	ready    int64 // jobs in bucketReady
	delayed  int64 // jobs in bucketDelayed
	queued   int64 // jobs handed to the shared queue, not yet taken by a worker (auto_ack included)
	reserved int64 // jobs taken by a worker, not yet finished
	inflight int   // prefetch slots held: non-auto_ack jobs in the queue or at a worker (+ a take in progress)

	nextDue int64 // earliest due time in bucketDelayed (unix ns); 0 = none
	armedAt int64 // due time the timer is armed for; 0 = not armed
	timer   *time.Timer

	running  bool
	stopped  bool
	gen      uint64        // bumped on every start/pause/stop; a dispatcher exits when it changes
	dispDone chan struct{} // closed when the newest dispatcher exits
	wg       sync.WaitGroup
}

var _ jobs.Driver = (*Driver)(nil)

// Open opens (creating it if needed) the pipeline's database file, puts jobs left in flight by a
// previous process back to ready, and returns a driver that does not consume until Run. Errors
// name the pipeline and the file.
func Open(log *zap.Logger, pipeline string, conf Config, queue jobs.Queue) (*Driver, error) {
	const eop = errors.Op("boltdb_open")
	if queue == nil {
		return nil, errors.E(eop, fmt.Errorf("boltdb pipeline %q: nil queue", pipeline))
	}
	if pipeline == "" {
		return nil, errors.E(eop, errors.Str("boltdb pipeline: empty pipeline name"))
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
	if conf.File == "" {
		conf.File = DefaultFile
	}
	if conf.Permissions == 0 {
		conf.Permissions = DefaultPermissions
	}

	path, err := canonicalPath(conf.File)
	if err != nil {
		return nil, errors.E(eop, fmt.Errorf("boltdb pipeline %q: file %q: %w", pipeline, conf.File, err))
	}
	if err := claimFile(path, pipeline); err != nil {
		return nil, errors.E(eop, err)
	}
	db, err := openDB(path, conf.Permissions)
	if err != nil {
		releaseFile(path)
		if stderrors.Is(err, bolt.ErrTimeout) {
			err = fmt.Errorf("%w: another process holds the file lock for more than %s", err, openTimeout)
		}
		return nil, errors.E(eop, fmt.Errorf("boltdb pipeline %q: open file %q: %w", pipeline, path, err))
	}
	rec, err := recoverFile(db)
	if err != nil {
		_ = db.Close()
		releaseFile(path)
		return nil, errors.E(eop, fmt.Errorf("boltdb pipeline %q: read file %q: %w", pipeline, path, err))
	}

	d := &Driver{
		log:        log,
		queue:      queue,
		pipeline:   pipeline,
		priority:   conf.Priority,
		prefetch:   conf.Prefetch,
		file:       path,
		db:         db,
		ops:        make(chan *op, opsBuffer),
		commitDone: make(chan struct{}),
		ready:      rec.ready,
		delayed:    rec.delayed,
		nextDue:    rec.nextDue,
	}
	d.cond = sync.NewCond(&d.mu)
	d.seq.Store(rec.maxSeq)
	go d.commitLoop()

	d.mu.Lock()
	d.armLocked()
	d.mu.Unlock()

	d.log.Info("database file was opened", zap.String("driver", pluginName), zap.String("pipeline", pipeline), zap.String("file", path),
		zap.Int64("ready", rec.ready), zap.Int64("delayed", rec.delayed), zap.Int64("recovered_in_flight", rec.inflight))
	if rec.broken > 0 {
		d.log.Warn("the file holds job records that could not be decoded; they are kept in a separate bucket and not delivered",
			zap.String("pipeline", pipeline), zap.String("file", path), zap.String("bucket", string(bucketBroken)), zap.Int64("count", rec.broken))
	}
	if rec.stockJobs > 0 {
		d.log.Warn("the file holds jobs written by the stock RoadRunner boltdb driver; this driver does not read them",
			zap.String("pipeline", pipeline), zap.String("file", path), zap.Int("count", rec.stockJobs))
	}
	return d, nil
}

// File returns the canonical path of the pipeline's database file.
func (d *Driver) File() string { return d.file }

func (d *Driver) nextSeq() uint64 { return d.seq.Add(1) }

// Push stores a job and returns once it is fsync'd. Delayed jobs go to the delay index.
func (d *Driver) Push(ctx context.Context, msg jobs.Message) error {
	const op = errors.Op("boltdb_push")
	if msg == nil {
		return errors.E(op, fmt.Errorf("boltdb pipeline %q: nil message", d.pipeline))
	}
	prio := msg.Priority()
	if prio == 0 {
		prio = d.priority
	}
	rec := record{
		id:       msg.ID(),
		job:      msg.Name(),
		priority: prio,
		autoAck:  msg.AutoAck(),
		payload:  msg.Payload(),
		headers:  msg.Headers(),
	}
	o := d.storeOp(rec.encode(), msg.Delay())
	if ctx == nil {
		ctx = context.Background()
	}
	if err := d.submit(ctx, o); err != nil {
		return errors.E(op, fmt.Errorf("boltdb pipeline %q: job %q was not pushed: %w", d.pipeline, rec.id, err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was pushed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", rec.id), zap.Int64("delay_seconds", msg.Delay()))
	}
	return nil
}

// ReadOnlyHeaders tells the jobs plugin that the driver never writes to a pushed message's headers
// map (Push encodes it into the record at once and keeps no reference), so the jobs of one batch
// may share a map of trace headers.
func (d *Driver) ReadOnlyHeaders() bool { return true }

// storeOp returns an operation writing a job record into ready, or into the delay index when
// delay > 0, and updating the counters once durable. The old in-flight key, if not nil, is deleted
// in the same transaction (requeue).
func (d *Driver) storeOp(val []byte, delay int64) *op {
	seq := d.nextSeq()
	if delay > 0 {
		due := time.Now().Add(time.Duration(min(delay, maxDelaySeconds)) * time.Second).UnixNano()
		key := delayedKey(due, seq)
		return &op{
			apply: func(tx *bolt.Tx) error { return tx.Bucket(bucketDelayed).Put(key, val) },
			after: func() {
				d.delayed++
				d.noteDueLocked(due)
			},
		}
	}
	key := seqKey(seq)
	return &op{
		apply: func(tx *bolt.Tx) error { return tx.Bucket(bucketReady).Put(key, val) },
		after: func() {
			d.ready++
			d.cond.Broadcast()
		},
	}
}

// Run starts consuming the pipeline.
func (d *Driver) Run(_ context.Context, _ jobs.Pipeline) error {
	const op = errors.Op("boltdb_run")
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
	const op = errors.Op("boltdb_resume")
	d.mu.Lock()
	if err := d.startLocked(); err != nil {
		d.mu.Unlock()
		return errors.E(op, err)
	}
	d.mu.Unlock()
	d.log.Info("pipeline was resumed", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

// Pause stops handing jobs to the shared queue; jobs already there still run and pushes are
// stored. It waits for a hand-out in progress (a transaction, or an Insert into a full queue) at
// most until ctx ends.
func (d *Driver) Pause(ctx context.Context, _ string) error {
	const op = errors.Op("boltdb_pause")
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return errors.E(op, fmt.Errorf("boltdb pipeline %q is stopped", d.pipeline))
	}
	if !d.running {
		d.mu.Unlock()
		return errors.E(op, fmt.Errorf("boltdb pipeline %q: no active listeners, nothing to pause", d.pipeline))
	}
	d.running = false
	d.gen++
	d.cond.Broadcast()
	done := d.dispDone
	d.mu.Unlock()

	select {
	case <-done:
	case <-ctx.Done():
		d.log.Warn("pipeline was paused, but its dispatcher is still blocked inserting jobs into the full queue",
			zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	}
	d.log.Info("pipeline was paused", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	return nil
}

// Stop stops consuming for good and closes the file. This pipeline's jobs waiting in the shared
// queue are removed from it; they, and jobs still at a worker, stay in flight in the file and are
// delivered again on the next start. Ready and delayed jobs stay in the file. Idempotent.
func (d *Driver) Stop(ctx context.Context) error {
	const op = errors.Op("boltdb_stop")
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	d.stopping.Store(true)
	d.running = false
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
	}
	d.armedAt = 0
	d.cond.Broadcast()
	d.mu.Unlock()

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

	err := d.closeStore()
	d.mu.Lock()
	ready, delayed, atWorkers := d.ready, d.delayed, d.reserved
	d.mu.Unlock()
	d.log.Info("pipeline was stopped", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline), zap.String("file", d.file),
		zap.Int("removed_from_queue", removed), zap.Int64("ready", ready), zap.Int64("delayed", delayed), zap.Int64("at_workers", atWorkers))
	if err != nil {
		return errors.E(op, fmt.Errorf("boltdb pipeline %q: close file %q: %w", d.pipeline, d.file, err))
	}
	return nil
}

// State reports the pipeline counters, which mirror the file.
func (d *Driver) State(_ context.Context) (*jobs.State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &jobs.State{
		Pipeline: d.pipeline,
		Driver:   pluginName,
		Queue:    d.pipeline,
		Priority: uint64(d.priority), //nolint:gosec // validated >= 1
		Active:   max(d.ready+d.queued, 0),
		Delayed:  max(d.delayed, 0),
		Reserved: max(d.reserved, 0),
		Ready:    d.running,
	}, nil
}

// startLocked launches a dispatcher (Run / Resume).
func (d *Driver) startLocked() error {
	if d.stopped {
		return fmt.Errorf("boltdb pipeline %q is stopped", d.pipeline)
	}
	if d.running {
		return fmt.Errorf("boltdb pipeline %q is already running", d.pipeline)
	}
	d.running = true
	d.gen++
	done := make(chan struct{})
	d.dispDone = done
	d.wg.Add(1)
	go d.dispatch(d.gen, done)
	return nil
}

// dispatch moves ready jobs to in-flight (one transaction per batch) and into the shared queue
// while the prefetch limit allows, until the generation changes (Pause / Stop).
func (d *Driver) dispatch(gen uint64, done chan struct{}) {
	defer d.wg.Done()
	defer close(done)

	for {
		d.mu.Lock()
		for d.gen == gen && (d.ready == 0 || d.inflight >= d.prefetch) {
			d.cond.Wait()
		}
		if d.gen != gen {
			stopped := d.stopped
			d.mu.Unlock()
			if stopped {
				d.removeFromQueue()
			}
			return
		}
		n := min(d.prefetch-d.inflight, takeBatch)
		d.inflight += n // reserved for the take; the unused part is given back when it commits
		d.mu.Unlock()

		items, err := d.take(n)
		if err != nil {
			d.mu.Lock()
			d.inflight -= n
			d.cond.Broadcast()
			d.mu.Unlock()
			if stderrors.Is(err, errStopped) {
				continue
			}
			d.log.Error("jobs could not be handed out, retrying", zap.String("pipeline", d.pipeline), zap.String("file", d.file), zap.Error(err))
			d.sleep(gen, retryAfterError)
			continue
		}
		for i, it := range items {
			if d.stopping.Load() {
				// Not handed out: they stay in flight in the file for the next start (auto_ack
				// ones, already deleted, are written back).
				d.abandon(items[i:])
				break
			}
			d.queue.Insert(it)
		}
		if d.stopping.Load() {
			d.removeFromQueue()
		}
	}
}

// sleep waits for dur or until the generation changes.
func (d *Driver) sleep(gen uint64, dur time.Duration) {
	deadline := time.Now().Add(dur)
	t := time.AfterFunc(dur, func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer t.Stop()
	d.mu.Lock()
	for d.gen == gen && time.Now().Before(deadline) {
		d.cond.Wait()
	}
	d.mu.Unlock()
}

// take moves up to n ready jobs to in-flight in one transaction (auto_ack jobs are deleted
// instead: they count as acknowledged from here on) and returns them in FIFO order. The caller
// has added n to d.inflight; the part not used by the returned jobs is given back on commit.
func (d *Driver) take(n int) ([]*Item, error) {
	var (
		items  []*Item
		broken int
	)
	o := &op{
		apply: func(tx *bolt.Tx) error {
			items, broken = items[:0], 0
			rb, ib := tx.Bucket(bucketReady), tx.Bucket(bucketInflight)
			type kv struct{ k, v []byte }
			got := make([]kv, 0, min(n, 64))
			c := rb.Cursor()
			for k, v := c.First(); k != nil && len(got) < n; k, v = c.Next() {
				got = append(got, kv{clone(k), clone(v)})
			}
			for _, e := range got {
				if err := rb.Delete(e.k); err != nil {
					return err
				}
				seq, okKey := parseSeqKey(e.k)
				rec, err := decodeRecord(e.v)
				if err != nil || !okKey {
					if err == nil {
						err = fmt.Errorf("bad key %x", e.k)
					}
					if perr := tx.Bucket(bucketBroken).Put(seqKey(d.nextSeq()), e.v); perr != nil {
						return perr
					}
					broken++
					d.log.Error("a stored job could not be decoded; it was moved aside and will not be delivered",
						zap.String("pipeline", d.pipeline), zap.String("file", d.file), zap.String("bucket", string(bucketBroken)), zap.Error(err))
					continue
				}
				if !rec.autoAck {
					if err := ib.Put(e.k, e.v); err != nil {
						return err
					}
				}
				items = append(items, d.newItem(rec, seq))
			}
			return nil
		},
		after: func() {
			d.ready -= int64(len(items) + broken)
			used := 0
			for _, it := range items {
				it.state = stQueued
				d.queued++
				if it.acked {
					continue
				}
				used++
			}
			d.inflight -= n - used
			d.cond.Broadcast()
		},
	}
	if err := d.submit(context.Background(), o); err != nil {
		return nil, err
	}
	return items, nil
}

// removeFromQueue removes this pipeline's jobs from the shared queue (on Stop) and settles their
// counters. They stay in flight in the file; auto_ack ones are written back to ready.
func (d *Driver) removeFromQueue() int {
	items := driverkit.RemoveFromQueue(d.queue, d.pipeline, func(it *Item) bool { return it.drv == d })
	if len(items) == 0 {
		return 0
	}
	return d.abandon(items)
}

// abandon settles items that were taken from ready but will not reach a worker (Stop). Ordinary
// jobs stay in flight in the file and come back on the next start. auto_ack jobs were deleted at
// hand-off, so they are written back to ready under their old key, to be delivered next time.
func (d *Driver) abandon(items []*Item) int {
	var back []*Item
	n := 0
	d.mu.Lock()
	for _, it := range items {
		if it.state != stQueued && it.state != stTaking {
			continue
		}
		if it.acked {
			back = append(back, it)
		}
		if it.state == stTaking {
			it.state = stQueued
		}
		d.releaseLocked(it)
		n++
	}
	d.mu.Unlock()
	if len(back) == 0 {
		return n
	}
	keys, vals := make([][]byte, len(back)), make([][]byte, len(back))
	for i, it := range back {
		keys[i] = seqKey(it.seq)
		vals[i] = (&record{id: it.id, job: it.job, priority: it.priority, autoAck: true, payload: it.payload, headers: it.headers}).encode()
	}
	err := d.submit(context.Background(), &op{
		apply: func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketReady)
			for i := range keys {
				if err := b.Put(keys[i], vals[i]); err != nil {
					return err
				}
			}
			return nil
		},
		after: func() { d.ready += int64(len(keys)) },
	})
	if err != nil {
		for _, it := range back {
			d.log.Error("an auto_ack job taken from the file but never handed to a worker could not be written back: it is lost",
				zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.String("file", d.file), zap.Error(err))
		}
	}
	return n
}

// noteDueLocked records a new delayed job's due time and re-arms the timer if it is the earliest.
func (d *Driver) noteDueLocked(due int64) {
	due = max(due, 1)
	if d.nextDue == 0 || due < d.nextDue {
		d.nextDue = due
		d.armLocked()
	}
}

// armLocked makes sure the timer fires at the earliest due time (one timer, no polling).
func (d *Driver) armLocked() {
	if d.stopped {
		return
	}
	if d.nextDue == 0 {
		if d.timer != nil {
			d.timer.Stop()
		}
		d.armedAt = 0
		return
	}
	if d.armedAt == d.nextDue {
		return
	}
	d.armTimerLocked(time.Until(time.Unix(0, d.nextDue)))
	d.armedAt = d.nextDue
}

func (d *Driver) armTimerLocked(wait time.Duration) {
	wait = max(wait, 0)
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.promoteDue)
	} else {
		d.timer.Reset(wait)
	}
}

// promoteDue moves due delayed jobs to the end of ready in one transaction (a new sequence number
// each, so they queue behind jobs pushed earlier) and re-arms the timer for the next due time.
// It runs whether or not the pipeline consumes, so Delayed only counts jobs still waiting.
func (d *Driver) promoteDue() {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.armedAt = 0
	d.mu.Unlock()

	now := time.Now().UnixNano()
	var (
		moved int64
		next  int64
	)
	o := &op{
		apply: func(tx *bolt.Tx) error {
			moved, next = 0, 0
			dlb, rb := tx.Bucket(bucketDelayed), tx.Bucket(bucketReady)
			type kv struct{ k, v []byte }
			var due []kv
			c := dlb.Cursor()
			for k, v := c.First(); k != nil && len(due) < promoteBatch; k, v = c.Next() {
				at, _, _ := parseDelayedKey(k)
				if at > now {
					break
				}
				due = append(due, kv{clone(k), clone(v)})
			}
			for _, e := range due {
				if err := rb.Put(seqKey(d.nextSeq()), e.v); err != nil {
					return err
				}
				if err := dlb.Delete(e.k); err != nil {
					return err
				}
				moved++
			}
			if k, _ := dlb.Cursor().First(); k != nil {
				at, _, _ := parseDelayedKey(k)
				next = max(at, 1)
			}
			return nil
		},
		after: func() {
			d.delayed -= moved
			d.ready += moved
			d.nextDue = next
			d.armLocked()
			if moved > 0 {
				d.cond.Broadcast()
				if ce := d.log.Check(zapcore.DebugLevel, "delayed jobs are due"); ce != nil {
					ce.Write(zap.String("pipeline", d.pipeline), zap.Int64("count", moved))
				}
			}
		},
	}
	err := d.submit(context.Background(), o)
	if err == nil || stderrors.Is(err, errStopped) {
		return
	}
	d.log.Error("due delayed jobs could not be moved to ready, retrying", zap.String("pipeline", d.pipeline), zap.String("file", d.file), zap.Error(err))
	d.mu.Lock()
	if !d.stopped {
		d.armTimerLocked(retryAfterError)
		d.armedAt = -1
	}
	d.mu.Unlock()
}

// reserveLocked marks a queued item as taken by a worker (Item.Context).
func (d *Driver) reserveLocked(it *Item) {
	if it.state != stQueued {
		return
	}
	d.queued--
	if it.acked {
		// auto_ack: already deleted at hand-off; nothing left to track.
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
		d.cond.Broadcast()
	}
}

// beginLocked claims an item for Ack/Nack/Requeue. It reports false when the call is a no-op
// (auto_ack, already finished, or another call is being committed).
func (d *Driver) beginLocked(it *Item) bool {
	if it.acked || it.busy || (it.state != stQueued && it.state != stReserved) {
		return false
	}
	it.busy = true
	return true
}

// finish deletes the job from in-flight (Ack, or a Nack without requeue) and returns once that
// is durable. No-op for auto_ack jobs and finished jobs.
func (d *Driver) finish(it *Item, what string) error {
	const eop = errors.Op("boltdb_ack")
	d.mu.Lock()
	if !d.beginLocked(it) {
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()

	key := seqKey(it.seq)
	err := d.submit(context.Background(), &op{
		apply: func(tx *bolt.Tx) error { return tx.Bucket(bucketInflight).Delete(key) },
		after: func() {
			it.busy = false
			d.releaseLocked(it)
		},
	})
	if err != nil {
		d.mu.Lock()
		it.busy = false
		d.mu.Unlock()
		return errors.E(eop, d.stayErr(it, what, err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was "+what); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id))
	}
	return nil
}

// requeue rewrites the job (headers merged in, after delay seconds) and deletes it from in-flight
// in one transaction. No-op for auto_ack jobs; on a finished job an error when strict, else a no-op.
func (d *Driver) requeue(it *Item, headers map[string][]string, delay int, strict bool, what string) error {
	const eop = errors.Op("boltdb_requeue")
	d.mu.Lock()
	if it.acked {
		d.mu.Unlock()
		return nil
	}
	if !d.beginLocked(it) {
		d.mu.Unlock()
		if !strict {
			return nil
		}
		return errors.E(eop, fmt.Errorf("boltdb pipeline %q: job %q was already acknowledged or requeued", d.pipeline, it.id))
	}
	d.mu.Unlock()

	rec := record{
		id:       it.id,
		job:      it.job,
		priority: it.priority,
		payload:  it.payload,
		headers:  driverkit.MergeHeaders(it.headers, headers),
	}
	store := d.storeOp(rec.encode(), int64(max(delay, 0)))
	key := seqKey(it.seq)
	err := d.submit(context.Background(), &op{
		apply: func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketInflight).Delete(key); err != nil {
				return err
			}
			return store.apply(tx)
		},
		after: func() {
			it.busy = false
			d.releaseLocked(it)
			store.after()
		},
	})
	if err != nil {
		d.mu.Lock()
		it.busy = false
		d.mu.Unlock()
		return errors.E(eop, d.stayErr(it, what, err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was "+what); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Int("delay_seconds", delay))
	}
	return nil
}

// stayErr explains a failed Ack/Nack/Requeue: the job stays in flight in the file.
func (d *Driver) stayErr(it *Item, what string, err error) error {
	return fmt.Errorf("boltdb pipeline %q: job %q could not be %s (%w); it stays in flight in %q and is delivered again on the next start",
		d.pipeline, it.id, what, err, d.file)
}
