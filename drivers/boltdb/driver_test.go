package boltdb

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

func TestPushDeliversContextAndBody(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := openDriver(t, dbFile(t), q, 0)
	run(t, d)

	m := msg("id-1")
	m.Hdrs = map[string][]string{"h": {"v"}, "Traceparent": {"00-1-2-01"}}
	push(t, d, m)

	j, ok := q.ExtractMinTimeout(waitFor)
	require.True(t, ok)
	require.Equal(t, "id-1", j.ID())
	require.Equal(t, "p1", j.GroupID())
	require.Equal(t, int64(10), j.Priority(), "priority 0 inherits the pipeline priority")
	require.Equal(t, []byte("payload-id-1"), j.Body())
	require.Equal(t, m.Hdrs, j.Headers())
	ctx, err := j.Context()
	require.NoError(t, err)
	require.JSONEq(t,
		`{"id":"id-1","job":"job.id-1","driver":"boltdb","headers":{"Traceparent":["00-1-2-01"],"h":["v"]},"queue":"p1","pipeline":"p1"}`,
		string(ctx))
	require.NoError(t, j.Ack())

	// No headers: "headers":{}; an explicit priority is kept; the body is untouched.
	body := []byte{0x00, 0xff, '"', '\n'}
	push(t, d, &drivertest.Message{JobID: "id-2", Job: "raw", Pipeline: "p1", Prio: 3, Body: body})
	j = take(t, q)
	require.Equal(t, int64(3), j.Priority())
	require.Equal(t, body, j.Body())
	ctx, err = j.Context()
	require.NoError(t, err)
	require.Equal(t, `{"id":"id-2","job":"raw","driver":"boltdb","headers":{},"queue":"p1","pipeline":"p1"}`, string(ctx))
	var decoded map[string]any
	require.NoError(t, json.Unmarshal(ctx, &decoded))
	require.NoError(t, j.Ack())
	require.NoError(t, j.Ack(), "a second Ack is a no-op")
	requireCounts(t, d, counts{0, 0, 0})
}

func TestFIFOOrderAndDuplicateIDsAreKept(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := openDriver(t, dbFile(t), q, 0)
	pushN(t, d, "j", 1500)
	push(t, d, msg("j0")) // same id again: a second job, not an overwrite
	require.Equal(t, int64(1501), state(t, d).Active)
	run(t, d)
	for i := range 1500 {
		j := take(t, q)
		require.Equal(t, "j"+strconv.Itoa(i), j.ID())
		require.NoError(t, j.Ack())
	}
	require.Equal(t, "j0", take(t, q).ID())
}

// The crash-recovery contract: jobs handed out and not acknowledged are marked in flight in the
// file and come back exactly once on the next open; acknowledged ones never do.
func TestRestartRecoversInFlightExactlyOnce(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openDriver(t, file, q, 4)
	pushN(t, d, "j", 10)
	run(t, d)

	taken := []jobs.Job{take(t, q), take(t, q), take(t, q)} // at a worker
	require.NoError(t, taken[0].Ack())
	// 4 were handed out, the ack freed a slot for a 5th: 5 ready + 2 queued, 2 at a worker.
	requireCounts(t, d, counts{7, 0, 2})
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick, "prefetch 4: two more wait in the shared queue")

	// "Crash": close the file without acknowledging anything else. Stop does not touch the file's
	// in-flight bucket: the 2 at a worker and the 2 in the queue stay marked in flight.
	stop(t, d)
	require.Equal(t, 0, q.CountGroup("p1"), "Stop removes its jobs from the shared queue")
	require.Error(t, taken[1].Ack(), "an Ack after Stop cannot reach the file")
	fc := fileCounts(t, file)
	require.Equal(t, 4, fc[string(bucketInflight)], "taken jobs are marked in flight on disk")
	require.Equal(t, 5, fc[string(bucketReady)])

	q2 := drivertest.NewQueue(0)
	d2 := openDriver(t, file, q2, 0)
	requireCounts(t, d2, counts{9, 0, 0})
	require.Equal(t, 0, fileCounts2(t, d2)[string(bucketInflight)], "in-flight jobs went back to ready at open")
	run(t, d2)
	var got []string
	for range 9 {
		j := take(t, q2)
		got = append(got, j.ID())
		require.NoError(t, j.Ack())
	}
	requireNothing(t, q2)
	// The in-flight jobs keep their place at the front; the acked j0 never comes back.
	require.Equal(t, []string{"j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8", "j9"}, got)
	requireCounts(t, d2, counts{0, 0, 0})

	// And nothing comes back a third time.
	stop(t, d2)
	d3 := openDriver(t, file, drivertest.NewQueue(0), 0)
	requireCounts(t, d3, counts{0, 0, 0})
}

