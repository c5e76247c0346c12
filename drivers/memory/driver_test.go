package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/rrjobs/jobs/drivers/drivertest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestPushDeliversContextAndBody(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 0)
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
	require.Equal(t,
		`{"id":"id-1","job":"job.id-1","driver":"memory","headers":{"Traceparent":["00-1-2-01"],"h":["v"]},"queue":"p1","pipeline":"p1"}`,
		string(ctx))
	require.NoError(t, j.Ack())

	// No headers: "headers":{} (never null); an explicit priority is kept; the body is untouched.
	body := []byte{0x00, 0xff, '"', '\n'}
	m2 := &drivertest.Message{JobID: "id-2", Job: "raw", Pipeline: "p1", Prio: 3, Body: body}
	push(t, d, m2)
	j = take(t, q)
	require.Equal(t, int64(3), j.Priority())
	require.Equal(t, body, j.Body())
	ctx, err = j.Context()
	require.NoError(t, err)
	require.Equal(t, `{"id":"id-2","job":"raw","driver":"memory","headers":{},"queue":"p1","pipeline":"p1"}`, string(ctx))
	var decoded map[string]any
	require.NoError(t, json.Unmarshal(ctx, &decoded))
	require.NoError(t, j.Ack())
	requireCounts(t, d, counts{0, 0, 0})
}

func TestPushKeepsFIFOOrder(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 0)
	pushN(t, d, 3000) // pushed before Run: all buffered in the backlog
	require.Equal(t, int64(3000), state(t, d).Active)
	run(t, d)
	for i := range 3000 {
		j := take(t, q)
		require.Equal(t, "j"+strconv.Itoa(i), j.ID())
		require.NoError(t, j.Ack())
	}
}

func TestPushNeverBlocksOnFullQueue(t *testing.T) {
	q := drivertest.NewQueue(1)
	d := newTestDriver(t, q, 0)
	run(t, d)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			_ = d.Push(context.Background(), msg("j"+strconv.Itoa(i)))
		}
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Push blocked on a full shared queue")
	}
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)
	require.Equal(t, int64(1000), state(t, d).Active)
}

func TestPrefetchLimit(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 2)
	run(t, d)
	pushN(t, d, 5)

	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick)
	a := take(t, q)
	b := take(t, q)
	require.Equal(t, "j0", a.ID())
	require.Equal(t, "j1", b.ID())
	// Both slots are held by jobs at a worker: nothing more comes until an ack.
	requireNothing(t, q)
	require.Equal(t, counts{3, 0, 2}, countsOf(state(t, d)))

	require.NoError(t, a.Ack())
	c := take(t, q)
	require.Equal(t, "j2", c.ID())
	requireNothing(t, q)

	// A nack (drop) frees a slot too.
	require.NoError(t, b.Nack())
	require.Equal(t, "j3", take(t, q).ID())
}

func TestPauseStopsFlowAndReturnsPromptlyAtPrefetchLimit(t *testing.T) {
	logger, logs := drivertest.ObservedLogger(zapcore.InfoLevel)
	q := drivertest.NewQueue(0)
	d, err := NewDriver(logger.NamedLogger("memory"), "p1", Config{Prefetch: 1}, q)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	run(t, d)
	pushN(t, d, 3)

	first := take(t, q) // holds the only slot: the dispatcher now waits at the limit
	requireNothing(t, q)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, d.Pause(ctx, "p1"))
	require.Less(t, time.Since(start), time.Second, "Pause must not wait for an ack")
	require.False(t, state(t, d).Ready)

	// Paused: freeing the slot does not let the next job in; pushes are still accepted.
	require.NoError(t, first.Ack())
	push(t, d, msg("late"))
	requireNothing(t, q)
	require.Equal(t, counts{3, 0, 0}, countsOf(state(t, d)))

	// Pause twice: error naming the situation.
	err = d.Pause(context.Background(), "p1")
	require.Error(t, err)
	require.Contains(t, err.Error(), "no active listeners, nothing to pause")

	require.NoError(t, d.Resume(context.Background(), "p1"))
	require.True(t, state(t, d).Ready)
	err = d.Resume(context.Background(), "p1")
	require.Error(t, err)
	require.Contains(t, err.Error(), "already running")

	for _, id := range []string{"j1", "j2", "late"} {
		j := take(t, q)
		require.Equal(t, id, j.ID())
		require.NoError(t, j.Ack())
	}
	requireCounts(t, d, counts{0, 0, 0})
	require.NoError(t, d.Stop(context.Background()))

	for _, m := range []string{"pipeline was started", "pipeline was paused", "pipeline was resumed", "pipeline was stopped"} {
		entries := logs.FilterMessage(m).All()
		require.Len(t, entries, 1, m)
		require.Equal(t, "p1", entries[0].ContextMap()["pipeline"], m)
	}
}

