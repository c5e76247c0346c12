package kafka

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// freeSlots is how many more records the poll loop may fetch.
func (d *Driver) freeSlots() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conf.Prefetch - d.nQueued - d.nReserved
}

// pollLoop fetches records and hands them over until ctx ends (Pause / Stop).
func (d *Driver) pollLoop(ctx context.Context, cons *kgo.Client, done chan struct{}) {
	defer close(done)
	defer cons.AllowRebalance()
	retry := time.Duration(0)
	for ctx.Err() == nil {
		n := d.freeSlots()
		if n <= 0 {
			if ce := d.log.Check(zapcore.DebugLevel, "prefetch limit was reached, waiting for jobs to finish"); ce != nil {
				ce.Write(zap.String("pipeline", d.pipeline), zap.Int("prefetch", d.conf.Prefetch))
			}
			select {
			case <-d.wake:
			case <-ctx.Done():
				return
			}
			continue
		}
		fetches := cons.PollRecords(ctx, n)
		if fetches.IsClientClosed() {
			return
		}
		ferr := d.fetchErrors(cons, fetches)
		d.setFetchErr(ferr)
		records := fetches.NumRecords()
		if records > 0 {
			d.handOver(fetches)
		}
		cons.AllowRebalance()
		if records == 0 && ferr != nil {
			retry = min(max(retry*2, 50*time.Millisecond), maxRetryWait)
			if !sleepCtx(ctx, retry) {
				return
			}
			continue
		}
		retry = 0
	}
}

// fetchErrors logs the errors of a poll and returns the first one worth reporting in State.
func (d *Driver) fetchErrors(cons *kgo.Client, fetches kgo.Fetches) error {
	var first error
	fetches.EachError(func(topic string, partition int32, err error) {
		var (
			loss *kgo.ErrDataLoss
			ke   *kerr.Error
		)
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrClientClosed):
			return
		case errors.As(err, &loss):
			// The client already moved to where it should consume; worth a look, not a restart.
			d.log.Warn("the broker lost data, consumption was reset", zap.String("pipeline", d.pipeline),
				zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err))
			return
		case errors.As(err, &ke) && ke.Code == kerr.UnknownTopicID.Code: // UNKNOWN_TOPIC_ID: the topic was re-created
			cons.ForceMetadataRefresh()
		}
		if first == nil {
			first = fmt.Errorf("topic %q partition %d: %w", topic, partition, err)
		}
	})
	return first
}

// handOver registers a polled batch and inserts its ready jobs into the shared queue; delayed ones
// are held until they are due.
func (d *Driver) handOver(fetches kgo.Fetches) {
	d.batchMu.Lock()
	defer d.batchMu.Unlock()
	var ready []*Item
	delayed := false
	now := time.Now()
	d.mu.Lock()
	fetches.EachRecord(func(r *kgo.Record) {
		it := d.registerLocked(r, now)
		switch {
		case it == nil:
		case it.state == stQueued:
			ready = append(ready, it)
		default:
			delayed = true
		}
	})
	d.mu.Unlock()
	if delayed {
		signal(d.delayWake)
	}
	for _, it := range ready {
		d.queue.Insert(it)
	}
	if ce := d.log.Check(zapcore.DebugLevel, "records were fetched"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.Int("ready", len(ready)), zap.Bool("delayed", delayed))
	}
}

// registerLocked tracks a fetched record and builds its job: queued, or delayed when its
// rr_delay_until lies ahead. It returns nil for a record of a partition no longer assigned (the
// new owner consumes it). Call with mu held.
func (d *Driver) registerLocked(r *kgo.Record, now time.Time) *Item {
	key := tpKey{topic: r.Topic, partition: r.Partition}
	if d.conf.Group != nil && !d.assigned[key] {
		return nil
	}
	d.seen[r.Topic] = true
	tr := d.trackers[key]
	if tr == nil || tr.dead || r.Offset < tr.next {
		if tr != nil && !tr.dead {
			// The client rewound (data loss handling): start over from here.
			tr.dead = true
			d.log.Warn("consumption of a partition was rewound, its offsets are tracked anew", zap.String("pipeline", d.pipeline),
				zap.String("topic", r.Topic), zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Int64("expected", tr.next))
		}
		tr = newTracker(key)
		// Consumption starts here (the committed offset, or consumer_offset): nothing to commit
		// until this record is finished.
		tr.committed = r.Offset
		d.trackers[key] = tr
	}
	ent := tr.add(r.Offset)
	rj := decodeRecord(r)
	prio := rj.Priority
	if prio <= 0 {
		prio = d.conf.Priority
	}
	d.seq++
	it := &Item{
		drv: d, tr: tr, ent: ent, seq: d.seq,
		topic: r.Topic, partition: r.Partition, offset: r.Offset,
		id: rj.ID, job: rj.Job, priority: prio, payload: rj.Payload, headers: rj.Headers, autoAck: rj.AutoAck,
		state: stDelayed, heapIdx: -1,
	}
	if rj.DelayUntil.After(now) {
		it.due = rj.DelayUntil
		heap.Push(&d.delayed, it)
		return it
	}
	d.setState(it, stQueued)
	return it
}

