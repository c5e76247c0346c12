package boltdb

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// itemState is where a handed-out job is in its life. Transitions happen under Driver.mu.
type itemState uint8

const (
	// stTaking: read from ready, its transaction not yet committed.
	stTaking itemState = iota
	// stQueued: handed to (or being handed to) the shared queue, not yet taken by a worker.
	stQueued
	// stReserved: taken by a worker (Context was called), not yet acked, nacked or requeued.
	stReserved
	// stDone: finished (acked, nacked, requeued as a new record, or removed from the queue by Stop).
	stDone
)

// Item is the boltdb driver's jobs.Job: a job moved to in-flight in the file under key seq.
// A requeue writes a new record, so late or duplicate calls on the old Item are no-ops.
type Item struct {
	drv      *Driver
	seq      uint64
	id       string
	job      string
	priority int64
	payload  []byte
	headers  map[string][]string // immutable: a requeue writes a new record with merged headers

	// Guarded by drv.mu.
	state itemState
	// acked is set for auto_ack jobs: deleted from the file at hand-off, they hold no prefetch slot
	// and Ack/Nack/Requeue are no-ops.
	acked bool
	// busy is set while an Ack/Nack/Requeue of this item is being committed.
	busy bool
}

var _ jobs.Job = (*Item)(nil)

func (d *Driver) newItem(rec *record, seq uint64) *Item {
	return &Item{
		drv:      d,
		seq:      seq,
		id:       rec.id,
		job:      rec.job,
		priority: rec.priority,
		payload:  rec.payload,
		headers:  rec.headers,
		state:    stTaking,
		acked:    rec.autoAck,
	}
}

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

	ctx := driverkit.JobContext{ID: i.id, Job: i.job, Driver: pluginName, Headers: i.headers, Queue: d.pipeline, Pipeline: d.pipeline}
	return ctx.Marshal()
}

// Ack deletes the job from the file and returns once that is durable: an acknowledged job never
// comes back.
func (i *Item) Ack() error {
	return i.drv.finish(i, "acknowledged")
}

// Nack puts the job back: it is delivered again after nackDelaySeconds, keeping its headers. A
// durable driver does not drop a job on a plain Nack (the jobs plugin uses it for internal
// failures); a worker that wants the job gone nacks with requeue=false.
func (i *Item) Nack() error {
	return i.drv.requeue(i, nil, nackDelaySeconds, false, "negatively acknowledged and put back")
}

// NackWithOptions puts the job back (after delay seconds if > 0) keeping its headers when
// requeue is true; otherwise the worker asked to drop it and it is deleted from the file.
func (i *Item) NackWithOptions(requeue bool, delay int) error {
	if !requeue {
		return i.drv.finish(i, "negatively acknowledged and dropped")
	}
	return i.drv.requeue(i, nil, delay, true, "negatively acknowledged and requeued")
}

// Requeue rewrites the job with headers merged in (given keys replace existing ones), after delay
// seconds if > 0, atomically with removing it from in-flight. The id and priority are kept.
func (i *Item) Requeue(headers map[string][]string, delay int) error {
	return i.drv.requeue(i, headers, delay, true, "requeued")
}
