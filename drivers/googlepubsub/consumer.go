package googlepubsub

import (
	"context"
	"errors"
	"math"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// setStateLocked moves it to state s, keeping the counters and the held map in line.
func (d *Driver) setStateLocked(it *Item, s itemState) {
	switch it.state {
	case stDelayed:
		d.nDelayed--
	case stQueued:
		d.nQueued--
	case stReserved:
		d.nReserved--
	case stParked:
		d.nParked--
	case stDone:
	}
	if it.timer != nil && s != stDelayed {
		it.timer.Stop()
		it.timer = nil
	}
	it.state = s
	switch s {
	case stDelayed:
		d.nDelayed++
	case stQueued:
		d.nQueued++
	case stReserved:
		d.nReserved++
	case stParked:
		d.nParked++
	case stDone:
		delete(d.held, it.ackID)
		return
	}
	d.held[it.ackID] = it
}

// delayLocked holds it until it is due (its lease is extended meanwhile).
func (d *Driver) delayLocked(it *Item, wait time.Duration) {
	d.setStateLocked(it, stDelayed)
	it.timer = time.AfterFunc(wait, func() { d.promote(it) })
}

// freeSlots is how many more messages the pull loop may take.
func (d *Driver) freeSlots() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conf.Prefetch - d.nQueued - d.nReserved
}

func (d *Driver) genIs(gen uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen == gen
}

func (d *Driver) setPullErr(err error) {
	d.mu.Lock()
	prev := d.pullErr
	d.pullErr = err
	d.mu.Unlock()
	switch {
	case err != nil && prev == nil:
		d.log.Error("messages could not be pulled, retrying", zap.String("pipeline", d.pipeline), zap.String("subscription", d.sub), zap.Error(err))
	case err == nil && prev != nil:
		d.log.Info("messages are pulled again", zap.String("pipeline", d.pipeline), zap.String("subscription", d.sub))
	}
}

// pullLoop pulls messages while prefetch allows, until Pause or Stop end its generation (ctx is
// cancelled then, which ends a wait for a free slot or a retry pause, never a Pull in flight).
func (d *Driver) pullLoop(ctx context.Context, gen uint64) {
	defer d.loopDone()
	retry := time.Duration(0)
	for ctx.Err() == nil {
		n := d.freeSlots()
		if n <= 0 {
			if ce := d.log.Check(zapcore.DebugLevel, "prefetch limit was reached, waiting for the jobs to be processed"); ce != nil {
				ce.Write(zap.String("pipeline", d.pipeline), zap.Int("prefetch", d.conf.Prefetch))
			}
			select {
			case <-d.wake:
			case <-ctx.Done():
				return
			}
			continue
		}

		resp, err := d.pull(gen, n)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
				continue // an idle long poll
			}
			d.setPullErr(err)
			retry = min(max(retry*2, 50*time.Millisecond), maxRetryWait)
			if !sleepCtx(ctx, retry) {
				return
			}
			continue
		}
		retry = 0
		d.setPullErr(nil)
		if msgs := resp.GetReceivedMessages(); len(msgs) > 0 {
			d.receive(gen, msgs)
		}
	}
}

// pull asks for up to n messages, waiting at most pullWait for the first one. A Pull is never
// cancelled: a server may go on treating a cancelled Pull as waiting (the Pub/Sub emulator does)
// and give it messages that nobody reads, which then come back only after the ack deadline. So
// Pause and Stop let it run out, and what it returns is handed back (see park).
func (d *Driver) pull(gen uint64, n int) (*pb.PullResponse, error) {
	deadline := time.Now().Add(pullWait)
	d.mu.Lock()
	d.pulling[gen] = deadline
	d.mu.Unlock()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	resp, err := d.client.SubscriptionAdminClient.Pull(ctx, &pb.PullRequest{Subscription: d.sub, MaxMessages: int32(min(n, math.MaxInt32))}, noRetry) //nolint:gosec // bounded
	cancel()
	d.mu.Lock()
	delete(d.pulling, gen)
	d.mu.Unlock()
	return resp, err
}

// loopDone ends a pull loop: messages parked while its Pull ran can go back now.
func (d *Driver) loopDone() {
	d.mu.Lock()
	d.nLoops--
	d.mu.Unlock()
	d.flushParked(context.Background())
}

