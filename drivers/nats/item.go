package nats

import (
	"github.com/nats-io/nats.go/jetstream"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// itemState is where a received job is. Transitions happen under Driver.mu.
type itemState uint8

const (
	// stQueued: received and handed to (or being handed to) the shared queue, not yet at a worker.
	stQueued itemState = iota
	// stReserved: taken by a worker (Context was called), not yet acked, nacked or requeued.
	stReserved
	// stDone: settled (acked, nacked, requeued, handed back on Stop).
	stDone
)

// Item is the nats driver's jobs.Job: one delivered message of the pipeline's consumer. A requeue
// publishes a new message, whose delivery builds a new Item.
type Item struct {
	drv *Driver
	// seq is the message's stream sequence: it identifies the message across redeliveries.
	seq uint64
	job job
	// headers are what the worker sees: the job headers plus x-nats-subject. Immutable.
	headers map[string][]string

	// Guarded by drv.mu.
	// msg is the newest delivery of the message (a redelivery replaces it, see Driver.receive).
	msg   jetstream.Msg
	state itemState
	// acked is set for auto_ack jobs, acked on receipt: Ack/Nack/Requeue are then no-ops.
	acked bool
}

var _ jobs.Job = (*Item)(nil)

// ID returns the job id.
func (i *Item) ID() string { return i.job.id }

// GroupID returns the pipeline name (used by Queue.Remove).
func (i *Item) GroupID() string { return i.drv.pipeline }

// Priority returns the job priority (the pipeline priority when the job was pushed with 0).
func (i *Item) Priority() int64 { return i.job.priority }

// Body returns the payload.
func (i *Item) Body() []byte { return i.job.payload }

// Headers returns the job headers with x-nats-subject. Callers must not modify the map.
func (i *Item) Headers() map[string][]string { return i.headers }

// Context returns the job context JSON (queue = the stream, as with the stock driver) and marks the
// job as taken by a worker.
func (i *Item) Context() ([]byte, error) {
	d := i.drv
	d.mu.Lock()
	if i.state == stQueued {
		i.state = stReserved
	}
	d.mu.Unlock()
	ctx := driverkit.JobContext{
		ID: i.job.id, Job: i.job.name, Driver: pluginName, Headers: i.headers,
		Queue: d.conf.Stream, Pipeline: d.pipeline,
	}
	return ctx.Marshal()
}

// Ack acknowledges the message (and deletes it from the stream with delete_after_ack).
func (i *Item) Ack() error { return i.drv.ack(i) }

// Nack makes the message available again at once (a Nak), as the stock driver does: the jobs
// plugin calls plain Nack only when a job's context cannot be built, and the stock plugin also
// when a worker crashed. Nothing is lost.
func (i *Item) Nack() error { return i.drv.nak(i) }

// NackWithOptions: requeue=false terminates the message (never delivered again; deleted with
// delete_after_ack). requeue=true with delay 0 is a Nak (redelivered at once, headers kept); with
// a delay the job is published again as a delayed job (headers kept) and the message acked.
func (i *Item) NackWithOptions(requeue bool, delay int) error {
	if !requeue {
		return i.drv.term(i)
	}
	if delay <= 0 {
		return i.drv.nak(i)
	}
	return i.drv.requeue(i, nil, delay)
}

// Requeue publishes the job again with headers merged over its own (given keys replace existing
// ones), due after delay seconds, and acks the message once the stream has stored the new one.
// The id and priority are kept.
func (i *Item) Requeue(headers map[string][]string, delay int) error {
	return i.drv.requeue(i, headers, delay)
}
