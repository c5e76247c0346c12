package nats

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// consumeLoop pulls messages of the pipeline's consumer and feeds the shared queue until ctx ends
// (Pause / Stop). It asks for at most the free prefetch slots, so this process never holds more
// than prefetch jobs; the consumer's MaxAckPending (= prefetch) also caps the delivered,
// unacknowledged messages on the server side, across every rr instance sharing the consumer.
func (d *Driver) consumeLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	retry := time.Duration(0)
	for {
		d.waitSlot(ctx)
		if ctx.Err() != nil {
			break
		}
		if !d.nc.IsConnected() {
			d.waitConnected(ctx)
			continue
		}
		d.mu.Lock()
		cons := d.mainCons
		d.mu.Unlock()
		err := d.fetchOnce(ctx, cons, d.freeSlots(), d.receive)
		if err != nil && ctx.Err() == nil {
			d.setFetchErr(err)
			d.repair(ctx, cons, err)
			retry = min(max(retry*2, 50*time.Millisecond), maxRetryWait)
			sleepCtx(ctx, retry)
			continue
		}
		retry = 0
		if err == nil {
			d.setFetchErr(nil)
		}
	}
	if d.isStopped() {
		d.dropFromQueue()
	}
}

// fetchOnce sends one pull request for up to n messages and hands each one to handle as it
// arrives. The request is never abandoned: it ends when the batch is complete or when the server
// expires it after fetchWait, so Pause and Stop take up to fetchWait. Messages that arrive after
// ctx ended (or that handle did not take) are handed back (Nak) only once the request is over:
// nats-server 2.9 mishandles a redelivery that finds only an abandoned pull request (it skips the
// message until ack_wait and rewinds the consumer, delivering another message twice).
func (d *Driver) fetchOnce(ctx context.Context, cons jetstream.Consumer, n int,
	handle func(context.Context, jetstream.Msg) bool) error {
	if n <= 0 {
		return nil
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return err
	}
	var leftovers []jetstream.Msg
	for m := range batch.Messages() {
		if ctx.Err() != nil || !handle(ctx, m) {
			leftovers = append(leftovers, m)
		}
	}
	for _, m := range leftovers {
		_ = m.Nak()
	}
	if err := batch.Error(); err != nil && !benignFetchError(err) {
		return err
	}
	return nil
}

// benignFetchError: a pull request that expired or found nothing.
func benignFetchError(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages)
}

// waitConnected waits a moment (or for ctx) while the connection is down: pull requests sent
// while disconnected would reach the server after the reconnect, abandoned.
func (d *Driver) waitConnected(ctx context.Context) {
	sleepCtx(ctx, 100*time.Millisecond)
}

// waitSlot waits until fewer than prefetch jobs are held (or ctx ends).
func (d *Driver) waitSlot(ctx context.Context) {
	for d.freeSlots() <= 0 {
		if ce := d.log.Check(zapcore.DebugLevel, "prefetch limit was reached, waiting for the jobs to be processed"); ce != nil {
			ce.Write(zap.String("pipeline", d.pipeline), zap.Int("prefetch", d.conf.Prefetch))
		}
		select {
		case <-d.wake:
		case <-ctx.Done():
			return
		}
	}
}

// repair recreates the stream and the consumers when a fetch failed because they are gone
// (deleted by an operator, or a server that lost its storage).
func (d *Driver) repair(ctx context.Context, cons jetstream.Consumer, cause error) {
	if !d.nc.IsConnected() {
		return
	}
	ictx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err := cons.Info(ictx)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return
	}
	d.log.Warn("the stream or consumer is gone, creating it again", zap.String("pipeline", d.pipeline),
		zap.String("stream", d.conf.Stream), zap.NamedError("cause", cause), zap.Error(err))
	// nats-server 2.9 mishandles a stream created again right after it was deleted (its consumers
	// get pull requests but deliver nothing): give the deletion time to finish.
	if errors.Is(err, jetstream.ErrStreamNotFound) && !sleepCtx(ctx, 2*time.Second) {
		return
	}
	sctx, scancel := context.WithTimeout(ctx, setupTimeout)
	defer scancel()
	if err := d.setup(sctx); err != nil {
		d.log.Error("the stream or consumer could not be created again", zap.String("pipeline", d.pipeline), zap.Error(err))
	}
}

// freeSlots is how many more jobs the fetch loop may take.
func (d *Driver) freeSlots() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conf.Prefetch - len(d.held)
}

