package memory

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// itemState is where a job is in its life. Transitions happen under Driver.mu.
type itemState uint8

const (
	// stBacklog: waiting in the driver's FIFO backlog for the dispatcher.
	stBacklog itemState = iota
	// stDelayed: waiting in the delay heap for its due time.
	stDelayed
	// stQueued: handed to (or being handed to) the shared queue, not yet taken by a worker.
	stQueued
	// stReserved: taken by a worker (Context was called), not yet acked, nacked or requeued.
	stReserved
	// stDone: finished (acked, nacked, requeued as a new item, or dropped by Stop).
	stDone
)

// Item is the memory driver's jobs.Job. An Item is owned by exactly one Driver; a requeue creates
// a new Item with the same id and priority, so late or duplicate calls on the old one are no-ops.
//
// An Item is what every queued job costs, so its fields are laid out to fit a 96-byte allocation.
type Item struct {
	drv      *Driver
	id       string
	job      string // shared by the jobs of a pipeline that have the same name (see Driver.Push)
	priority int64
	payload  []byte
	headers  map[string][]string // immutable, may be shared between jobs: a requeue builds a new map

	// Guarded by drv.mu.
	// due (nanoseconds since Driver.epoch) and seq order the delay heap; seq is compared with
	// serial-number arithmetic, so it may wrap.
	due   int64
	seq   uint32
	state itemState
	// acked is set when an auto_ack job is dispatched: it no longer holds a prefetch slot and
	// Ack/Nack/Requeue are no-ops.
	acked   bool
	autoAck bool
}

var _ jobs.Job = (*Item)(nil)

// ID returns the job id.
func (i *Item) ID() string { return i.id }

// GroupID returns the pipeline name (used by Queue.Remove).
func (i *Item) GroupID() string { return i.drv.pipeline }

// Priority returns the job priority (the pipeline priority when the job was pushed with 0).
func (i *Item) Priority() int64 { return i.priority }

// Body returns the payload bytes as pushed.
func (i *Item) Body() []byte { return i.payload }

// Headers returns the job headers (may be nil). Callers must not modify the map.
func (i *Item) Headers() map[string][]string { return i.headers }

// Context returns the job context JSON and marks the job as taken by a worker.
func (i *Item) Context() ([]byte, error) {
	d := i.drv
	d.mu.Lock()
	d.reserveLocked(i)
	d.mu.Unlock()

	if b, ok := appendContext(nil, i.id, i.job, i.headers, d.pipeline); ok {
		return b, nil
	}
	ctx := driverkit.JobContext{ID: i.id, Job: i.job, Driver: pluginName, Headers: i.headers, Queue: d.pipeline, Pipeline: d.pipeline}
	return ctx.Marshal()
}

// Ack marks the job as done and frees its prefetch slot.
func (i *Item) Ack() error {
	i.drv.finish(i, "job was acknowledged")
	return nil
}

// Nack drops the job (the memory driver's stock meaning: no redelivery) and frees its slot.
func (i *Item) Nack() error {
	i.drv.finish(i, "job was negatively acknowledged and dropped")
	return nil
}

// NackWithOptions puts the job back (after delay seconds if > 0) when requeue is true; otherwise it
// is Nack.
func (i *Item) NackWithOptions(requeue bool, delay int) error {
	if !requeue {
		return i.Nack()
	}
	return i.drv.requeue(i, nil, delay)
}

// Requeue puts the job back with headers merged in (given keys replace existing ones), after delay
// seconds if > 0. The id and priority are kept.
func (i *Item) Requeue(headers map[string][]string, delay int) error {
	return i.drv.requeue(i, headers, delay)
}
