package memory

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/rrjobs/jobs/drivers/drivertest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

const (
	waitFor = 5 * time.Second
	tick    = 5 * time.Millisecond
	// quiet is how long a test watches the queue to check that nothing (more) arrives.
	quiet = 200 * time.Millisecond
)

// newTestDriver returns a driver for pipeline "p1" (or name) that is stopped at cleanup.
func newTestDriver(t *testing.T, q jobs.Queue, prefetch int) *Driver {
	t.Helper()
	return newNamedDriver(t, "p1", q, Config{Priority: 10, Prefetch: prefetch})
}

func newNamedDriver(t *testing.T, name string, q jobs.Queue, conf Config) *Driver {
	t.Helper()
	d, err := NewDriver(zap.NewNop(), name, conf, q)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
	})
	return d
}

func run(t *testing.T, d *Driver) {
	t.Helper()
	require.NoError(t, d.Run(context.Background(), drivertest.Pipeline{"name": d.pipeline, "driver": "memory"}))
}

func msg(id string) *drivertest.Message {
	return drivertest.NewMessage(id, "job."+id, "p1", []byte("payload-"+id))
}

func push(t *testing.T, d *Driver, m *drivertest.Message) {
	t.Helper()
	require.NoError(t, d.Push(context.Background(), m))
}

func pushN(t *testing.T, d *Driver, n int) {
	t.Helper()
	for i := range n {
		push(t, d, msg("j"+strconv.Itoa(i)))
	}
}

// take waits for the next job and builds its context, as a poller does.
func take(t *testing.T, q *drivertest.Queue) jobs.Job {
	t.Helper()
	return drivertest.Take(t, q, waitFor)
}

// requireNothing checks that no job arrives within quiet.
func requireNothing(t *testing.T, q *drivertest.Queue) {
	t.Helper()
	drivertest.RequireNoJob(t, q, quiet)
}

func state(t *testing.T, d *Driver) *jobs.State {
	t.Helper()
	return drivertest.State(t, d)
}

// counts is (active, delayed, reserved).
type counts = drivertest.Counts

var countsOf = drivertest.CountsOf

func requireCounts(t *testing.T, d *Driver, want counts) {
	t.Helper()
	drivertest.RequireCounts(t, d, want, waitFor)
}
