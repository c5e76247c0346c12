package boltdb

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

const (
	waitFor = 5 * time.Second
	tick    = 5 * time.Millisecond
	// quiet is how long a test watches the queue to check that nothing (more) arrives.
	quiet = 200 * time.Millisecond
)

// dbFile returns a fresh database path in the test's temporary directory.
func dbFile(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "jobs.db")
}

// openDriver opens pipeline "p1" on file; it is stopped at cleanup (a no-op if the test did).
func openDriver(t testing.TB, file string, q jobs.Queue, prefetch int) *Driver {
	t.Helper()
	return openNamed(t, "p1", q, Config{File: file, Prefetch: prefetch})
}

func openNamed(t testing.TB, name string, q jobs.Queue, conf Config) *Driver {
	t.Helper()
	d, err := Open(zap.NewNop(), name, conf, q)
	require.NoError(t, err)
	t.Cleanup(func() { stop(t, d) })
	return d
}

func stop(t testing.TB, d *Driver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
}

func run(t testing.TB, d *Driver) {
	t.Helper()
	require.NoError(t, d.Run(context.Background(), drivertest.Pipeline{"name": d.pipeline, "driver": pluginName}))
}

func msg(id string) *drivertest.Message {
	return drivertest.NewMessage(id, "job."+id, "p1", []byte("payload-"+id))
}

func push(t testing.TB, d *Driver, m *drivertest.Message) {
	t.Helper()
	require.NoError(t, d.Push(context.Background(), m))
}

func pushN(t testing.TB, d *Driver, prefix string, n int) {
	t.Helper()
	for i := range n {
		push(t, d, msg(prefix+strconv.Itoa(i)))
	}
}

// take waits for the next job and builds its context, as a poller does.
func take(t testing.TB, q *drivertest.Queue) jobs.Job {
	t.Helper()
	return drivertest.Take(t, q, waitFor)
}

// requireNothing checks that no job arrives within quiet.
func requireNothing(t testing.TB, q *drivertest.Queue) {
	t.Helper()
	drivertest.RequireNoJob(t, q, quiet)
}

func state(t testing.TB, d *Driver) *jobs.State {
	t.Helper()
	return drivertest.State(t, d)
}

// counts is (active, delayed, reserved).
type counts = drivertest.Counts

var countsOf = drivertest.CountsOf

func requireCounts(t testing.TB, d *Driver, want counts) {
	t.Helper()
	drivertest.RequireCounts(t, d, want, waitFor)
}

// fileCounts reads the number of keys in each bucket straight from a closed database file.
func fileCounts(t testing.TB, file string) map[string]int {
	t.Helper()
	db, err := openDB(file, 0o600)
	require.NoError(t, err)
	defer db.Close()
	out := map[string]int{}
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketReady, bucketInflight, bucketDelayed, bucketBroken} {
			if b := tx.Bucket(name); b != nil {
				out[string(name)] = b.Stats().KeyN
			}
		}
		return nil
	}))
	return out
}