// The file as a crash leaves it (no Stop, no close): copied while the driver is open and idle,
// then opened elsewhere. Every commit is fsync'd, so the copy is what a restart would read.
func TestCrashImageRecoversInFlight(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openDriver(t, file, q, 3)
	pushN(t, d, "j", 6)
	run(t, d)
	a, b := take(t, q), take(t, q)
	require.NoError(t, a.Ack())
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick) // prefetch 3: b + 2 queued
	requireCounts(t, d, counts{4, 0, 1})

	img, err := os.ReadFile(file)
	require.NoError(t, err)
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	require.NoError(t, os.WriteFile(crashed, img, 0o600))

	q2 := drivertest.NewQueue(0)
	d2 := openDriver(t, crashed, q2, 0)
	requireCounts(t, d2, counts{5, 0, 0})
	run(t, d2)
	var got []string
	for range 5 {
		j := take(t, q2)
		got = append(got, j.ID())
		require.NoError(t, j.Ack())
	}
	requireNothing(t, q2)
	require.Equal(t, []string{"j1", "j2", "j3", "j4", "j5"}, got, "in-flight jobs first, the acked one never")
	require.Equal(t, "j1", b.ID())
}

// fileCounts2 reads bucket sizes through an open driver's database.
func fileCounts2(t *testing.T, d *Driver) map[string]int {
	t.Helper()
	out := map[string]int{}
	require.NoError(t, d.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketReady, bucketInflight, bucketDelayed, bucketBroken} {
			out[string(name)] = tx.Bucket(name).Stats().KeyN
		}
		return nil
	}))
	return out
}

// Several jobs due in the same second must all survive (stock keyed them by the due second and
// overwrote all but one), and many due at once are delivered together, not one per tick.
func TestDelaysSameSecondAndOneTimer(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := openDriver(t, dbFile(t), q, 0)
	run(t, d)
	pushed := time.Now()
	const n = 300
	for i := range n {
		m := msg("d" + strconv.Itoa(i))
		m.DelaySeconds = 1
		push(t, d, m)
	}
	late := msg("late")
	late.DelaySeconds = 2
	push(t, d, late)
	require.Equal(t, counts{0, n + 1, 0}, countsOf(state(t, d)))
	requireNothing(t, q)

	seen := map[string]bool{}
	for range n {
		j := take(t, q)
		require.False(t, seen[j.ID()], "duplicate %s", j.ID())
		seen[j.ID()] = true
		require.NoError(t, j.Ack())
	}
	elapsed := time.Since(pushed)
	require.GreaterOrEqual(t, elapsed, 900*time.Millisecond, "delay honoured")
	require.Less(t, elapsed, 2*time.Second, "all jobs due at once are delivered together")
	require.Equal(t, int64(1), state(t, d).Delayed)
	require.Equal(t, "late", take(t, q).ID())
	require.GreaterOrEqual(t, time.Since(pushed), 1900*time.Millisecond)
}

