package googlepubsub

import (
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// itemState is where a received message is. Transitions happen under Driver.mu.
type itemState uint8

const (
	// stDelayed: received before its due time; held (its lease extended) until then, not in the
	// shared queue.
	stDelayed itemState = iota
	// stQueued: in (or being inserted into) the shared queue, not yet at a worker.
	stQueued
	// stReserved: taken by a worker (Context was called), not yet acked, nacked or requeued.
	stReserved
	// stParked: set aside by Pause or Stop (or pulled by a loop they ended), still leased, waiting
	// to be handed back to Pub/Sub or, after Resume, put back into the shared queue.
	stParked
	// stDone: settled (acked, nacked, requeued, handed back on Pause or Stop), or an auto_ack job
	// acknowledged when a worker took it.
	stDone
)

// Item is the google_pub_sub driver's jobs.Job: one received message, identified by its ack id
// (a redelivery is a new Item).
type Item struct {
	drv      *Driver
	ackID    string
	msgID    string // the Pub/Sub message id
	id       string
	job      string
	priority int64
	payload  []byte
	headers  map[string][]string // immutable
	autoAck  bool
	due      time.Time // zero: not delayed
	attempt  int32     // Pub/Sub delivery attempt (only with a dead-letter policy), 0 = unknown

	// Guarded by drv.mu.
	state itemState
	// autoAcked is set once an auto_ack job was acknowledged: Ack, Nack and Requeue are then no-ops.
	autoAcked bool
	timer     *time.Timer // stDelayed: fires at due (stopped when the state changes)
}

var _ jobs.Job = (*Item)(nil)

// ID returns the job id (rr_id, or the message id for a message from another producer).
func (i *Item) ID() string { return i.id }

// GroupID returns the pipeline name (used by Queue.Remove).
func (i *Item) GroupID() string { return i.drv.pipeline }

// Priority returns the job priority (rr_priority, or the pipeline's).
func (i *Item) Priority() int64 { return i.priority }

// Body returns the payload (the message data).
func (i *Item) Body() []byte { return i.payload }

// Headers returns the job headers (may be nil). Callers must not modify the map.
func (i *Item) Headers() map[string][]string { return i.headers }

// Context returns the job context JSON and marks the job as taken by a worker. An auto_ack job is
// acknowledged here: it counts as done once a worker has it, and is not run again.
func (i *Item) Context() ([]byte, error) {
	d := i.drv
	d.take(i)
	ctx := driverkit.JobContext{ID: i.id, Job: i.job, Driver: pluginName, Headers: i.headers, Queue: d.conf.Topic, Pipeline: d.pipeline}
	return ctx.Marshal()
}

// Ack acknowledges the message: it is gone from the subscription.
func (i *Item) Ack() error { return i.drv.ack(i) }

// Nack hands the message back for immediate redelivery (a Pub/Sub nack). With a dead-letter topic
// it counts as a delivery attempt, so a job that keeps failing ends up there. The jobs plugin calls
// plain Nack only when a job context cannot be built.
func (i *Item) Nack() error { return i.drv.nack(i, 0) }

// NackWithOptions with requeue hands the message back to be delivered again after delay seconds
// (a Pub/Sub nack with a delay: the ack deadline is set to the delay, at most 600 s; longer
// delays publish a copy). Without requeue the verdict is final: the message goes to the
// dead-letter topic when one is set, and is dropped otherwise.
func (i *Item) NackWithOptions(requeue bool, delay int) error {
	if !requeue {
		return i.drv.fail(i)
	}
	return i.drv.nack(i, delay)
}

// Requeue publishes a copy of the job with headers merged into its own (given keys replace
// existing ones), due after delay seconds, and then acknowledges the original. The id and
// priority are kept.
func (i *Item) Requeue(headers map[string][]string, delay int) error {
	return i.drv.requeue(i, headers, delay)
}

// wire is the job as a message, with headers and delay replaced.
func (i *Item) wire(headers map[string][]string, delay int64) *wireJob {
	return &wireJob{ID: i.id, Job: i.job, Payload: i.payload, Headers: headers, Priority: i.priority, Delay: delay, AutoAck: i.autoAck}
}
