package sqs

import (
	"context"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// minExtendPeriod keeps the extension from spinning with a 1-second visibility timeout.
const minExtendPeriod = 100 * time.Millisecond

// extendLoop keeps the messages of held jobs invisible: every visibility/3 it extends, by the full
// visibility timeout, those with less than two thirds of it left. It runs from the first Run to
// Stop.
func (d *Driver) extendLoop() {
	defer d.bgWG.Done()
	if d.visibility <= 0 {
		return
	}
	vt := time.Duration(d.visibility) * time.Second
	t := time.NewTicker(max(vt/3, minExtendPeriod))
	defer t.Stop()
	for {
		select {
		case <-d.life.Done():
			return
		case <-t.C:
		}
		d.extendDue(vt)
	}
}

// extendDue extends the visibility of the held jobs that need it.
func (d *Driver) extendDue(vt time.Duration) {
	now := time.Now()
	d.mu.Lock()
	var due []*Item
	for it := range d.held {
		if !it.autoAck && !it.lost && it.state != stDone && it.until.Sub(now) < vt*2/3 {
			due = append(due, it)
		}
	}
	d.mu.Unlock()
	for len(due) > 0 {
		n := min(len(due), batchSize)
		d.extendBatch(due[:n], now)
		due = due[n:]
	}
}

func (d *Driver) extendBatch(items []*Item, started time.Time) {
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(items))
	for i, it := range items {
		entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(it.receipt), VisibilityTimeout: int32(d.visibility), //nolint:gosec // <= 43200
		}
	}
	ctx, cancel := context.WithTimeout(d.life, opTimeout)
	defer cancel()
	out, err := d.client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(d.queueURL), Entries: entries})
	if err != nil {
		if d.life.Err() == nil {
			d.log.Warn("job visibility could not be extended, retrying", zap.String("pipeline", d.pipeline), zap.Int("count", len(items)), zap.Error(err))
		}
		return
	}
	until := started.Add(time.Duration(d.visibility) * time.Second)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ok := range out.Successful {
		if i, err := strconv.Atoi(aws.ToString(ok.Id)); err == nil && i < len(items) {
			items[i].until = until
		}
	}
	for _, bad := range out.Failed {
		i, err := strconv.Atoi(aws.ToString(bad.Id))
		if err != nil || i >= len(items) {
			continue
		}
		it := items[i]
		if it.state == stDone || it.lost {
			continue // settled meanwhile: the message is gone
		}
		switch aws.ToString(bad.Code) {
		case "ReceiptHandleIsInvalid", "InvalidParameterValue", "AWS.SimpleQueueService.MessageNotInflight":
			it.lost = true
			d.log.Warn("job visibility could not be extended any more: another consumer may run it too",
				zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.String("code", aws.ToString(bad.Code)),
				zap.String("reason", aws.ToString(bad.Message)))
		default:
			d.log.Warn("job visibility could not be extended, retrying", zap.String("pipeline", d.pipeline),
				zap.String("id", it.id), zap.String("code", aws.ToString(bad.Code)), zap.String("reason", aws.ToString(bad.Message)))
		}
	}
}

// takeFromQueue takes this pipeline's jobs out of the shared queue (on Stop) and settles them.
func (d *Driver) takeFromQueue() []*Item {
	items := driverkit.RemoveFromQueue(d.pq, d.pipeline, func(it *Item) bool { return it.drv == d })
	out := items[:0]
	for _, it := range items {
		if d.settle(it) {
			out = append(out, it)
		}
	}
	return out
}

// handBackItems returns the messages of jobs taken out of the shared queue: visible again at once,
// or, for auto_ack jobs whose message was deleted on receipt, sent again. It returns how many were
// handed back. The calls are bounded by ctx (a message not made visible comes back after its
// visibility timeout anyway).
func (d *Driver) handBackItems(ctx context.Context, items []*Item) int {
	var visible []*Item
	resent := 0
	for _, it := range items {
		if !it.autoAck {
			visible = append(visible, it)
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, opTimeout)
		o := outgoing{id: it.id, job: it.job, payload: it.payload, headers: stripKeys(it.headers, it.sysKeys), priority: it.priority, autoAck: true}
		group := it.group
		if group == "" {
			group = d.conf.MessageGroupID
		}
		err := d.send(sctx, o, group, newUUID())
		cancel()
		if err != nil {
			d.log.Error("auto_ack job taken out of the queue on stop could not be sent back: it is lost",
				zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Error(err))
			continue
		}
		resent++
	}
	for len(visible) > 0 {
		n := min(len(visible), batchSize)
		resent += d.makeVisible(ctx, visible[:n])
		visible = visible[n:]
	}
	return resent
}

// makeVisible sets the visibility timeout of items' messages to 0.
func (d *Driver) makeVisible(ctx context.Context, items []*Item) int {
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(items))
	for i, it := range items {
		entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(it.receipt)}
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	out, err := d.client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(d.queueURL), Entries: entries})
	if err != nil {
		d.log.Warn("jobs taken out of the queue could not be made visible again: they are delivered again after their visibility timeout",
			zap.String("pipeline", d.pipeline), zap.Int("count", len(items)), zap.Error(err))
		return 0
	}
	return len(out.Successful)
}

// stripKeys returns h without keys (a copy; h is not modified).
func stripKeys(h map[string][]string, keys []string) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}