func TestDelayedJobsSurviveRestartAndRunWhilePaused(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openDriver(t, file, q, 0)
	m := msg("soon")
	m.DelaySeconds = 1
	push(t, d, m)
	far := msg("far")
	far.DelaySeconds = 3600
	push(t, d, far)
	stop(t, d)

	d2 := openDriver(t, file, q, 0)
	require.Equal(t, counts{0, 2, 0}, countsOf(state(t, d2)))
	// Not consuming: a due job moves from Delayed to Active but is not handed out.
	requireCounts(t, d2, counts{1, 1, 0})
	requireNothing(t, q)
	run(t, d2)
	j := take(t, q)
	require.Equal(t, "soon", j.ID())
	require.NoError(t, j.Ack())
	requireCounts(t, d2, counts{0, 1, 0})
}

func TestPriorityIsCarriedAndPersisted(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openNamed(t, "p1", q, Config{File: file, Priority: 5})
	push(t, d, msg("inherit"))
	urgent := msg("urgent")
	urgent.Prio = 1
	push(t, d, urgent)
	low := msg("low")
	low.Prio = 50
	push(t, d, low)
	stop(t, d)

	d2 := openNamed(t, "p1", q, Config{File: file, Priority: 5})
	run(t, d2)
	require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, tick)
	// The shared queue orders by priority; the driver hands jobs over in push order.
	var order []string
	var prios []int64
	for range 3 {
		j := take(t, q)
		order = append(order, j.ID())
		prios = append(prios, j.Priority())
		require.NoError(t, j.Ack())
	}
	require.Equal(t, []string{"urgent", "inherit", "low"}, order)
	require.Equal(t, []int64{1, 5, 50}, prios)
}

func TestPrefetchLimit(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := openDriver(t, dbFile(t), q, 3)
	pushN(t, d, "j", 10)
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, tick)
	require.Never(t, func() bool { return q.Len() != 3 }, quiet, tick, "nothing more while 3 are out")
	j := take(t, q)
	require.Equal(t, uint64(2), q.Len(), "a job at a worker still holds its slot")
	require.NoError(t, j.Ack())
	require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, tick)
	requireCounts(t, d, counts{9, 0, 0})

	// auto_ack jobs do not hold a slot.
	for i := range 5 {
		m := msg("aa" + strconv.Itoa(i))
		m.AutoAckFlag = true
		push(t, d, m)
	}
	for range 14 {
		require.NoError(t, take(t, q).Ack())
	}
	requireNothing(t, q)
	requireCounts(t, d, counts{0, 0, 0})
}

func TestPauseResume(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := openDriver(t, dbFile(t), q, 2)
	require.ErrorContains(t, d.Pause(context.Background(), "p1"), "no active listeners")
	run(t, d)
	require.ErrorContains(t, d.Run(context.Background(), nil), "already running")
	pushN(t, d, "a", 4) // 2 go out (prefetch), 2 wait
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick)

	// Pause returns at once even though the dispatcher waits at the prefetch limit.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	require.NoError(t, d.Pause(ctx, "p1"))
	require.Less(t, time.Since(began), 500*time.Millisecond)
	require.False(t, state(t, d).Ready)

	// Jobs already in the queue still run; nothing new is handed out; pushes are stored.
	require.NoError(t, take(t, q).Ack())
	require.NoError(t, take(t, q).Ack())
	push(t, d, msg("while-paused"))
	requireNothing(t, q)
	requireCounts(t, d, counts{3, 0, 0})

	require.NoError(t, d.Resume(context.Background(), "p1"))
	require.True(t, state(t, d).Ready)
	var got []string
	for range 3 {
		j := take(t, q)
		got = append(got, j.ID())
		require.NoError(t, j.Ack())
	}
	require.Equal(t, []string{"a2", "a3", "while-paused"}, got)
	requireCounts(t, d, counts{0, 0, 0})
}