func TestRunTwiceErrors(t *testing.T) {
	d := newTestDriver(t, drivertest.NewQueue(0), 0)
	run(t, d)
	err := d.Run(context.Background(), drivertest.Pipeline{"name": "p1"})
	require.Error(t, err)
	require.Contains(t, err.Error(), `memory pipeline "p1" is already running`)
}

func TestPauseNotRunningErrors(t *testing.T) {
	d := newTestDriver(t, drivertest.NewQueue(0), 0)
	err := d.Pause(context.Background(), "p1")
	require.Error(t, err)
	require.Contains(t, err.Error(), "no active listeners, nothing to pause")
}

func TestDelayIsHonoured(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 0)
	run(t, d)

	m := msg("later")
	m.DelaySeconds = 1
	start := time.Now()
	push(t, d, m)
	push(t, d, msg("now"))
	require.Equal(t, int64(1), state(t, d).Delayed)

	j := take(t, q)
	require.Equal(t, "now", j.ID())
	require.NoError(t, j.Ack())

	j, ok := q.ExtractMinTimeout(3 * time.Second)
	require.True(t, ok, "delayed job did not arrive within 3s")
	elapsed := time.Since(start)
	require.Equal(t, "later", j.ID())
	require.GreaterOrEqual(t, elapsed, 950*time.Millisecond)
	_, err := j.Context()
	require.NoError(t, err)
	require.Equal(t, counts{0, 0, 1}, countsOf(state(t, d)))
	require.NoError(t, j.Ack())
	requireCounts(t, d, counts{0, 0, 0})
}

func TestDelayedWhilePausedWaitsInBacklog(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 0)
	m := msg("d")
	m.DelaySeconds = 1
	push(t, d, m) // not running
	require.Equal(t, counts{0, 1, 0}, countsOf(state(t, d)))
	// The delay elapses while not consuming: the job moves to the backlog (Active), not the queue.
	requireCounts(t, d, counts{1, 0, 0})
	require.Equal(t, uint64(0), q.Len())
	run(t, d)
	require.Equal(t, "d", take(t, q).ID())
}

func TestManyDelayedJobsNoCap(t *testing.T) {
	const n = 5000
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 0)
	run(t, d)
	for i := range n {
		m := msg("d" + strconv.Itoa(i))
		m.DelaySeconds = int64(1 + i%2)
		require.NoError(t, d.Push(context.Background(), m))
	}
	st := state(t, d)
	require.Equal(t, int64(n), st.Delayed+st.Active)
	require.Eventually(t, func() bool { return q.Len() == n }, waitFor, 10*time.Millisecond)
	require.Equal(t, counts{n, 0, 0}, countsOf(state(t, d)))

	// All delay-1 jobs come before the delay-2 ones, each group in push order.
	items := q.Items()
	for i := range n / 2 {
		require.Equal(t, "d"+strconv.Itoa(2*i), items[i].ID())
		require.Equal(t, "d"+strconv.Itoa(2*i+1), items[n/2+i].ID())
	}
}

