package kafka

import (
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// itemState is where a fetched job is. Transitions happen under Driver.mu (see Driver.setState).
type itemState uint8

const (
	// stDelayed: held by the driver until its rr_delay_until time (not in the shared queue).
	stDelayed itemState = iota
	// stQueued: in (or being inserted into) the shared queue.
	stQueued
	// stReserved: taken by a worker (Context was called), not finished yet.
	stReserved
	// stDone: finished (settled), or given up by this process (Stop, partition revoked) without
	// settling, so Kafka delivers it again.
	stDone
)

// Item is the kafka driver's jobs.Job: one fetched record.
type Item struct {
	drv *Driver
	tr  *tracker
	ent *entry
	// seq orders items fetched at the same time (delay heap ties).
	seq uint64

	topic     string
	partition int32
	offset    int64

	id       string
	job      string
	priority int64
	payload  []byte
	headers  map[string][]string // immutable
	autoAck  bool
	// due is when a delayed record may run (zero: at once).
	due time.Time

	// Guarded by drv.mu.
	state   itemState
	heapIdx int
	// requeueing is set while Requeue/NackWithOptions(true) re-produces the job.
	requeueing bool
}

var _ jobs.Job = (*Item)(nil)

// ID returns the job id (the record key).
func (i *Item) ID() string { return i.id }

// GroupID returns the name of the pipeline that consumed the record (used by Queue.Remove and to
// pick the pipeline's pool).
func (i *Item) GroupID() string { return i.drv.pipeline }

// Priority returns the job priority (rr_priority, or the pipeline's).
func (i *Item) Priority() int64 { return i.priority }

// Body returns the record value.
func (i *Item) Body() []byte { return i.payload }

// Headers returns the job headers (may be nil). Callers must not modify the map.
func (i *Item) Headers() map[string][]string { return i.headers }

// Context returns the job context JSON (with the record's topic, partition and offset) and marks the
// job as taken by a worker. An auto_ack job is finished here: its offset may be committed from now.
func (i *Item) Context() ([]byte, error) {
	i.drv.taken(i)
	part, off := i.partition, i.offset
	ctx := driverkit.JobContext{
		ID: i.id, Job: i.job, Driver: pluginName, Headers: i.headers, Queue: i.topic, Pipeline: i.drv.pipeline,
		Topic: i.topic, Partition: &part, Offset: &off,
	}
	return ctx.Marshal()
}

// Ack finishes the job: its offset may be committed once every earlier record of its partition is
// finished too.
func (i *Item) Ack() error { return i.drv.finish(i, "ack") }

// Nack finishes the job without running it again, like NackWithOptions(false, 0): the jobs plugin
// calls plain Nack only when the job context cannot be built, which would fail again on every
// redelivery.
func (i *Item) Nack() error { return i.drv.finish(i, "nack") }

// NackWithOptions re-produces the job to its topic (due after delay seconds) when requeue is true,
// and only then finishes the original; otherwise it finishes the job (a final nack).
func (i *Item) NackWithOptions(requeue bool, delay int) error {
	if !requeue {
		return i.drv.finish(i, "nack")
	}
	return i.drv.requeue(i, nil, delay)
}

// Requeue re-produces the job to its topic with headers merged into its own (given keys replace
// existing ones), due after delay seconds, and only then finishes the original. The id and priority
// are kept.
func (i *Item) Requeue(headers map[string][]string, delay int) error {
	return i.drv.requeue(i, headers, delay)
}

// Respond is a no-op: Kafka jobs have no reply channel.
func (i *Item) Respond(_ []byte, _ string) error { return nil }

func (i *Item) key() tpKey { return tpKey{topic: i.topic, partition: i.partition} }

// recordJob returns the job as it is re-produced, with extra headers merged in and the given due
// time.
func (i *Item) recordJob(extra map[string][]string, due time.Time) *recordJob {
	return &recordJob{
		ID: i.id, Job: i.job, Pipeline: i.drv.pipeline, Priority: i.priority, AutoAck: i.autoAck,
		DelayUntil: due, Headers: driverkit.MergeHeaders(i.headers, extra), Payload: i.payload,
	}
}