func TestStateCountsAcrossReopen(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openDriver(t, file, q, 2)
	pushN(t, d, "r", 3)
	for i := range 2 {
		m := msg("later" + strconv.Itoa(i))
		m.DelaySeconds = 60
		push(t, d, m)
	}
	require.Equal(t, counts{3, 2, 0}, countsOf(state(t, d)))
	run(t, d)
	j := take(t, q) // 1 at a worker, 1 in the queue, 1 ready
	requireCounts(t, d, counts{2, 2, 1})
	require.NoError(t, j.Requeue(nil, 60)) // back to delayed
	requireCounts(t, d, counts{2, 3, 0})
	stop(t, d)

	d2 := openDriver(t, file, drivertest.NewQueue(0), 2)
	require.Equal(t, counts{2, 3, 0}, countsOf(state(t, d2)), "counts are derived from the file at open")
}

func TestRequeueMergesHeadersAndPersists(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openDriver(t, file, q, 0)
	run(t, d)
	m := msg("r1")
	m.Prio = 4
	m.Hdrs = map[string][]string{"keep": {"me"}, "attempts": {"1"}}
	push(t, d, m)

	j := take(t, q)
	require.NoError(t, j.Requeue(map[string][]string{"attempts": {"2"}}, 0))
	require.Error(t, j.Requeue(nil, 0), "a second Requeue of the same delivery fails")
	require.NoError(t, j.Ack(), "an Ack after Requeue is a no-op")
	j = take(t, q)
	require.Equal(t, "r1", j.ID())
	require.Equal(t, int64(4), j.Priority())
	require.Equal(t, map[string][]string{"keep": {"me"}, "attempts": {"2"}}, j.Headers())
	require.Equal(t, []byte("payload-r1"), j.Body())

	// Requeue with a delay goes to the delay index; the merged headers survive a restart.
	require.NoError(t, j.Requeue(map[string][]string{"attempts": {"3"}}, 1))
	requireCounts(t, d, counts{0, 1, 0})
	stop(t, d)
	require.Equal(t, map[string]int{string(bucketReady): 0, string(bucketInflight): 0, string(bucketDelayed): 1, string(bucketBroken): 0}, fileCounts(t, file),
		"the requeue rewrote the job and removed it from in-flight in one transaction")

	q2 := drivertest.NewQueue(0)
	d2 := openDriver(t, file, q2, 0)
	run(t, d2)
	j = take(t, q2)
	require.Equal(t, map[string][]string{"keep": {"me"}, "attempts": {"3"}}, j.Headers())
	require.NoError(t, j.Ack())
}

func TestNackVariants(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openDriver(t, file, q, 0)
	run(t, d)

	// NackWithOptions(false): the worker asked to drop it.
	push(t, d, msg("drop"))
	require.NoError(t, take(t, q).NackWithOptions(false, 0))
	requireNothing(t, q)
	requireCounts(t, d, counts{0, 0, 0})

	// NackWithOptions(true, 0): back at once, headers kept.
	m := msg("again")
	m.Hdrs = map[string][]string{"h": {"v"}}
	push(t, d, m)
	require.NoError(t, take(t, q).NackWithOptions(true, 0))
	j := take(t, q)
	require.Equal(t, "again", j.ID())
	require.Equal(t, m.Hdrs, j.Headers())

	// Plain Nack(): the job is kept and comes back after a second.
	began := time.Now()
	require.NoError(t, j.Nack())
	require.NoError(t, j.Nack(), "a second Nack is a no-op")
	requireCounts(t, d, counts{0, 1, 0})
	j = take(t, q)
	require.Equal(t, "again", j.ID())
	require.GreaterOrEqual(t, time.Since(began), 900*time.Millisecond)
	require.NoError(t, j.Ack())
	stop(t, d)
	require.Equal(t, map[string]int{string(bucketReady): 0, string(bucketInflight): 0, string(bucketDelayed): 0, string(bucketBroken): 0}, fileCounts(t, file))
}