func TestRequeueMergesHeadersKeepsIDAndPriority(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 1)
	run(t, d)

	m := msg("r1")
	m.Prio = 4
	m.Hdrs = map[string][]string{"a": {"1"}, "b": {"2"}}
	push(t, d, m)
	push(t, d, msg("other"))

	j := take(t, q)
	require.Equal(t, "r1", j.ID())
	start := time.Now()
	require.NoError(t, j.Requeue(map[string][]string{"b": {"x"}, "c": {"3"}}, 1))
	// The caller's header map is not modified.
	require.Equal(t, map[string][]string{"a": {"1"}, "b": {"2"}}, m.Hdrs)
	require.Equal(t, int64(1), state(t, d).Delayed)

	// The requeue freed the slot: the next job goes first, then r1 after its delay.
	o := take(t, q)
	require.Equal(t, "other", o.ID())
	require.NoError(t, o.Ack())

	r := take(t, q)
	require.GreaterOrEqual(t, time.Since(start), 950*time.Millisecond)
	require.Equal(t, "r1", r.ID())
	require.Equal(t, int64(4), r.Priority())
	require.Equal(t, map[string][]string{"a": {"1"}, "b": {"x"}, "c": {"3"}}, r.Headers())
	ctx, err := r.Context()
	require.NoError(t, err)
	require.Equal(t, `{"id":"r1","job":"job.r1","driver":"memory","headers":{"a":["1"],"b":["x"],"c":["3"]},"queue":"p1","pipeline":"p1"}`, string(ctx))

	// Late calls on the old item are harmless: ack/nack no-ops, a second requeue is refused.
	require.NoError(t, j.Ack())
	require.NoError(t, j.Nack())
	err = j.Requeue(nil, 0)
	require.Error(t, err)
	require.Contains(t, err.Error(), `"p1"`)
	require.Contains(t, err.Error(), `"r1"`)
	require.Equal(t, counts{0, 0, 1}, countsOf(state(t, d)))

	require.NoError(t, r.Ack())
	require.NoError(t, r.Ack())
	requireCounts(t, d, counts{0, 0, 0})
}

func TestNackWithOptionsAndNack(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 0)
	run(t, d)
	m := msg("n1")
	m.Hdrs = map[string][]string{"k": {"v"}}
	push(t, d, m)

	j := take(t, q)
	require.NoError(t, j.NackWithOptions(true, 0))
	back := take(t, q)
	require.Equal(t, "n1", back.ID())
	require.Equal(t, m.Hdrs, back.Headers())

	// NackWithOptions(false, _) is Nack: dropped.
	require.NoError(t, back.NackWithOptions(false, 5))
	requireNothing(t, q)
	requireCounts(t, d, counts{0, 0, 0})

	push(t, d, msg("n2"))
	j = take(t, q)
	require.NoError(t, j.Nack())
	requireNothing(t, q)
	requireCounts(t, d, counts{0, 0, 0})

	// Delayed nack (what the plugin does when a worker can't take a job).
	push(t, d, msg("n3"))
	j = take(t, q)
	start := time.Now()
	require.NoError(t, j.NackWithOptions(true, 1))
	require.Equal(t, counts{0, 1, 0}, countsOf(state(t, d)))
	require.Equal(t, "n3", take(t, q).ID())
	require.GreaterOrEqual(t, time.Since(start), 950*time.Millisecond)
}

func TestAutoAck(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 1)
	run(t, d)
	for i := range 3 {
		m := msg("a" + strconv.Itoa(i))
		m.AutoAckFlag = true
		push(t, d, m)
	}
	// auto_ack jobs don't hold prefetch slots: all three reach the queue with prefetch 1.
	require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, tick)
	require.Equal(t, counts{3, 0, 0}, countsOf(state(t, d)))

	a0 := take(t, q)
	a1 := take(t, q)
	a2 := take(t, q)
	// Taken by a worker but already acknowledged: not reserved.
	require.Equal(t, counts{0, 0, 0}, countsOf(state(t, d)))
	require.NoError(t, a0.Requeue(map[string][]string{"x": {"y"}}, 0))
	require.NoError(t, a1.NackWithOptions(true, 0))
	require.NoError(t, a2.Nack())
	require.NoError(t, a2.Ack())
	requireNothing(t, q) // nothing was redelivered

	// A normal job after them still gets the single slot.
	push(t, d, msg("normal"))
	j := take(t, q)
	require.Equal(t, counts{0, 0, 1}, countsOf(state(t, d)))
	require.NoError(t, j.Ack())
	requireCounts(t, d, counts{0, 0, 0})
}

