package postgres

import (
	"encoding/json"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// itemState is where a fetched job is. Transitions happen under Driver.mu.
type itemState uint8

const (
	// stQueued: leased and handed to (or being handed to) the shared queue, not yet at a worker.
	stQueued itemState = iota
	// stReserved: taken by a worker (Context was called), not yet acked, nacked or requeued.
	stReserved
	// stDone: settled (acked, nacked, requeued, released on Stop), or dropped.
	stDone
)

// Item is the postgres driver's jobs.Job: one leased row. The row id and the attempt number taken
// by the fetch (the fencing token) identify the lease; a requeue ends it, and the next fetch of the
// row builds a new Item.
type Item struct {
	drv      *Driver
	rowID    int64
	token    int32 // attempts value set by the fetch that leased the row
	id       string
	job      string
	priority int64
	payload  []byte
	headers  map[string][]string // immutable
	autoAck  bool
	runAt    time.Time

	// Guarded by drv.mu.
	state itemState
	// acked is set for auto_ack jobs once their row was deleted at hand-off: Ack/Nack/Requeue are
	// then no-ops.
	acked bool
	// lost is set once a heartbeat found the lease gone (logged once).
	lost bool
}

var _ jobs.Job = (*Item)(nil)

// ID returns the job id (the job_id column).
func (i *Item) ID() string { return i.id }

// GroupID returns the pipeline name (used by Queue.Remove).
func (i *Item) GroupID() string { return i.drv.pipeline }

// Priority returns the job priority (the row's priority column).
func (i *Item) Priority() int64 { return i.priority }

// Body returns the payload bytes.
func (i *Item) Body() []byte { return i.payload }

// Headers returns the job headers (may be nil). Callers must not modify the map.
func (i *Item) Headers() map[string][]string { return i.headers }

// Context returns the job context JSON and marks the job as taken by a worker.
func (i *Item) Context() ([]byte, error) {
	d := i.drv
	d.mu.Lock()
	if i.state == stQueued {
		i.state = stReserved
	}
	d.mu.Unlock()
	ctx := driverkit.JobContext{ID: i.id, Job: i.job, Driver: pluginName, Headers: i.headers, Queue: d.conf.Queue, Pipeline: d.pipeline}
	return ctx.Marshal()
}

// Ack deletes the row.
func (i *Item) Ack() error {
	return i.drv.finish(i, "ack", i.drv.st.ack, i.rowID, i.token)
}

// Nack deletes the row, like NackWithOptions(false, 0): the jobs plugin calls plain Nack only when
// the job context cannot be built, which would fail again on every redelivery.
func (i *Item) Nack() error {
	return i.drv.finish(i, "nack", i.drv.st.ack, i.rowID, i.token)
}

// NackWithOptions makes the row due again after delay seconds (headers kept) when requeue is true;
// otherwise the row is deleted.
func (i *Item) NackWithOptions(requeue bool, delay int) error {
	if !requeue {
		return i.Nack()
	}
	return i.drv.requeue(i, nil, delay)
}

// Requeue makes the row due again after delay seconds with headers merged into the stored ones
// (given keys replace existing ones). The id and priority are kept.
func (i *Item) Requeue(headers map[string][]string, delay int) error {
	return i.drv.requeue(i, headers, delay)
}

// encodeHeaders renders headers as the JSON stored in the headers column.
func encodeHeaders(h map[string][]string) (string, error) {
	if len(h) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