func TestAutoAckDeletesAtHandOff(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openDriver(t, file, q, 0)
	m := msg("aa")
	m.AutoAckFlag = true
	push(t, d, m)
	run(t, d)
	j := take(t, q)
	require.Equal(t, "aa", j.ID())
	requireCounts(t, d, counts{0, 0, 0})
	stop(t, d) // the worker never finished it: with auto_ack it is gone anyway
	require.NoError(t, j.Ack())
	require.NoError(t, j.Nack())
	require.NoError(t, j.Requeue(nil, 0))

	d2 := openDriver(t, file, q, 0)
	requireCounts(t, d2, counts{0, 0, 0})
}

// An auto_ack job is deleted at hand-off, but one still waiting in the shared queue at Stop never
// reached a worker: it is written back and delivered after the restart.
func TestAutoAckJobStillQueuedAtStopIsKept(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openDriver(t, file, q, 0)
	for _, id := range []string{"taken", "queued"} {
		m := msg(id)
		m.AutoAckFlag = true
		push(t, d, m)
	}
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick)
	require.Equal(t, "taken", take(t, q).ID())
	stop(t, d)
	require.Equal(t, 1, fileCounts(t, file)[string(bucketReady)])

	q2 := drivertest.NewQueue(0)
	d2 := openDriver(t, file, q2, 0)
	requireCounts(t, d2, counts{1, 0, 0})
	run(t, d2)
	j := take(t, q2)
	require.Equal(t, "queued", j.ID())
	require.Equal(t, []byte("payload-queued"), j.Body())
	requireNothing(t, q2)
}

func TestStopKeepsJobsAndIsFinal(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	other := &otherJob{}
	q.Insert(other)
	d := openDriver(t, file, q, 0)
	pushN(t, d, "s", 3)
	m := msg("delayed")
	m.DelaySeconds = 60
	push(t, d, m)
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 4 }, waitFor, tick)
	stop(t, d)
	require.NoError(t, d.Stop(context.Background()), "idempotent")
	require.Equal(t, []jobs.Job{other}, q.Items(), "only its own jobs are removed from the queue")
	require.ErrorContains(t, d.Push(context.Background(), msg("late")), `boltdb pipeline "p1": job "late" was not pushed: the pipeline is stopped`)
	require.Error(t, d.Run(context.Background(), nil))
	require.Error(t, d.Resume(context.Background(), "p1"))
	require.Error(t, d.Pause(context.Background(), "p1"))
	st := state(t, d)
	require.False(t, st.Ready)

	// The file can be opened again (the lock and the in-process claim were released).
	d2 := openDriver(t, file, drivertest.NewQueue(0), 0)
	require.Equal(t, counts{3, 1, 0}, countsOf(state(t, d2)))
}

type otherJob struct{}

func (*otherJob) ID() string                             { return "other" }
func (*otherJob) GroupID() string                        { return "other-pipeline" }
func (*otherJob) Priority() int64                        { return 1 }
func (*otherJob) Ack() error                             { return nil }
func (*otherJob) Nack() error                            { return nil }
func (*otherJob) NackWithOptions(bool, int) error        { return nil }
func (*otherJob) Requeue(map[string][]string, int) error { return nil }
func (*otherJob) Body() []byte                           { return nil }
func (*otherJob) Context() ([]byte, error)               { return nil, nil }
func (*otherJob) Headers() map[string][]string           { return nil }

func TestStopUnblocksDispatcherInFullQueue(t *testing.T) {
	q := drivertest.NewQueue(1)
	d := openDriver(t, dbFile(t), q, 0)
	pushN(t, d, "f", 5)
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	began := time.Now()
	require.NoError(t, d.Stop(ctx))
	require.Less(t, time.Since(began), 2*time.Second)
	require.Equal(t, uint64(0), q.Len())
}