// receive sorts pulled messages: delayed ones are held until due, the others go to the shared
// queue; those of a loop whose generation ended (Pause, Stop) are parked.
func (d *Driver) receive(gen uint64, msgs []*pb.ReceivedMessage) {
	now := time.Now()
	var (
		deferTo = map[int][]string{} // delayed messages beyond maxHeldDelayed: seconds -> ack ids
		ready   []*Item
		stale   bool
	)
	d.mu.Lock()
	live := d.gen == gen && d.running && !d.stopped
	for _, rm := range msgs {
		if rm.GetAckId() == "" {
			continue
		}
		if _, dup := d.held[rm.GetAckId()]; dup {
			continue
		}
		it := d.newItem(rm, now)
		wait := it.due.Sub(now)
		switch {
		case !live:
			d.setStateLocked(it, stParked)
			stale = true
		case wait > 0 && d.nDelayed >= maxHeldDelayed:
			secs := int(min((wait+time.Second-1)/time.Second, maxNackDelaySeconds))
			deferTo[secs] = append(deferTo[secs], it.ackID)
		case wait > 0:
			d.delayLocked(it, wait)
			if ce := d.log.Check(zapcore.DebugLevel, "delayed job is held until it is due"); ce != nil {
				ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Time("due", it.due))
			}
		default:
			d.setStateLocked(it, stQueued)
			ready = append(ready, it)
		}
	}
	if len(deferTo) > 0 {
		d.ops++
		defer d.opDone()
	}
	d.mu.Unlock()

	if len(deferTo) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		for secs, ids := range deferTo {
			if err := d.modack(ctx, ids, secs); err != nil {
				d.log.Warn("delayed messages could not be handed back until they are due",
					zap.String("pipeline", d.pipeline), zap.Int("count", len(ids)), zap.Error(err))
			}
		}
	}
	if stale {
		d.flushParked(context.Background())
	}
	d.insert(gen, ready)
}

// newItem reads a received message.
func (d *Driver) newItem(rm *pb.ReceivedMessage, now time.Time) *Item {
	m := rm.GetMessage()
	dec := decodeMessage(m, d.conf.Priority)
	it := &Item{
		drv:      d,
		ackID:    rm.GetAckId(),
		msgID:    m.GetMessageId(),
		id:       dec.ID,
		job:      dec.Job,
		priority: dec.Priority,
		payload:  dec.Payload,
		headers:  dec.Headers,
		autoAck:  dec.AutoAck,
		due:      dueAt(m, dec.Delay, now),
		attempt:  rm.GetDeliveryAttempt(),
		state:    stDone,
	}
	if len(dec.Warnings) > 0 {
		d.log.Warn("message attributes could not all be read, defaults were used", zap.String("pipeline", d.pipeline),
			zap.String("id", it.id), zap.String("message_id", it.msgID), zap.Strings("problems", dec.Warnings))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "message was received"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.String("message_id", it.msgID), zap.Int32("delivery_attempt", it.attempt))
	}
	return it
}

// insert puts queued items into the shared queue while their generation lasts; the rest are
// parked. Insert may block while the queue is full.
func (d *Driver) insert(gen uint64, items []*Item) {
	for i, it := range items {
		if !d.genIs(gen) {
			d.park(context.Background(), items[i:])
			break
		}
		d.queue.Insert(it)
	}
	if len(items) > 0 && !d.genIs(gen) {
		// Paused or stopped while inserting: take back what went in after Pause or Stop did.
		d.park(context.Background(), d.takeQueued())
	}
}

// promote moves a delayed item into the shared queue when it is due.
func (d *Driver) promote(it *Item) {
	d.mu.Lock()
	if it.state != stDelayed {
		d.mu.Unlock()
		return
	}
	it.timer = nil
	d.setStateLocked(it, stQueued)
	gen := d.gen
	d.mu.Unlock()
	d.insert(gen, []*Item{it})
}

// parkDelayedLocked parks the delayed items.
func (d *Driver) parkDelayedLocked() {
	for _, it := range d.held {
		if it.state == stDelayed {
			d.setStateLocked(it, stParked)
		}
	}
}

// takeQueued removes the pipeline's jobs from the shared queue and returns those still queued.
func (d *Driver) takeQueued() []*Item {
	removed := driverkit.RemoveFromQueue(d.queue, d.pipeline, func(it *Item) bool { return it.drv == d })
	if len(removed) == 0 {
		return nil
	}
	out := removed[:0]
	d.mu.Lock()
	for _, it := range removed {
		if it.state == stQueued {
			out = append(out, it)
		}
	}
	d.mu.Unlock()
	return out
}

// park sets queued or delayed items aside (still leased) and lets flushParked decide what becomes
// of them.
func (d *Driver) park(ctx context.Context, items []*Item) {
	if len(items) == 0 {
		return
	}
	d.mu.Lock()
	for _, it := range items {
		if it.state == stQueued || it.state == stDelayed {
			d.setStateLocked(it, stParked)
		}
	}
	d.mu.Unlock()
	d.signal()
	d.flushParked(ctx)
}

