package nats

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const (
	// delayedBatch is how many delayed messages one pull request asks for.
	delayedBatch = 256
	// promoteRetry is how long a delayed job that could not be moved waits before the next try.
	promoteRetry = time.Second
)

// delayLoop runs the delayed-jobs consumer from the first Run until Stop (also while the pipeline
// is paused): each delayed message is held back with NakWithDelay until it is due, then moved to
// the pipeline's subject (promote).
func (d *Driver) delayLoop() {
	defer d.bgWG.Done()
	retry := time.Duration(0)
	for d.life.Err() == nil {
		if !d.nc.IsConnected() {
			d.waitConnected(d.life)
			continue
		}
		d.mu.Lock()
		cons := d.delayCons
		d.mu.Unlock()
		err := d.fetchOnce(d.life, cons, delayedBatch, d.promote)
		if err != nil && d.life.Err() == nil {
			d.setDelayErr(err)
			d.repair(d.life, cons, err)
			retry = min(max(retry*2, 50*time.Millisecond), maxRetryWait)
			sleepCtx(d.life, retry)
			continue
		}
		retry = 0
		if err == nil {
			d.setDelayErr(nil)
		}
	}
}

// dueTime is when a delayed message may run: its rr_not_before, else its stream time plus delay.
func dueTime(j *job, stored time.Time) time.Time {
	if j.notBefore > 0 {
		return time.UnixMilli(j.notBefore)
	}
	return stored.Add(time.Duration(min(max(j.delay, 0), maxDelaySeconds)) * time.Second)
}

// promote handles one delivery of the delayed consumer. A message not due yet is held back until
// it is (NakWithDelay: the server delivers it again then). A due one is published to the
// pipeline's subject, same body and headers, with a Nats-Msg-Id derived from its sequence (so a
// second move after a lost ack is dropped by the stream), then acked and deleted.
func (d *Driver) promote(ctx context.Context, m jetstream.Msg) bool {
	meta, err := m.Metadata()
	if err != nil {
		d.log.Error("a delayed message without JetStream metadata was delivered", zap.String("pipeline", d.pipeline), zap.Error(err))
		_ = m.NakWithDelay(promoteRetry)
		return true
	}
	seq := meta.Sequence.Stream
	j := decodeJob(m.Data(), m.Headers())
	if wait := time.Until(dueTime(&j, meta.Timestamp)); wait > 0 {
		if err := m.NakWithDelay(wait); err != nil {
			d.log.Warn("delayed job could not be held back, it is delivered again after 30s",
				zap.String("pipeline", d.pipeline), zap.String("id", j.id), zap.Error(err))
		}
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	out := &nats.Msg{Subject: d.conf.Subject, Data: m.Data(), Header: natsHeaders(jobHeaders(m.Headers()))}
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	err = d.publishRaw(pctx, out, msgID("due", d.conf.Stream, seq))
	cancel()
	if err != nil {
		d.log.Warn("due job could not be moved to the subject, retrying", zap.String("pipeline", d.pipeline),
			zap.String("id", j.id), zap.Error(err))
		_ = m.NakWithDelay(promoteRetry)
		return true
	}
	if err := m.Ack(); err != nil {
		d.log.Warn("delayed message could not be acknowledged after its job was moved (a second move is dropped by the stream)",
			zap.String("pipeline", d.pipeline), zap.String("id", j.id), zap.Error(err))
		return true
	}
	d.deleteMsg(seq, j.id)
	if ce := d.log.Check(zapcore.DebugLevel, "delayed job is due"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", j.id))
	}
	return true
}

func (d *Driver) setDelayErr(err error) {
	d.mu.Lock()
	prev := d.delayErr
	d.delayErr = err
	d.mu.Unlock()
	switch {
	case err != nil && prev == nil:
		d.log.Error("delayed jobs could not be fetched, retrying", zap.String("pipeline", d.pipeline), zap.Error(err))
	case err == nil && prev != nil:
		d.log.Info("delayed jobs are fetched again", zap.String("pipeline", d.pipeline))
	}
}
