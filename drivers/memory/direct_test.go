package memory

import (
	"sync/atomic"
	"testing"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

// tryQueue adds the jobs plugin queue's non-blocking TryInsert to the test queue and counts the jobs
// that came in through it.
type tryQueue struct {
	*drivertest.Queue
	max    uint64
	direct atomic.Int64
}

func (q *tryQueue) TryInsert(j jobs.Job) bool {
	if q.max > 0 && q.Len() >= q.max {
		return false
	}
	q.Insert(j)
	q.direct.Add(1)
	return true
}

func newTryQueue(max uint64) *tryQueue {
	return &tryQueue{Queue: drivertest.NewQueue(max), max: max}
}

func takeIDs(t *testing.T, q *drivertest.Queue, n int) []string {
	t.Helper()
	var out []string
	for range n {
		out = append(out, take(t, q).ID())
	}
	return out
}

// A running pipeline with nothing waiting puts a pushed job straight into the shared queue.
func TestPushGoesStraightToTheQueueWhenRunning(t *testing.T) {
	q := newTryQueue(0)
	d := newTestDriver(t, q, 10)
	run(t, d)
	pushN(t, d, 3)
	require.Equal(t, int64(3), q.direct.Load())
	requireCounts(t, d, counts{3, 0, 0})
	require.Equal(t, []string{"j0", "j1", "j2"}, takeIDs(t, q.Queue, 3))
	requireCounts(t, d, counts{0, 0, 3})
}

// Not running (never started or paused): jobs wait in the backlog, nothing reaches the queue.
func TestPushDoesNotInsertWhilePaused(t *testing.T) {
	q := newTryQueue(0)
	d := newTestDriver(t, q, 10)
	pushN(t, d, 2)
	requireNothing(t, q.Queue)
	require.Zero(t, q.direct.Load())
	run(t, d)
	require.Equal(t, []string{"j0", "j1"}, takeIDs(t, q.Queue, 2))
	require.Zero(t, q.direct.Load(), "the dispatcher moved them")
}

// Once the prefetch limit holds jobs back, later pushes queue behind them: order is kept.
func TestDirectInsertNeverOvertakesTheBacklog(t *testing.T) {
	q := newTryQueue(0)
	d := newTestDriver(t, q, 2)
	run(t, d)
	pushN(t, d, 4) // j0, j1 direct; j2, j3 wait for prefetch slots
	require.Equal(t, int64(2), q.direct.Load())
	first := []jobs.Job{take(t, q.Queue), take(t, q.Queue)}
	require.Equal(t, "j0", first[0].ID())
	require.Equal(t, "j1", first[1].ID())
	requireNothing(t, q.Queue)
	push(t, d, msg("late"))
	require.Equal(t, int64(2), q.direct.Load(), "the backlog is not empty")
	for _, j := range first {
		require.NoError(t, j.Ack())
	}

	var got []string
	for range 3 {
		j := take(t, q.Queue)
		got = append(got, j.ID())
		require.NoError(t, j.Ack())
	}
	require.Equal(t, []string{"j2", "j3", "late"}, got)
}

// A full shared queue makes Push fall back to the backlog instead of blocking.
func TestPushFallsBackToTheBacklogWhenTheQueueIsFull(t *testing.T) {
	q := newTryQueue(1)
	d := newTestDriver(t, q, 10)
	run(t, d)
	pushN(t, d, 3) // j0 direct, j1 refused by the full queue, j2 behind it
	require.Equal(t, int64(1), q.direct.Load())
	require.Equal(t, []string{"j0", "j1", "j2"}, takeIDs(t, q.Queue, 3))
	requireCounts(t, d, counts{0, 0, 3})
}

// A requeued job goes straight back into the queue too, with its merged headers.
func TestRequeueInsertsDirectly(t *testing.T) {
	q := newTryQueue(0)
	d := newTestDriver(t, q, 10)
	run(t, d)
	push(t, d, msg("a"))
	j := take(t, q.Queue)
	require.NoError(t, j.Requeue(map[string][]string{"attempt": {"2"}}, 0))
	again := take(t, q.Queue)
	require.Equal(t, "a", again.ID())
	require.Equal(t, []string{"2"}, again.Headers()["attempt"])
	require.Equal(t, int64(2), q.direct.Load())
}