// delayLoop inserts delayed jobs into the shared queue when they come due, while the pipeline is
// running (a paused pipeline keeps them until Resume).
func (d *Driver) delayLoop() {
	defer d.bgWG.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		wait := d.releaseDue()
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-d.life.Done():
			return
		case <-d.delayWake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// releaseDue moves the due delayed jobs to the shared queue and returns how long until the next
// one is due (-1: none, or not running).
func (d *Driver) releaseDue() time.Duration {
	d.batchMu.Lock()
	defer d.batchMu.Unlock()
	d.mu.Lock()
	if !d.running || d.stopped {
		d.mu.Unlock()
		return -1
	}
	now := time.Now()
	wait := time.Duration(-1)
	var due []*Item
	for len(d.delayed) > 0 {
		top := d.delayed[0]
		if top.due.After(now) {
			wait = top.due.Sub(now)
			break
		}
		heap.Pop(&d.delayed)
		d.setState(top, stQueued)
		due = append(due, top)
	}
	d.mu.Unlock()
	for _, it := range due {
		d.queue.Insert(it)
	}
	if len(due) > 0 {
		return 0
	}
	return wait
}

// commitLoop commits the finished offsets every commitInterval (consumer groups only).
func (d *Driver) commitLoop() {
	defer d.bgWG.Done()
	t := time.NewTicker(commitInterval)
	defer t.Stop()
	for {
		select {
		case <-d.life.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(d.life, opTimeout)
		err := d.commit(ctx, nil)
		cancel()
		if d.life.Err() == nil {
			d.setCommitErr(err)
		}
	}
}

// commit commits, for the tracked partitions in keys (all when nil), the offset below which every
// record is finished, where it moved since the last commit.
func (d *Driver) commit(ctx context.Context, keys map[tpKey]bool) error {
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	type pending struct {
		tr  *tracker
		off int64
	}
	d.mu.Lock()
	cons := d.cons
	if cons == nil || d.conf.Group == nil {
		d.mu.Unlock()
		return nil
	}
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	var todo []pending
	for k, tr := range d.trackers {
		if tr.dead || (keys != nil && !keys[k]) {
			continue
		}
		cp, ok := tr.commitPoint()
		if !ok || cp <= tr.committed {
			continue
		}
		if offsets[k.topic] == nil {
			offsets[k.topic] = make(map[int32]kgo.EpochOffset)
		}
		offsets[k.topic][k.partition] = kgo.EpochOffset{Epoch: -1, Offset: cp}
		todo = append(todo, pending{tr: tr, off: cp})
	}
	d.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}

	var first error
	ok := make(map[tpKey]bool, len(todo))
	cons.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			first = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					if first == nil {
						first = fmt.Errorf("topic %q partition %d: %w", t.Topic, p.Partition, perr)
					}
					continue
				}
				ok[tpKey{topic: t.Topic, partition: p.Partition}] = true
			}
		}
	})
	d.mu.Lock()
	for _, p := range todo {
		if ok[p.tr.key] && p.off > p.tr.committed {
			p.tr.committed = p.off
		}
	}
	d.mu.Unlock()
	if ce := d.log.Check(zapcore.DebugLevel, "offsets were committed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.Any("offsets", offsets), zap.Error(first))
	}
	return first
}

// onAssigned records the partitions the group gave this member.
func (d *Driver) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	d.mu.Lock()
	for t, ps := range assigned {
		for _, p := range ps {
			d.assigned[tpKey{topic: t, partition: p}] = true
		}
	}
	d.mu.Unlock()
	d.log.Debug("partitions were assigned", zap.String("pipeline", d.pipeline), zap.Any("partitions", assigned))
}