// flushParked settles the parked items (set aside by Pause or Stop, or pulled by a loop whose
// generation ended):
//   - the pipeline runs (Resume): they go back to the shared queue, or wait for their due time;
//   - it is paused: they are handed back to Pub/Sub once no Pull of this driver is in flight (so
//     that none of them takes them again), by the last loop to finish;
//   - it is stopped: they are handed back now, invisible until every Pull in flight has ended
//     (the process may exit before its loops read their responses).
func (d *Driver) flushParked(ctx context.Context) {
	d.mu.Lock()
	if d.nParked == 0 || (!d.running && !d.stopped && len(d.pulling) > 0) {
		d.mu.Unlock()
		return
	}
	var parked []*Item
	for _, it := range d.held {
		if it.state == stParked {
			parked = append(parked, it)
		}
	}
	if d.running {
		now := time.Now()
		var ready []*Item
		for _, it := range parked {
			if wait := it.due.Sub(now); wait > 0 {
				d.delayLocked(it, wait)
				continue
			}
			d.setStateLocked(it, stQueued)
			ready = append(ready, it)
		}
		gen := d.gen
		d.mu.Unlock()
		d.insert(gen, ready)
		return
	}
	minSecs := 0
	if d.stopped {
		minSecs = d.pullsEndLocked()
	}
	for _, it := range parked {
		d.setStateLocked(it, stDone)
	}
	d.mu.Unlock()
	d.handBack(ctx, parked, minSecs)
}

// pullsEndLocked is how many seconds it takes for every Pull in flight to end, plus one (0 when
// none is in flight).
func (d *Driver) pullsEndLocked() int {
	var until time.Time
	for _, t := range d.pulling {
		if t.After(until) {
			until = t
		}
	}
	wait := time.Until(until)
	if wait <= 0 {
		return 0
	}
	return int((wait+time.Second-1)/time.Second) + 1
}

// handBack nacks settled items: each is delivered again (to any consumer) when due, at the
// earliest after minSecs, at the latest after 600 s (then it is held again until due). It gives up
// when ctx ends or after opTimeout: the items then come back after their ack deadline.
func (d *Driver) handBack(ctx context.Context, items []*Item, minSecs int) {
	if len(items) == 0 {
		return
	}
	d.beginOp()
	defer d.opDone()
	d.signal()
	bySecs := map[int][]string{}
	now := time.Now()
	for _, it := range items {
		secs := int(min(max((it.due.Sub(now)+time.Second-1)/time.Second, 0), maxNackDelaySeconds))
		secs = min(max(secs, minSecs), maxNackDelaySeconds)
		bySecs[secs] = append(bySecs[secs], it.ackID)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for secs, ids := range bySecs {
		if err := d.modack(ctx, ids, secs); err != nil {
			d.log.Warn("jobs could not be handed back, they are delivered again after their ack deadline",
				zap.String("pipeline", d.pipeline), zap.Int("count", len(ids)), zap.Error(err))
			continue
		}
		if ce := d.log.Check(zapcore.DebugLevel, "jobs were handed back"); ce != nil {
			ce.Write(zap.String("pipeline", d.pipeline), zap.Int("count", len(ids)), zap.Int("visible_in_seconds", secs))
		}
	}
}

// keeper renews the ack deadline of every held message (delayed, queued, at a worker, parked)
// every third of the deadline, until the client is closed.
func (d *Driver) keeper() {
	defer d.bg.Done()
	period := d.conf.AckDeadline
	if d.subAckDeadline > 0 {
		period = min(period, d.subAckDeadline)
	}
	t := time.NewTicker(max(period/3, time.Second))
	defer t.Stop()
	secs := int(d.conf.AckDeadline / time.Second)
	failing := false
	for {
		select {
		case <-d.keepCtx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		ids := make([]string, 0, len(d.held))
		for id := range d.held {
			ids = append(ids, id)
		}
		d.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(d.keepCtx, opTimeout)
		err := d.modack(ctx, ids, secs)
		cancel()
		switch {
		case err != nil && d.keepCtx.Err() == nil && !failing:
			failing = true
			d.log.Warn("ack deadlines could not be extended; if this lasts, Pub/Sub delivers the jobs again",
				zap.String("pipeline", d.pipeline), zap.Int("count", len(ids)), zap.Error(err))
		case err == nil && failing:
			failing = false
			d.log.Info("ack deadlines are extended again", zap.String("pipeline", d.pipeline))
		}
	}
}