func TestStateLifecycle(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newNamedDriver(t, "life", q, Config{Priority: 7, Prefetch: 10})

	st := state(t, d)
	require.Equal(t, "life", st.Pipeline)
	require.Equal(t, "memory", st.Driver)
	require.Equal(t, "life", st.Queue)
	require.Equal(t, uint64(7), st.Priority)
	require.False(t, st.Ready)
	require.Equal(t, counts{0, 0, 0}, countsOf(st))

	push(t, d, msg("a"))
	push(t, d, msg("b"))
	dm := msg("c")
	dm.DelaySeconds = 30
	push(t, d, dm)
	require.Equal(t, counts{2, 1, 0}, countsOf(state(t, d)))

	run(t, d)
	require.True(t, state(t, d).Ready)
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick)
	require.Equal(t, counts{2, 1, 0}, countsOf(state(t, d)))

	a := take(t, q)
	require.Equal(t, counts{1, 1, 1}, countsOf(state(t, d)))
	b := take(t, q)
	require.Equal(t, counts{0, 1, 2}, countsOf(state(t, d)))
	_, err := b.Context() // a second Context call changes nothing
	require.NoError(t, err)
	require.Equal(t, counts{0, 1, 2}, countsOf(state(t, d)))

	require.NoError(t, a.Ack())
	require.NoError(t, a.Ack())
	require.NoError(t, a.Nack())
	require.Equal(t, counts{0, 1, 1}, countsOf(state(t, d)))
	require.NoError(t, b.Requeue(nil, 0))
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)
	require.Equal(t, counts{1, 1, 0}, countsOf(state(t, d)))

	require.NoError(t, d.Pause(context.Background(), "life"))
	require.False(t, state(t, d).Ready)

	require.NoError(t, d.Stop(context.Background()))
	st = state(t, d)
	require.False(t, st.Ready)
	require.Equal(t, counts{0, 0, 0}, countsOf(st))
	require.Equal(t, uint64(0), q.Len())
}

func TestCountersNeverNegativeUnderConcurrency(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 8)
	run(t, d)

	const n = 2000
	var done atomic.Bool
	var sampler sync.WaitGroup
	sampler.Add(1)
	var bad atomic.Value
	go func() {
		defer sampler.Done()
		for !done.Load() {
			st, _ := d.State(context.Background())
			if st.Active < 0 || st.Delayed < 0 || st.Reserved < 0 {
				bad.Store(fmt.Sprintf("%+v", *st))
				return
			}
		}
	}()

	var pushers sync.WaitGroup
	for p := range 4 {
		pushers.Add(1)
		go func() {
			defer pushers.Done()
			for i := range n / 4 {
				m := msg(fmt.Sprintf("c%d-%d", p, i))
				m.AutoAckFlag = i%7 == 0
				_ = d.Push(context.Background(), m)
			}
		}()
	}

	// Workers: each job is acked, nacked, or requeued once (then acked).
	var workers sync.WaitGroup
	var finished atomic.Int64
	requeued := sync.Map{}
	for range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for finished.Load() < n {
				j, ok := q.ExtractMinTimeout(50 * time.Millisecond)
				if !ok {
					continue
				}
				_, _ = j.Context()
				_, again := requeued.LoadOrStore(j.ID(), true)
				switch {
				case !again && len(j.ID())%3 == 0:
					_ = j.Requeue(map[string][]string{"n": {"1"}}, 0)
					if !j.(*Item).autoAck {
						continue // comes back; auto_ack jobs don't
					}
				case len(j.ID())%2 == 0:
					_ = j.Nack()
				default:
					_ = j.Ack()
					_ = j.Ack()
				}
				finished.Add(1)
			}
		}()
	}
	pushers.Wait()
	workers.Wait()
	done.Store(true)
	sampler.Wait()
	require.Nil(t, bad.Load())
	requireCounts(t, d, counts{0, 0, 0})
}