func TestOpenErrorsNameThePipelineAndFile(t *testing.T) {
	dir := t.TempDir()
	q := drivertest.NewQueue(0)

	// A directory that does not exist, and a path below a regular file.
	_, err := Open(zap.NewNop(), "nodir", Config{File: filepath.Join(dir, "missing", "x.db")}, q)
	require.ErrorContains(t, err, `boltdb pipeline "nodir": open file "`+filepath.Join(dir, "missing", "x.db")+`"`)
	notDir := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(notDir, []byte("x"), 0o600))
	_, err = Open(zap.NewNop(), "notdir", Config{File: filepath.Join(notDir, "x.db")}, q)
	require.ErrorContains(t, err, `boltdb pipeline "notdir": open file`)
	require.ErrorContains(t, err, "not a directory")

	// Garbage bytes, small and large.
	small := filepath.Join(dir, "small.db")
	require.NoError(t, os.WriteFile(small, []byte("this is not a bbolt file"), 0o600))
	_, err = Open(zap.NewNop(), "small", Config{File: small}, q)
	require.ErrorContains(t, err, `boltdb pipeline "small": open file "`+small+`"`)
	big := filepath.Join(dir, "big.db")
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i*7919 + i/3)
	}
	require.NoError(t, os.WriteFile(big, garbage, 0o600))
	_, err = Open(zap.NewNop(), "big", Config{File: big}, q)
	require.ErrorContains(t, err, `boltdb pipeline "big": open file "`+big+`"`)

	// A failed open releases nothing it did not take: a good pipeline still works.
	good := openNamed(t, "good", q, Config{File: filepath.Join(dir, "good.db")})
	push(t, good, msg("ok"))
	require.Equal(t, int64(1), state(t, good).Active)
}

// bbolt panics on damaged pages (with NoFreelistSync, even in a goroutine of its own while
// rebuilding the freelist) and faults reading past the end of a truncated file: the driver checks
// the file first and turns all of that into an error instead of a crashed process.
func TestDamagedFileIsAnErrorNotACrash(t *testing.T) {
	file := dbFile(t)
	d := openDriver(t, file, drivertest.NewQueue(0), 0)
	for i := range 2000 {
		m := msg("j" + strconv.Itoa(i))
		m.Body = make([]byte, 500)
		push(t, d, m)
	}
	stop(t, d)
	img, err := os.ReadFile(file)
	require.NoError(t, err)
	dir := t.TempDir()

	truncated := filepath.Join(dir, "truncated.db")
	require.NoError(t, os.WriteFile(truncated, img[:64<<10], 0o600))
	_, err = Open(zap.NewNop(), "truncated", Config{File: truncated}, drivertest.NewQueue(0))
	require.ErrorContains(t, err, `boltdb pipeline "truncated": open file "`+truncated+`": the file is damaged`)

	scribbled := filepath.Join(dir, "scribbled.db")
	damaged := append([]byte(nil), img...)
	for i := 40_000; i < 48_192; i++ {
		damaged[i] = byte(i * 13)
	}
	require.NoError(t, os.WriteFile(scribbled, damaged, 0o600))
	_, err = Open(zap.NewNop(), "scribbled", Config{File: scribbled}, drivertest.NewQueue(0))
	require.ErrorContains(t, err, `boltdb pipeline "scribbled": open file "`+scribbled+`": the file is damaged`)

	// The intact image still opens, with every job.
	intact := filepath.Join(dir, "intact.db")
	require.NoError(t, os.WriteFile(intact, img, 0o600))
	d2 := openNamed(t, "intact", drivertest.NewQueue(0), Config{File: intact})
	require.Equal(t, int64(2000), state(t, d2).Active)
}

func TestSameFileTwiceInOneProcess(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	first := openNamed(t, "first", q, Config{File: file})
	began := time.Now()
	// The same file through another spelling of the path.
	alias := filepath.Join(filepath.Dir(file), ".", filepath.Base(file))
	_, err := Open(zap.NewNop(), "second", Config{File: alias}, q)
	require.ErrorContains(t, err, `boltdb pipeline "second": file "`+file+`" is already used by pipeline "first" in this process`)
	require.Less(t, time.Since(began), time.Second, "refused at once, no lock wait")
	push(t, first, msg("still-works"))

	stop(t, first)
	second := openNamed(t, "second", q, Config{File: file})
	require.Equal(t, int64(1), state(t, second).Active, "after the first stops, the file can be taken over")
}