// onRevoked hands revoked partitions over cleanly: their jobs still waiting in the shared queue are
// taken out (the new owner fetches them), the jobs at workers get up to revokeWait to finish, the
// finished offsets are committed, and their delayed jobs are dropped (the new owner holds them).
func (d *Driver) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	d.revoke(ctx, revoked, true)
}

// onLost forgets lost partitions (their commits would fail): jobs still in the shared queue are
// taken out and delayed ones dropped; the new owner resumes at the last commit.
func (d *Driver) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	d.revoke(ctx, lost, false)
}

func (d *Driver) revoke(ctx context.Context, parts map[string][]int32, commit bool) {
	keys := make(map[tpKey]bool)
	for t, ps := range parts {
		for _, p := range ps {
			keys[tpKey{topic: t, partition: p}] = true
		}
	}
	if len(keys) == 0 {
		return
	}
	d.batchMu.Lock()
	defer d.batchMu.Unlock()
	d.mu.Lock()
	for k := range keys {
		delete(d.assigned, k)
	}
	d.mu.Unlock()

	released := d.releaseQueued(keys)
	busy := 0
	var err error
	if commit {
		busy = d.waitSettled(keys)
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		err = d.commit(cctx, keys)
		cancel()
	}
	d.mu.Lock()
	for k := range keys {
		if tr := d.trackers[k]; tr != nil {
			tr.dead = true
			delete(d.trackers, k)
		}
	}
	d.mu.Unlock()
	dropped := d.dropDelayed(keys)
	what := "partitions were revoked"
	if !commit {
		what = "partitions were lost"
	}
	d.log.Info(what, zap.String("pipeline", d.pipeline), zap.Any("partitions", parts), zap.Int("released", released),
		zap.Int("delayed_released", dropped), zap.Int("unfinished_at_workers", busy), zap.NamedError("commit_error", err))
}

// releaseQueued takes the jobs of the given partitions that wait in the shared queue out of it,
// without finishing them. The other jobs of the pipeline go back into the queue.
func (d *Driver) releaseQueued(keys map[tpKey]bool) int {
	d.mu.Lock()
	anyQueued := false
	for k := range keys {
		if tr := d.trackers[k]; tr != nil && tr.queued > 0 {
			anyQueued = true
		}
	}
	d.mu.Unlock()
	if !anyQueued {
		return 0
	}
	removed := d.queue.Remove(d.pipeline)
	back := make([]jobs.Job, 0, len(removed))
	n := 0
	d.mu.Lock()
	for _, j := range removed {
		if it, ok := j.(*Item); ok && it.drv == d && it.state == stQueued && keys[it.key()] {
			d.setState(it, stDone)
			n++
			continue
		}
		back = append(back, j)
	}
	d.mu.Unlock()
	for _, j := range back {
		d.queue.Insert(j)
	}
	if n > 0 {
		signal(d.wake)
	}
	return n
}

// waitSettled waits up to revokeWait for the jobs of the given partitions at workers to finish; it
// returns how many are still running.
func (d *Driver) waitSettled(keys map[tpKey]bool) int {
	deadline := time.Now().Add(revokeWait)
	for {
		d.mu.Lock()
		busy := 0
		for k := range keys {
			if tr := d.trackers[k]; tr != nil {
				busy += tr.reserved
			}
		}
		stopped := d.stopped
		d.mu.Unlock()
		if busy == 0 || stopped || time.Now().After(deadline) {
			return busy
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *Driver) setFetchErr(err error) {
	d.mu.Lock()
	prev := d.fetchErr
	d.fetchErr = err
	d.mu.Unlock()
	switch {
	case err != nil && (prev == nil || prev.Error() != err.Error()):
		d.log.Error("records could not be fetched, retrying", zap.String("pipeline", d.pipeline), zap.Error(err))
	case err == nil && prev != nil:
		d.log.Info("records are fetched again", zap.String("pipeline", d.pipeline))
	}
}

func (d *Driver) setCommitErr(err error) {
	d.mu.Lock()
	prev := d.commitErr
	d.commitErr = err
	d.mu.Unlock()
	switch {
	case err != nil && (prev == nil || prev.Error() != err.Error()):
		d.log.Warn("offsets could not be committed, retrying", zap.String("pipeline", d.pipeline), zap.Error(err))
	case err == nil && prev != nil:
		d.log.Info("offsets are committed again", zap.String("pipeline", d.pipeline))
	}
}

// sleepCtx sleeps for d unless ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