func TestStopRemovesOnlyItsOwnJobs(t *testing.T) {
	q := drivertest.NewQueue(0)
	d1 := newNamedDriver(t, "p1", q, Config{})
	d2 := newNamedDriver(t, "p2", q, Config{})
	run(t, d1)
	run(t, d2)
	pushN(t, d1, 3)
	require.Eventually(t, func() bool { return q.CountGroup("p1") == 3 }, waitFor, tick)
	reserved := take(t, q) // a p1 job at a worker
	require.Equal(t, "j0", reserved.ID())
	for i := range 3 {
		m := msg("b" + strconv.Itoa(i))
		m.Pipeline = "p2"
		push(t, d2, m)
	}
	delayed := msg("later")
	delayed.DelaySeconds = 1
	push(t, d1, delayed)
	require.Eventually(t, func() bool { return q.Len() == 5 }, waitFor, tick)
	require.Equal(t, counts{2, 1, 1}, countsOf(state(t, d1)))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	require.NoError(t, d1.Stop(ctx))
	require.Equal(t, 0, q.CountGroup("p1"))
	require.Equal(t, 3, q.CountGroup("p2"))
	require.Equal(t, counts{0, 0, 1}, countsOf(state(t, d1)))

	// Push, Run, Resume, Pause after Stop fail and name the pipeline; Stop is idempotent.
	err := d1.Push(context.Background(), msg("x"))
	require.Error(t, err)
	require.Contains(t, err.Error(), `memory pipeline "p1" is stopped`)
	require.Contains(t, err.Error(), `"x"`)
	require.Error(t, d1.Run(context.Background(), nil))
	require.Error(t, d1.Resume(context.Background(), "p1"))
	require.Error(t, d1.Pause(context.Background(), "p1"))
	require.NoError(t, d1.Stop(ctx))

	// The job at a worker: requeue fails naming pipeline and id; ack/nack are no-ops.
	err = reserved.Requeue(nil, 0)
	require.Error(t, err)
	require.Contains(t, err.Error(), `"p1"`)
	require.Contains(t, err.Error(), `"j0"`)
	require.NoError(t, reserved.Ack())
	require.NoError(t, reserved.Nack())
	require.Equal(t, counts{0, 0, 0}, countsOf(state(t, d1)))

	// The delayed job of the stopped pipeline never shows up.
	j, ok := q.ExtractMinTimeout(1500 * time.Millisecond)
	require.True(t, ok)
	require.Equal(t, "p2", j.GroupID())
	for q.Len() > 0 {
		j := take(t, q)
		require.Equal(t, "p2", j.GroupID())
	}
	requireNothing(t, q)
}

func TestStopAckAfterStopOfNeverTakenJob(t *testing.T) {
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, q, 0)
	run(t, d)
	push(t, d, msg("a"))
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)
	j := q.Items()[0]
	require.NoError(t, d.Stop(context.Background()))
	require.NoError(t, j.Ack())
	require.NoError(t, j.NackWithOptions(false, 0))
	require.Equal(t, counts{0, 0, 0}, countsOf(state(t, d)))
}

func TestStopUnblocksDispatcherInFullQueue(t *testing.T) {
	q := drivertest.NewQueue(1)
	d := newTestDriver(t, q, 0)
	run(t, d)
	pushN(t, d, 3)
	// One job in the queue, the dispatcher blocked inserting the second.
	require.Eventually(t, func() bool { return q.Len() == 1 && state(t, d).Active == 3 }, waitFor, tick)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, d.Stop(ctx))
	require.Less(t, time.Since(start), time.Second)
	require.Equal(t, uint64(0), q.Len(), "nothing of the stopped pipeline stays in the queue")
	require.Equal(t, counts{0, 0, 0}, countsOf(state(t, d)))
}

func TestStopReturnsWithinCtxWhenQueueFullOfOtherPipeline(t *testing.T) {
	q := drivertest.NewQueue(1)
	other := newNamedDriver(t, "other", q, Config{})
	run(t, other)
	om := msg("o")
	om.Pipeline = "other"
	push(t, other, om)
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)

	d := newTestDriver(t, q, 0)
	run(t, d)
	push(t, d, msg("mine"))
	require.Eventually(t, func() bool { return state(t, d).Active == 1 }, waitFor, tick)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.NoError(t, d.Stop(ctx))
	require.Less(t, time.Since(start), 2*time.Second)

	// Once the queue drains, the dispatcher's pending insert is removed again.
	require.Equal(t, "o", take(t, q).ID())
	require.Eventually(t, func() bool { return state(t, d).Active == 0 }, waitFor, tick)
	require.Equal(t, 0, q.CountGroup("p1"))
	requireNothing(t, q)
}