// receive turns a delivered message into an Item and inserts it into the shared queue. A
// redelivery of a message this process still holds (its ack wait ran out while the connection was
// down) only replaces the held delivery, so the job does not run twice here.
func (d *Driver) receive(ctx context.Context, m jetstream.Msg) bool {
	meta, err := m.Metadata()
	if err != nil {
		d.log.Error("a message without JetStream metadata was delivered, it is delivered again later",
			zap.String("pipeline", d.pipeline), zap.String("subject", m.Subject()), zap.Error(err))
		return false
	}
	seq := meta.Sequence.Stream
	d.mu.Lock()
	if it, ok := d.held[seq]; ok {
		it.msg = m
		d.mu.Unlock()
		_ = m.InProgress()
		d.log.Debug("job was delivered again while it is still held, keeping the running copy",
			zap.String("pipeline", d.pipeline), zap.String("id", it.job.id), zap.Uint64("seq", seq))
		return true
	}
	d.mu.Unlock()

	j := decodeJob(m.Data(), m.Headers())
	if j.priority <= 0 {
		j.priority = d.conf.Priority
	}
	if j.foreign {
		d.log.Debug("message is not a RoadRunner job, its body is delivered as the payload",
			zap.String("pipeline", d.pipeline), zap.String("id", j.id), zap.Uint64("seq", seq))
	}
	hdrs := make(map[string][]string, len(j.headers)+1)
	for k, v := range j.headers {
		hdrs[k] = v
	}
	hdrs[subjectHeader] = []string{m.Subject()}
	it := &Item{drv: d, seq: seq, job: j, headers: hdrs, msg: m}

	if !d.limiter.wait(ctx, messageBits(m)) {
		return false
	}
	if j.autoAck {
		// auto_ack: acked when handed over; later Ack/Nack/Requeue are no-ops.
		if err := m.Ack(); err != nil {
			d.log.Error("auto_ack job could not be acknowledged, it is delivered again after ack_wait",
				zap.String("pipeline", d.pipeline), zap.String("id", j.id), zap.Error(err))
			return true
		}
		if d.conf.DeleteAfterAck {
			d.deleteMsg(seq, j.id)
		}
		it.acked = true
		it.state = stDone
	} else {
		d.mu.Lock()
		if d.consume.Stopped() {
			d.mu.Unlock()
			return false
		}
		d.held[seq] = it
		d.mu.Unlock()
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was received"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", j.id), zap.Uint64("seq", seq), zap.Uint64("delivered", meta.NumDelivered))
	}
	d.queue.Insert(it)
	return true
}

// messageBits is the size the rate limit counts: body and headers, in bits.
func messageBits(m jetstream.Msg) int {
	n := len(m.Data())
	for k, vs := range m.Headers() {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n * 8
}

// heartbeat sends a progress signal (InProgress) for every held message every ack_wait/3, so the
// server does not redeliver jobs that wait in the shared queue or run for long. It runs from the
// first Run until Stop.
func (d *Driver) heartbeat() {
	defer d.bgWG.Done()
	t := time.NewTicker(max(d.conf.AckWait/3, 50*time.Millisecond))
	defer t.Stop()
	var msgs []jetstream.Msg
	for {
		select {
		case <-d.life.Done():
			return
		case <-t.C:
		}
		if !d.nc.IsConnected() {
			continue
		}
		msgs = msgs[:0]
		d.mu.Lock()
		for _, it := range d.held {
			msgs = append(msgs, it.msg)
		}
		d.mu.Unlock()
		for _, m := range msgs {
			if err := m.InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) && d.life.Err() == nil {
				d.log.Debug("progress signal failed", zap.String("pipeline", d.pipeline), zap.Error(err))
			}
		}
	}
}

// dropFromQueue takes this pipeline's jobs out of the shared queue and hands them back to the
// server (Nak: delivered again at once). Call it only when no pull request of the pipeline is
// pending (see fetchOnce); see takeFromQueue.
func (d *Driver) dropFromQueue() int {
	return d.handBack(d.takeFromQueue())
}

// takeFromQueue takes this pipeline's jobs out of the shared queue and settles them, returning
// their deliveries for handBack.
func (d *Driver) takeFromQueue() []*Item {
	items := driverkit.RemoveFromQueue(d.queue, d.pipeline, func(it *Item) bool { return it.drv == d })
	out := items[:0]
	d.mu.Lock()
	for _, it := range items {
		if it.acked || it.state != stQueued {
			continue
		}
		it.state = stDone
		delete(d.held, it.seq)
		out = append(out, it)
	}
	d.mu.Unlock()
	d.signal()
	return out
}

// handBack Naks taken jobs.
func (d *Driver) handBack(items []*Item) int {
	for _, it := range items {
		d.mu.Lock()
		m := it.msg
		d.mu.Unlock()
		if err := m.Nak(); err != nil {
			d.log.Warn("job could not be handed back, it is delivered again after ack_wait",
				zap.String("pipeline", d.pipeline), zap.String("id", it.job.id), zap.Error(err))
		}
	}
	return len(items)
}

// settle ends a held job's life in this process and returns its newest delivery; false when it
// was already settled (or is an auto_ack job), in which case the caller does nothing.
func (d *Driver) settle(it *Item) (jetstream.Msg, bool) {
	d.mu.Lock()
	if it.acked || it.state == stDone {
		d.mu.Unlock()
		return nil, false
	}
	it.state = stDone
	if d.held[it.seq] == it {
		delete(d.held, it.seq)
	}
	m := it.msg
	d.mu.Unlock()
	d.signal()
	return m, true
}