func TestFileLockedByAnotherOpenerTimesOut(t *testing.T) {
	file := dbFile(t)
	holder, err := bolt.Open(file, 0o600, nil) // stands in for another process holding the flock
	require.NoError(t, err)
	defer holder.Close()
	began := time.Now()
	_, err = Open(zap.NewNop(), "locked", Config{File: file}, drivertest.NewQueue(0))
	require.ErrorContains(t, err, `boltdb pipeline "locked": open file "`+file+`": timeout: another process holds the file lock`)
	require.Less(t, time.Since(began), openTimeout+2*time.Second)
	require.NoError(t, holder.Close())
	d := openNamed(t, "locked", drivertest.NewQueue(0), Config{File: file})
	require.NotNil(t, d)
}

func TestUndecodableRecordIsMovedAside(t *testing.T) {
	file := dbFile(t)
	q := drivertest.NewQueue(0)
	d := openDriver(t, file, q, 0)
	pushN(t, d, "g", 2)
	stop(t, d)

	// Damage one record in place, and add stock-driver buckets.
	db, err := openDB(file, 0o600)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketReady).Cursor().First()
		if err := tx.Bucket(bucketReady).Put(clone(k), []byte{recordVersion, 0, 0x80}); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists([]byte("push"))
		if err != nil {
			return err
		}
		return b.Put([]byte("stock"), []byte("gob"))
	}))
	require.NoError(t, db.Close())

	log, logs := drivertest.ObservedLogger(zapcore.WarnLevel)
	d2, err := Open(log.NamedLogger("boltdb"), "p1", Config{File: file}, q)
	require.NoError(t, err)
	t.Cleanup(func() { stop(t, d2) })
	require.Equal(t, 1, logs.FilterMessage("the file holds jobs written by the stock RoadRunner boltdb driver; this driver does not read them").Len())
	run(t, d2)
	j := take(t, q)
	require.Equal(t, "g1", j.ID(), "the good job is delivered")
	require.NoError(t, j.Ack())
	requireNothing(t, q)
	requireCounts(t, d2, counts{0, 0, 0})
	require.Equal(t, 1, fileCounts2(t, d2)[string(bucketBroken)])
	require.Equal(t, 1, logs.FilterMessage("a stored job could not be decoded; it was moved aside and will not be delivered").Len())
}

func TestCodecRoundTripAndDamage(t *testing.T) {
	r := &record{id: "id", job: "j", priority: -3, autoAck: true, payload: []byte{0, 1, 2},
		headers: map[string][]string{"a": {"1", "2"}, "b": {}, "": {""}}}
	b := r.encode()
	got, err := decodeRecord(b)
	require.NoError(t, err)
	require.Equal(t, r, got)

	empty, err := decodeRecord((&record{}).encode())
	require.NoError(t, err)
	require.Equal(t, &record{}, empty)

	for i := range len(b) {
		_, err := decodeRecord(b[:i])
		require.Error(t, err, "truncated at %d", i)
	}
	_, err = decodeRecord(append(append([]byte(nil), b...), 9))
	require.ErrorContains(t, err, "trailing")
	bad := append([]byte(nil), b...)
	bad[0] = 9
	_, err = decodeRecord(bad)
	require.ErrorContains(t, err, "version")

	due, seq, ok := parseDelayedKey(delayedKey(123, 456))
	require.True(t, ok)
	require.Equal(t, int64(123), due)
	require.Equal(t, uint64(456), seq)
}