func TestPauseWhileBlockedInInsertThenResume(t *testing.T) {
	q := drivertest.NewQueue(1)
	d := newTestDriver(t, q, 0)
	run(t, d)
	pushN(t, d, 4)
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)

	// The dispatcher is inside Insert: Pause waits for it at most until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.NoError(t, d.Pause(ctx, "p1"))
	require.NoError(t, d.Resume(context.Background(), "p1"))

	seen := map[string]int{}
	for range 4 {
		j := take(t, q)
		seen[j.ID()]++
		require.NoError(t, j.Ack())
	}
	require.Equal(t, map[string]int{"j0": 1, "j1": 1, "j2": 1, "j3": 1}, seen)
	requireNothing(t, q)
	requireCounts(t, d, counts{0, 0, 0})
}

func TestNewDriverValidation(t *testing.T) {
	_, err := NewDriver(nil, "p1", Config{}, nil)
	require.Error(t, err)
	_, err = NewDriver(nil, "", Config{}, drivertest.NewQueue(0))
	require.Error(t, err)
	d, err := NewDriver(nil, "p1", Config{}, drivertest.NewQueue(0))
	require.NoError(t, err)
	require.Equal(t, DefaultPrefetch, d.prefetch)
	require.Equal(t, DefaultPriority, d.priority)
	require.Error(t, d.Push(context.Background(), nil))
	require.NoError(t, d.Stop(context.Background()))
}

func TestDelayHeapOrder(t *testing.T) {
	var h delayHeap
	dues := []int64{5, 1, 9, 1, 3, 7, 2, 8, 0, 5}
	for i, due := range dues {
		h.push(&Item{id: strconv.Itoa(i), due: due, seq: uint32(i)})
	}
	var got []string
	for h.len() > 0 {
		it := h.pop()
		got = append(got, fmt.Sprintf("%d/%s", it.due, it.id))
	}
	require.Equal(t, []string{"0/8", "1/1", "1/3", "2/6", "3/4", "5/0", "5/9", "7/5", "8/7", "9/2"}, got)
}

func TestFIFOCompaction(t *testing.T) {
	var f fifo
	next, want := 0, 0
	for round := range 50 {
		for range 100 + round {
			f.push(&Item{id: strconv.Itoa(next)})
			next++
		}
		for range 90 {
			require.Equal(t, strconv.Itoa(want), f.pop().id)
			want++
		}
	}
	for f.len() > 0 {
		require.Equal(t, strconv.Itoa(want), f.pop().id)
		want++
	}
	require.Equal(t, next, want)
}

// BenchmarkPushAck measures the hot path Push → queue → Context → Ack.
func BenchmarkPushAck(b *testing.B) {
	q := drivertest.NewQueue(0)
	d, err := NewDriver(nil, "bench", Config{}, q)
	require.NoError(b, err)
	require.NoError(b, d.Run(context.Background(), nil))
	defer func() { _ = d.Stop(context.Background()) }()
	m := &drivertest.Message{JobID: "id", Job: "job", Pipeline: "bench", Body: []byte("x")}
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Push(context.Background(), m); err != nil {
			b.Fatal(err)
		}
		var j jobs.Job = q.ExtractMin()
		if _, err := j.Context(); err != nil {
			b.Fatal(err)
		}
		if err := j.Ack(); err != nil {
			b.Fatal(err)
		}
	}
}

// A logger at debug level gets one structured entry per push; at info level Push writes nothing
// (the level is read once, when the driver is built). Either way the job is accepted.
func TestPushLogsAtDebugLevelOnly(t *testing.T) {
	for _, level := range []zapcore.Level{zapcore.DebugLevel, zapcore.InfoLevel} {
		core, logs := observer.New(level)
		d, err := NewDriver(zap.New(core), "p1", Config{}, drivertest.NewQueue(0))
		require.NoError(t, err)
		push(t, d, msg("id-1"))
		requireCounts(t, d, counts{1, 0, 0}) // the job is held whatever the log level
		pushed := logs.FilterMessage("job was pushed").All()
		if level == zapcore.InfoLevel {
			require.Empty(t, pushed)
			continue
		}
		require.Len(t, pushed, 1)
		require.Equal(t, "p1", pushed[0].ContextMap()["pipeline"])
		require.Equal(t, "id-1", pushed[0].ContextMap()["id"])
	}
}
