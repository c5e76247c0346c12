package googlepubsub

import (
	"context"
	"errors"
	"fmt"
	"time"

	rrerrors "github.com/roadrunner-server/errors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// take marks an item as at a worker (Context). An auto_ack job is acknowledged now.
func (d *Driver) take(it *Item) {
	d.mu.Lock()
	if it.state == stQueued {
		d.setStateLocked(it, stReserved)
	}
	autoAck := it.autoAck && !it.autoAcked && it.state == stReserved
	if autoAck {
		it.autoAcked = true
		d.setStateLocked(it, stDone)
		d.ops++
	}
	d.mu.Unlock()
	if !autoAck {
		return
	}
	defer d.opDone()
	d.signal()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := d.acknowledge(ctx, []string{it.ackID}); err != nil {
		d.log.Warn("auto_ack job could not be acknowledged, Pub/Sub may deliver it again",
			zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Error(err))
	}
}

// settle ends the life of a held item in this process: false when there is nothing to do (an
// auto_ack job, or a second verdict).
func (d *Driver) settle(it *Item) bool {
	d.mu.Lock()
	if it.autoAcked || it.state == stDone {
		d.mu.Unlock()
		return false
	}
	d.setStateLocked(it, stDone)
	d.ops++ // the caller's call to Pub/Sub; it calls opDone
	d.mu.Unlock()
	d.signal()
	return true
}

// beginOp registers a call to Pub/Sub that the client must stay open for (see closeWhenSettled).
func (d *Driver) beginOp() {
	d.mu.Lock()
	d.ops++
	d.mu.Unlock()
}

func (d *Driver) opDone() {
	d.mu.Lock()
	d.ops--
	d.mu.Unlock()
}

func (d *Driver) ack(it *Item) error {
	const op = rrerrors.Op("google_pub_sub_ack")
	if !d.settle(it) {
		return nil
	}
	defer d.opDone()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := d.acknowledge(ctx, []string{it.ackID}); err != nil {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: ack job %q: %w; Pub/Sub delivers it again after its ack deadline", pluginName, d.pipeline, it.id, err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was acked"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id))
	}
	return nil
}

// nack hands the message back to be delivered again after delay seconds. Pub/Sub takes at most
// 600 s as an ack deadline, so a longer delay publishes a copy instead.
func (d *Driver) nack(it *Item, delay int) error {
	const op = rrerrors.Op("google_pub_sub_nack")
	delay = max(delay, 0)
	if delay > maxNackDelaySeconds {
		return d.requeue(it, nil, delay)
	}
	if !d.settle(it) {
		return nil
	}
	defer d.opDone()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := d.modack(ctx, []string{it.ackID}, delay); err != nil {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: nack job %q: %w; Pub/Sub delivers it again after its ack deadline", pluginName, d.pipeline, it.id, err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was nacked"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Int("delay_seconds", delay), zap.Int32("delivery_attempt", it.attempt))
	}
	return nil
}

// fail is the final nack: the message goes to the dead-letter topic (a copy is published there,
// then the original is acknowledged), or is dropped when the pipeline has none.
func (d *Driver) fail(it *Item) error {
	const op = rrerrors.Op("google_pub_sub_nack")
	if !d.settle(it) {
		return nil
	}
	defer d.opDone()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if d.dlt == "" {
		if err := d.acknowledge(ctx, []string{it.ackID}); err != nil {
			return rrerrors.E(op, fmt.Errorf("%s pipeline %q: drop job %q: %w; Pub/Sub delivers it again after its ack deadline", pluginName, d.pipeline, it.id, err))
		}
		d.log.Warn("job was nacked without requeue and dropped (the pipeline has no dead_letter_topic)",
			zap.String("pipeline", d.pipeline), zap.String("id", it.id))
		return nil
	}
	m, err := it.wire(it.headers, 0).encode()
	if err == nil {
		_, err = d.publish(ctx, d.dlt, m)
	}
	if err != nil {
		nerr := d.modack(ctx, []string{it.ackID}, 0)
		return rrerrors.E(op, errors.Join(
			fmt.Errorf("%s pipeline %q: job %q could not be published to the dead-letter topic %s: %w; it was handed back to run again", pluginName, d.pipeline, it.id, d.dlt, err),
			nerr))
	}
	if err := d.acknowledge(ctx, []string{it.ackID}); err != nil {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: job %q was published to the dead-letter topic %s, but the original could not be acknowledged and may run again: %w", pluginName, d.pipeline, it.id, d.dlt, err))
	}
	d.log.Warn("job was nacked without requeue and sent to the dead-letter topic",
		zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.String("dead_letter_topic", d.dlt))
	return nil
}

// requeue publishes a copy with headers merged and the delay, then acknowledges the original. If
// the copy cannot be published the original is nacked with the delay instead (it keeps its old
// headers), so the job is not lost.
func (d *Driver) requeue(it *Item, headers map[string][]string, delay int) error {
	const op = rrerrors.Op("google_pub_sub_requeue")
	if !d.settle(it) {
		return nil
	}
	defer d.opDone()
	delay = min(max(delay, 0), maxDelaySeconds)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if d.retention > 0 && time.Duration(delay)*time.Second >= d.retention {
		return d.requeueFailed(ctx, op, it, delay, fmt.Errorf("a delay of %d s is not shorter than the message retention %s", delay, d.retention))
	}
	m, err := it.wire(driverkit.MergeHeaders(it.headers, headers), int64(delay)).encode()
	if err == nil {
		_, err = d.publish(ctx, d.topic, m)
	}
	if err != nil {
		return d.requeueFailed(ctx, op, it, delay, err)
	}
	if err := d.acknowledge(ctx, []string{it.ackID}); err != nil {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: job %q was requeued, but the original could not be acknowledged and may run again: %w", pluginName, d.pipeline, it.id, err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was requeued"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Int("delay_seconds", delay))
	}
	return nil
}

func (d *Driver) requeueFailed(ctx context.Context, op rrerrors.Op, it *Item, delay int, err error) error {
	secs := min(delay, maxNackDelaySeconds)
	nerr := d.modack(ctx, []string{it.ackID}, secs)
	if nerr != nil {
		return rrerrors.E(op, fmt.Errorf("%s pipeline %q: requeue job %q: %w; it could not be nacked either (%v), Pub/Sub delivers it again after its ack deadline", pluginName, d.pipeline, it.id, err, nerr))
	}
	return rrerrors.E(op, fmt.Errorf("%s pipeline %q: requeue job %q: %w; it was nacked instead and runs again in %d s without the new headers", pluginName, d.pipeline, it.id, err, secs))
}