// Pushes, hand-outs, acks and requeues racing with State: the counters never go negative and end
// exact, and every job is delivered.
func TestCountersExactUnderConcurrency(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := openDriver(t, dbFile(t), q, 50)
	run(t, d)
	const producers, perProducer = 4, 250
	total := producers * perProducer

	stopPolling := make(chan struct{})
	var polls sync.WaitGroup
	polls.Add(1)
	go func() {
		defer polls.Done()
		for {
			select {
			case <-stopPolling:
				return
			default:
				st := state(t, d)
				if st.Active < 0 || st.Delayed < 0 || st.Reserved < 0 {
					t.Errorf("negative counts %v", countsOf(st))
					return
				}
			}
		}
	}()

	var pushed sync.WaitGroup
	for p := range producers {
		pushed.Add(1)
		go func() {
			defer pushed.Done()
			for i := range perProducer {
				if err := d.Push(context.Background(), msg(fmt.Sprintf("c%d-%d", p, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}

	var mu sync.Mutex
	done := map[string]int{}
	var finished atomic.Int64
	var workers sync.WaitGroup
	for w := range 6 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			n := 0
			for finished.Load() < int64(total) {
				j, ok := q.ExtractMinTimeout(50 * time.Millisecond)
				if !ok {
					continue
				}
				if _, err := j.Context(); err != nil {
					t.Error(err)
					return
				}
				n++
				if (n+w)%7 == 0 && len(j.Headers()) == 0 {
					// Requeue once with a header; it must come back and be acked later.
					if err := j.Requeue(map[string][]string{"requeued": {"1"}}, 0); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				if err := j.Ack(); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				done[j.ID()]++
				mu.Unlock()
				finished.Add(1)
			}
		}()
	}
	pushed.Wait()
	workers.Wait()
	close(stopPolling)
	polls.Wait()

	require.Len(t, done, total)
	for id, n := range done {
		require.Equal(t, 1, n, id)
	}
	requireCounts(t, d, counts{0, 0, 0})
	ids := make([]string, 0, len(done))
	for id := range done {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	require.Equal(t, "c0-0", ids[0])
}

func TestGathererTakesWhatIsWaitingAndStopsOnClose(t *testing.T) {
	ops := make(chan *op, 16)
	for range 5 {
		ops <- &op{}
	}
	g := gatherer{wait: time.NewTimer(time.Hour), score: 1}
	g.wait.Stop()
	batch := []*op{<-ops}
	g.gather(ops, &batch)
	require.Len(t, batch, 5, "every waiting operation joins the batch")
	require.Equal(t, 5, g.expected)

	// Fewer than last time: it waits briefly for the callers to come back.
	go func() { ops <- &op{} }()
	batch = []*op{{}}
	g.gather(ops, &batch)
	require.GreaterOrEqual(t, len(batch), 1)

	close(ops)
	batch = []*op{{}}
	g.expected = 10
	g.gather(ops, &batch)
	require.Len(t, batch, 1, "a closed channel ends the batch")
}

// The driver keeps no reference to a pushed message's headers (they are encoded at Push), which
// is what ReadOnlyHeaders promises the jobs plugin.
func TestPushDoesNotKeepTheHeadersMap(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := openDriver(t, dbFile(t), q, 0)
	require.True(t, d.ReadOnlyHeaders())
	shared := map[string][]string{"Traceparent": {"00-1"}}
	for _, id := range []string{"a", "b"} {
		m := msg(id)
		m.Hdrs = shared
		push(t, d, m)
	}
	shared["Traceparent"] = []string{"changed"}
	run(t, d)
	for range 2 {
		j := take(t, q)
		require.Equal(t, []string{"00-1"}, j.Headers()["Traceparent"])
		require.NoError(t, j.Requeue(map[string][]string{"x": {"1"}}, 0))
	}
	for range 2 {
		require.Equal(t, map[string][]string{"Traceparent": {"00-1"}, "x": {"1"}}, take(t, q).Headers())
	}
	require.Equal(t, []string{"changed"}, shared["Traceparent"])
	require.Len(t, shared, 1, "requeue did not write into the pushed map")
}
