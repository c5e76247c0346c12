package sqs

import (
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// itemState is where a received job is. Transitions happen under Driver.mu.
type itemState uint8

const (
	// stQueued: received and in (or on its way to) the shared queue.
	stQueued itemState = iota
	// stRunning: taken by a worker (Context was called), no verdict yet.
	stRunning
	// stDone: acked, nacked, requeued, or handed back on Stop.
	stDone
)

// Item is the sqs driver's jobs.Job: one received message.
type Item struct {
	drv       *Driver
	id        string
	job       string
	payload   []byte
	headers   map[string][]string // immutable
	priority  int64
	autoAck   bool
	receipt   string
	messageID string
	group     string   // MessageGroupId (FIFO)
	sysKeys   []string // header keys that came from SQS system attributes

	// Guarded by drv.mu.
	state itemState
	// until is when the message becomes visible again unless extended.
	until time.Time
	// lost is set once the visibility could not be extended any more (logged once).
	lost bool
}

var _ jobs.Job = (*Item)(nil)

// ID returns the job id (the rr_id attribute; a fresh UUID for a foreign message).
func (i *Item) ID() string { return i.id }

// GroupID returns the pipeline name (used by Queue.Remove).
func (i *Item) GroupID() string { return i.drv.pipeline }

// Priority returns the job priority (rr_priority, else the pipeline's).
func (i *Item) Priority() int64 { return i.priority }

// Body returns the payload.
func (i *Item) Body() []byte { return i.payload }

// Headers returns the job headers (rr_headers plus the SQS system attributes). Callers must not
// modify the map.
func (i *Item) Headers() map[string][]string { return i.headers }

// Context returns the job context JSON (queue = the SQS queue name) and marks the job as taken by
// a worker.
func (i *Item) Context() ([]byte, error) {
	d := i.drv
	d.mu.Lock()
	if i.state == stQueued {
		i.state = stRunning
	}
	d.mu.Unlock()
	ctx := driverkit.JobContext{ID: i.id, Job: i.job, Driver: pluginName, Headers: i.headers, Queue: d.conf.Queue, Pipeline: d.pipeline}
	return ctx.Marshal()
}

// Ack deletes the message. A no-op for auto_ack jobs (deleted on receipt) and repeated calls.
func (i *Item) Ack() error { return i.drv.finish(i, "ack") }

// Nack is the stock driver's failure handling: without retain_failed_jobs a copy is sent and the
// original deleted (the job runs again at once); with it the message stays and comes back after
// error_visibility_timeout, or its visibility timeout.
func (i *Item) Nack() error { return i.drv.fail(i) }

// NackWithOptions sends a copy with the delay and deletes the original when requeue is true;
// otherwise the message is deleted.
func (i *Item) NackWithOptions(requeue bool, delay int) error {
	if !requeue {
		return i.drv.finish(i, "nack")
	}
	return i.drv.requeue(i, nil, delay)
}

// Requeue sends a copy with headers merged into the job's (given keys replace existing ones) and
// the delay, then deletes the original. The id and priority are kept.
func (i *Item) Requeue(headers map[string][]string, delay int) error {
	return i.drv.requeue(i, headers, delay)
}