// ack implements Item.Ack.
func (d *Driver) ack(it *Item) error {
	m, ok := d.settle(it)
	if !ok {
		return nil
	}
	if err := m.Ack(); err != nil {
		return d.jobErr("ack", it, err, "it is delivered again after ack_wait")
	}
	if d.conf.DeleteAfterAck {
		d.deleteMsg(it.seq, it.job.id)
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was acknowledged"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.job.id))
	}
	return nil
}

// nak implements Item.Nack and NackWithOptions(true, 0): the message is delivered again at once.
func (d *Driver) nak(it *Item) error {
	m, ok := d.settle(it)
	if !ok {
		return nil
	}
	if err := m.Nak(); err != nil {
		return d.jobErr("nack", it, err, "it is delivered again after ack_wait")
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was negatively acknowledged, it is delivered again"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.job.id))
	}
	return nil
}

// term implements NackWithOptions(false, _): the message is never delivered again.
func (d *Driver) term(it *Item) error {
	m, ok := d.settle(it)
	if !ok {
		return nil
	}
	if err := m.Term(); err != nil {
		return d.jobErr("terminate", it, err, "it is delivered again after ack_wait")
	}
	if d.conf.DeleteAfterAck {
		d.deleteMsg(it.seq, it.job.id)
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was negatively acknowledged and dropped"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.job.id))
	}
	return nil
}

// requeue implements Requeue and NackWithOptions(true, delay > 0): the job is published again
// (with the merged headers; to the delayed subject when delay > 0), and only once the stream
// acknowledged that publish is the old message acked. The publish carries a Nats-Msg-Id derived
// from the old message, so if the old message comes back (its ack was lost) and is requeued again,
// the stream keeps one copy. If the publish fails, the old message is Nak'd with the delay
// instead (the job is kept, without the new headers).
func (d *Driver) requeue(it *Item, headers map[string][]string, delay int) error {
	d.mu.Lock()
	acked := it.acked
	d.mu.Unlock()
	if acked {
		return nil // auto_ack: the job counts as done
	}
	m, ok := d.settle(it)
	if !ok {
		return d.jobErr("requeue", it, errors.New("the job was already acknowledged or requeued"), "nothing was changed")
	}
	j := it.job
	j.headers = driverkit.MergeHeaders(it.job.headers, headers)
	j.delay = int64(min(max(delay, 0), maxDelaySeconds))
	j.notBefore = 0
	subject := d.conf.Subject
	if j.delay > 0 {
		j.notBefore = time.Now().Add(time.Duration(j.delay) * time.Second).UnixMilli()
		subject = d.delayed
	}
	err := d.publish(context.Background(), &j, subject, msgID("requeue", d.conf.Stream, it.seq))
	if err != nil {
		if nerr := m.NakWithDelay(time.Duration(j.delay) * time.Second); nerr != nil {
			return d.jobErr("requeue", it, errors.Join(err, nerr), "it is delivered again after ack_wait")
		}
		return d.jobErr("requeue", it, err, "it was negatively acknowledged instead: delivered again after the delay, without the new headers")
	}
	if err := m.Ack(); err != nil {
		d.log.Warn("job was requeued, but the old message could not be acknowledged: it may run once more after ack_wait",
			zap.String("pipeline", d.pipeline), zap.String("id", it.job.id), zap.Error(err))
	} else if d.conf.DeleteAfterAck {
		d.deleteMsg(it.seq, it.job.id)
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was requeued"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.job.id), zap.Int64("delay_seconds", j.delay))
	}
	return nil
}

// msgID is the Nats-Msg-Id of a message the driver publishes in place of stream message seq.
func msgID(what, stream string, seq uint64) string {
	return "rrjobs:" + what + ":" + stream + ":" + uitoa(seq)
}

func uitoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// deleteMsg removes a settled message from the stream (delete_after_ack, delayed originals).
func (d *Driver) deleteMsg(seq uint64, id string) {
	d.mu.Lock()
	s := d.stream
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		d.log.Warn("message could not be deleted from the stream", zap.String("pipeline", d.pipeline),
			zap.String("id", id), zap.Uint64("seq", seq), zap.Error(err))
	}
}

func (d *Driver) jobErr(what string, it *Item, err error, consequence string) error {
	return &jobError{pipeline: d.pipeline, what: what, id: it.job.id, err: err, consequence: consequence}
}

type jobError struct {
	pipeline, what, id, consequence string
	err                             error
}

func (e *jobError) Error() string {
	return "nats pipeline \"" + e.pipeline + "\": " + e.what + " job \"" + e.id + "\": " + e.err.Error() + "; " + e.consequence
}

func (e *jobError) Unwrap() error { return e.err }

func (d *Driver) setFetchErr(err error) {
	d.mu.Lock()
	prev := d.fetchErr
	d.fetchErr = err
	d.mu.Unlock()
	switch {
	case err != nil && prev == nil:
		d.log.Error("jobs could not be fetched, retrying", zap.String("pipeline", d.pipeline), zap.Error(err))
	case err == nil && prev != nil:
		d.log.Info("jobs are fetched again", zap.String("pipeline", d.pipeline))
	}
}
