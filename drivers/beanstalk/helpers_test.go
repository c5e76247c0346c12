package beanstalk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/beanstalkd/go-beanstalk"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
	// quiet is how long a test watches the queue to check that nothing (more) arrives.
	quiet = 300 * time.Millisecond
)

// testAddr is the shared local beanstalkd (override with RRJOBS_BEANSTALK_ADDR, host:port).
func testAddr() string {
	return drivertest.Env("RRJOBS_BEANSTALK_ADDR", "127.0.0.1:11300")
}

// requireBeanstalk skips the test (loudly) when beanstalkd is unreachable, unless
// RRJOBS_REQUIRE_BROKERS=1, where it fails.
func requireBeanstalk(t *testing.T) {
	t.Helper()
	drivertest.RequireTCP(t, "beanstalkd", testAddr())
}

// client opens a plain beanstalkd connection for fixtures and assertions.
func client(t *testing.T) *beanstalk.Conn {
	t.Helper()
	c, err := beanstalk.DialTimeout("tcp", testAddr(), 3*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// uniqueTube returns a fresh tube name whose jobs are deleted when the test ends (after the
// drivers registered later were stopped, so nothing is reserved any more).
func uniqueTube(t *testing.T) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	tube := "rrt_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { drainTube(t, tube) })
	return tube
}

// drainTube deletes every job of tube that is not reserved.
func drainTube(t *testing.T, tube string) {
	c, err := beanstalk.DialTimeout("tcp", testAddr(), 3*time.Second)
	if err != nil {
		t.Logf("drain %s: %v", tube, err)
		return
	}
	defer c.Close()
	tb := beanstalk.NewTube(c, tube)
	for _, peek := range []func() (uint64, []byte, error){tb.PeekReady, tb.PeekDelayed, tb.PeekBuried} {
		for range 100_000 {
			id, _, err := peek()
			if err != nil {
				break
			}
			if err := c.Delete(id); err != nil {
				break
			}
		}
	}
}

func testConfig(tube string) Config {
	return Config{
		Addr:           "tcp://" + testAddr(),
		Network:        "tcp",
		Address:        testAddr(),
		Timeout:        5 * time.Second,
		Tube:           tube,
		ReserveTimeout: time.Second,
		Priority:       10,
		Prefetch:       10,
	}
}

// newDriver builds a driver for pipeline "p1" that is stopped at cleanup.
func newDriver(t *testing.T, conf Config, q jobs.Queue) *Driver {
	t.Helper()
	return newNamedDriver(t, "p1", conf, q)
}

func newNamedDriver(t *testing.T, name string, conf Config, q jobs.Queue) *Driver {
	t.Helper()
	d, err := NewDriver(zap.NewNop(), name, conf, q)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
	})
	return d
}

func run(t *testing.T, d *Driver) {
	t.Helper()
	require.NoError(t, d.Run(context.Background(), drivertest.Pipeline{"name": d.pipeline, "driver": pluginName}))
}

func msg(id string) *drivertest.Message {
	return drivertest.NewMessage(id, "job."+id, "p1", []byte("payload-"+id))
}

func push(t *testing.T, d *Driver, m *drivertest.Message) {
	t.Helper()
	require.NoError(t, d.Push(context.Background(), m))
}

// take waits for the next job and builds its context, as a poller does.
func take(t *testing.T, q *drivertest.Queue) jobs.Job {
	t.Helper()
	return drivertest.Take(t, q, waitFor)
}

// requireNothing checks that no job arrives within d.
func requireNothing(t *testing.T, q *drivertest.Queue, d time.Duration) {
	t.Helper()
	drivertest.RequireNoJob(t, q, d)
}

// counts is (active, delayed, reserved).
type counts = drivertest.Counts

func state(t *testing.T, d *Driver) *jobs.State {
	t.Helper()
	return drivertest.State(t, d)
}

func requireCounts(t *testing.T, d *Driver, want counts) {
	t.Helper()
	drivertest.RequireCounts(t, d, want, waitFor)
}

// tubeTotal is the number of jobs in tube in any state (ready, delayed, reserved, buried).
func tubeTotal(t *testing.T, tube string) int {
	t.Helper()
	st, err := beanstalk.NewTube(client(t), tube).Stats()
	if errors.Is(err, beanstalk.ErrNotFound) {
		return 0
	}
	require.NoError(t, err)
	var n int
	for _, k := range []string{"current-jobs-ready", "current-jobs-delayed", "current-jobs-reserved", "current-jobs-buried"} {
		v, err := strconv.Atoi(st[k])
		require.NoError(t, err, k)
		n += v
	}
	return n
}
