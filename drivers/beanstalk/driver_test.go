package beanstalk

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/beanstalkd/go-beanstalk"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

func TestPushRunAck(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q)

	m := msg("a")
	m.Hdrs = map[string][]string{"tenant": {"acme"}}
	m.Prio = 3
	push(t, d, m)
	push(t, d, msg("b"))
	requireCounts(t, d, counts{2, 0, 0})
	st := state(t, d)
	require.False(t, st.Ready, "not consuming before Run")
	require.Equal(t, tube, st.Queue)
	require.Equal(t, "beanstalk", st.Driver)
	require.Equal(t, "p1", st.Pipeline)
	require.Equal(t, uint64(10), st.Priority)

	run(t, d)
	j := take(t, q)
	j2 := take(t, q)
	if j.ID() != "a" {
		j, j2 = j2, j
	}
	require.Equal(t, "a", j.ID())
	require.Equal(t, "p1", j.GroupID())
	require.Equal(t, int64(3), j.Priority())
	require.Equal(t, []byte("payload-a"), j.Body())
	require.Equal(t, map[string][]string{"tenant": {"acme"}}, j.Headers())
	ctxJSON, err := j.Context()
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"a","job":"job.a","driver":"beanstalk","headers":{"tenant":["acme"]},"queue":"`+tube+`","pipeline":"p1"}`, string(ctxJSON))
	require.Equal(t, int64(10), j2.Priority(), "priority 0 gets the pipeline's")
	ctxJSON, err = j2.Context()
	require.NoError(t, err)
	require.Contains(t, string(ctxJSON), `"headers":{}`)
	requireCounts(t, d, counts{0, 0, 2})
	require.True(t, state(t, d).Ready)

	require.NoError(t, j.Ack())
	require.NoError(t, j.Ack(), "a second ack is a no-op")
	require.NoError(t, j2.Ack())
	requireCounts(t, d, counts{0, 0, 0})
	require.Zero(t, tubeTotal(t, tube), "ack deletes the job")
}

func TestDelayIsNative(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q)
	run(t, d)
	m := msg("late")
	m.DelaySeconds = 1
	pushed := time.Now()
	push(t, d, m)
	requireCounts(t, d, counts{0, 1, 0})
	j := take(t, q)
	require.GreaterOrEqual(t, time.Since(pushed), 900*time.Millisecond)
	require.Equal(t, "late", j.ID())
	require.NoError(t, j.Ack())
}

func TestNackWithRequeueReleasesWithoutACopy(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q)
	run(t, d)
	m := msg("n")
	m.Hdrs = map[string][]string{"k": {"v"}}
	push(t, d, m)
	j := take(t, q)
	bid := j.(*Item).bid

	require.NoError(t, j.NackWithOptions(true, 1))
	requireCounts(t, d, counts{0, 1, 0})
	require.Equal(t, 1, tubeTotal(t, tube), "released, not copied")
	require.Error(t, j.NackWithOptions(true, 0), "a job is requeued once")

	again := take(t, q)
	require.Equal(t, "n", again.ID())
	require.Equal(t, bid, again.(*Item).bid, "the same beanstalkd job")
	require.Equal(t, map[string][]string{"k": {"v"}}, again.Headers())
	require.NoError(t, again.Requeue(nil, 0), "requeue without headers releases too")
	third := take(t, q)
	require.Equal(t, bid, third.(*Item).bid)
	require.NoError(t, third.Ack())
	requireNothing(t, q, quiet)
	require.Zero(t, tubeTotal(t, tube))
}

func TestNackDeletes(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q)
	run(t, d)
	push(t, d, msg("x"))
	push(t, d, msg("y"))
	a, b := take(t, q), take(t, q)
	require.NoError(t, a.Nack())
	require.NoError(t, b.NackWithOptions(false, 5))
	requireCounts(t, d, counts{0, 0, 0})
	requireNothing(t, q, quiet)
	require.Zero(t, tubeTotal(t, tube))
}

func TestRequeueWithHeadersPutsThenDeletes(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q)
	run(t, d)
	m := msg("r")
	m.Hdrs = map[string][]string{"keep": {"me"}, "attempt": {"1"}}
	m.Prio = 4
	push(t, d, m)
	j := take(t, q)
	bid := j.(*Item).bid

	require.NoError(t, j.Requeue(map[string][]string{"attempt": {"2"}}, 1))
	requireCounts(t, d, counts{0, 1, 0})
	require.Equal(t, 1, tubeTotal(t, tube), "the original is gone once the copy is stored")
	again := take(t, q)
	require.NotEqual(t, bid, again.(*Item).bid, "a new beanstalkd job carries the new headers")
	require.Equal(t, "r", again.ID())
	require.Equal(t, int64(4), again.Priority())
	require.Equal(t, []byte("payload-r"), again.Body())
	require.Equal(t, map[string][]string{"keep": {"me"}, "attempt": {"2"}}, again.Headers())
	require.NoError(t, again.Ack())
	require.Zero(t, tubeTotal(t, tube))
}

func TestPrefetchLimit(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	conf := testConfig(tube)
	conf.Prefetch = 2
	d := newDriver(t, conf, q)
	for i := range 5 {
		push(t, d, msg(strconv.Itoa(i)))
	}
	run(t, d)
	requireCounts(t, d, counts{3, 0, 2})
	a := take(t, q)
	take(t, q)
	requireNothing(t, q, quiet)
	require.NoError(t, a.Ack())
	take(t, q)
	requireCounts(t, d, counts{2, 0, 2})
}

func TestPauseResume(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	conf := testConfig(tube)
	conf.ReserveTimeout = 30 * time.Second // an idle reserve must not delay Pause or Stop
	d := newDriver(t, conf, q)
	require.Error(t, d.Pause(context.Background(), "p1"), "nothing to pause")
	run(t, d)
	require.Error(t, d.Run(context.Background(), nil), "already running")

	for round := range 2 {
		waitIdleReserve(t, d)
		start := time.Now()
		require.NoError(t, d.Pause(context.Background(), "p1"))
		require.Less(t, time.Since(start), 100*time.Millisecond, "pause does not wait for the idle reserve")
		require.False(t, state(t, d).Ready)
		id := "p" + strconv.Itoa(round)
		push(t, d, msg(id))
		requireCounts(t, d, counts{1, 0, 0})
		requireNothing(t, q, quiet)
		require.NoError(t, d.Resume(context.Background(), "p1"))
		j := take(t, q)
		require.Equal(t, id, j.ID())
		require.NoError(t, j.Ack())
	}

	waitIdleReserve(t, d)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
	require.Less(t, time.Since(start), time.Second, "stop does not wait for the idle reserve")
	require.Error(t, d.Resume(context.Background(), "p1"), "stopped")
}

// waitIdleReserve waits until the consumer is blocked in an idle reserve.
func waitIdleReserve(t *testing.T, d *Driver) {
	t.Helper()
	require.Eventually(t, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.blocking != nil
	}, waitFor, tick)
}

func TestPausedJobsInTheQueueStillSettle(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q)
	run(t, d)
	push(t, d, msg("held"))
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)
	require.NoError(t, d.Pause(context.Background(), "p1"))
	j := take(t, q)
	require.NoError(t, j.Ack(), "acks work while paused")
	requireCounts(t, d, counts{0, 0, 0})
}

func TestAutoAckIsDeletedWhenAWorkerTakesIt(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q)
	m := msg("aa")
	m.AutoAckFlag = true
	push(t, d, m)
	run(t, d)
	j, ok := q.ExtractMinTimeout(waitFor)
	require.True(t, ok)
	requireCounts(t, d, counts{0, 0, 1})
	_, err := j.Context()
	require.NoError(t, err)
	requireCounts(t, d, counts{0, 0, 0})
	require.NoError(t, j.Ack())
	require.NoError(t, j.Nack())
	require.NoError(t, j.Requeue(map[string][]string{"x": {"y"}}, 0), "no-op for an auto_ack job")
	require.NoError(t, j.NackWithOptions(true, 0))
	requireNothing(t, q, quiet)
	require.Zero(t, tubeTotal(t, tube))
}

func TestStopReleasesJobsNotAtAWorker(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q)
	a := msg("auto")
	a.AutoAckFlag = true
	push(t, d, a)
	push(t, d, msg("plain"))
	push(t, d, msg("running"))
	run(t, d)
	requireCounts(t, d, counts{0, 0, 3})
	var running jobs.Job
	require.Eventually(t, func() bool {
		for _, j := range q.Items() {
			if j.ID() == "running" {
				running = j
			}
		}
		return q.Len() == 3
	}, waitFor, tick)
	_, err := running.Context() // at a worker

	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
	require.Zero(t, q.Len(), "the pipeline's jobs left the queue")
	require.ErrorContains(t, running.Ack(), "the pipeline was stopped and beanstalkd released the job, so it runs again")

	// A fresh consumer gets all three back, the auto_ack one included.
	q2 := drivertest.NewQueue(0)
	d2 := newNamedDriver(t, "p2", testConfig(tube), q2)
	run(t, d2)
	got := map[string]bool{}
	for range 3 {
		j := take(t, q2)
		got[j.ID()] = true
		require.NoError(t, j.Ack())
	}
	require.Equal(t, map[string]bool{"auto": true, "plain": true, "running": true}, got)
}

// requireKeptReserved checks for d that the job stays reserved with time left on its TTR and never
// timed out. (beanstalkd 1.12 sometimes expires TTRs late while other connections are busy, so a
// second consumer alone would not prove anything; the job's own stats do.)
func requireKeptReserved(t *testing.T, bid uint64, d time.Duration) {
	t.Helper()
	c := client(t)
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		st, err := c.StatsJob(bid)
		require.NoError(t, err)
		left, err := strconv.Atoi(st["time-left"])
		require.NoError(t, err)
		require.Equal(t, "reserved", st["state"], "stats %v", st)
		require.Equal(t, "0", st["timeouts"], "stats %v", st)
		require.GreaterOrEqual(t, left, 0, "stats %v", st)
	}
}

func TestLongJobIsTouchedPastItsTTR(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	conf := testConfig(tube)
	conf.Timeout = 2 * time.Second // TTR 2 s
	d := newDriver(t, conf, q)
	run(t, d)
	push(t, d, msg("long"))
	j := take(t, q)
	// Paused, the consumer no longer reserves (which would also notice DEADLINE_SOON): only the
	// scheduled touches keep the job.
	require.NoError(t, d.Pause(context.Background(), "p1"))

	// Another consumer on the tube would get the job if its TTR expired.
	q2 := drivertest.NewQueue(0)
	d2 := newNamedDriver(t, "p2", testConfig(tube), q2)
	run(t, d2)
	requireKeptReserved(t, j.(*Item).bid, 5*time.Second)
	requireNothing(t, q2, 0)
	requireCounts(t, d, counts{0, 0, 1})
	require.NoError(t, j.Ack())
	require.Zero(t, tubeTotal(t, tube))
}

func TestForeignJobsAreTouchedByTheirOwnTTR(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	c := client(t)
	foreign := beanstalk.NewTube(c, tube)
	_, err := foreign.Put([]byte("raw body"), 0, 0, 2*time.Second) // a TTR of 2 s, shorter than ours
	require.NoError(t, err)

	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q) // TTR 5 s for its own jobs
	run(t, d)
	j := take(t, q)
	require.Equal(t, 2*time.Second, j.(*Item).ttr)
	require.NoError(t, d.Pause(context.Background(), "p1"))
	requireKeptReserved(t, j.(*Item).bid, 5*time.Second)
	require.NoError(t, j.Ack())
}

func TestRawBodiesAreDeliveredAsRawPayloads(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	c := client(t)
	_, err := beanstalk.NewTube(c, tube).Put([]byte(`{"hello":"php"}`), 0, 0, 30*time.Second)
	require.NoError(t, err)

	core, logs := observer.New(zapcore.InfoLevel)
	q := drivertest.NewQueue(0)
	d, err := NewDriver(zap.New(core), "p1", testConfig(tube), q)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	run(t, d)
	j := take(t, q)
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f-]{36}$`), j.ID())
	require.Equal(t, []byte(`{"hello":"php"}`), j.Body())
	require.Equal(t, int64(10), j.Priority())
	require.Empty(t, j.Headers())
	ctxJSON, err := j.Context()
	require.NoError(t, err)
	require.Contains(t, string(ctxJSON), `"job":"deduced_by_rr"`)
	require.Equal(t, 1, logs.FilterMessageSnippet("not a RoadRunner job").Len(), "logged once at info level")

	// A requeue with headers turns it into an RR job that keeps its id.
	require.NoError(t, j.Requeue(map[string][]string{"attempt": {"2"}}, 0))
	again := take(t, q)
	require.Equal(t, j.ID(), again.ID())
	require.Equal(t, []byte(`{"hello":"php"}`), again.Body())
	require.Equal(t, map[string][]string{"attempt": {"2"}}, again.Headers())
	require.False(t, again.(*Item).raw)
	require.NoError(t, again.Ack())
}

func TestStockBodiesAreConsumed(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	c := client(t)
	body := gobBytes(t, &stockV5Item{Job: "app.stock", Ident: "stock-1", Payload: []byte("pl"),
		Options: &stockV5Options{Priority: 6, Pipeline: "elsewhere", AutoAck: false}})
	_, err := beanstalk.NewTube(c, tube).Put(body, 0, 0, 30*time.Second)
	require.NoError(t, err)

	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(tube), q)
	run(t, d)
	j := take(t, q)
	require.Equal(t, "stock-1", j.ID())
	require.Equal(t, "p1", j.GroupID(), "the pipeline is the consuming one")
	require.Equal(t, int64(6), j.Priority())
	require.Equal(t, []byte("pl"), j.Body())
	require.Equal(t, 30*time.Second, j.(*Item).ttr, "its TTR was read from the server")
	require.NoError(t, j.Ack())
}

func TestStateCountsPerTube(t *testing.T) {
	requireBeanstalk(t)
	tubeA, tubeB := uniqueTube(t), uniqueTube(t)
	dA := newNamedDriver(t, "a", testConfig(tubeA), drivertest.NewQueue(0))
	dB := newNamedDriver(t, "b", testConfig(tubeB), drivertest.NewQueue(0))
	for i := range 3 {
		push(t, dA, msg(strconv.Itoa(i)))
	}
	late := msg("late")
	late.DelaySeconds = 60
	push(t, dA, late)
	requireCounts(t, dA, counts{3, 1, 0})
	requireCounts(t, dB, counts{0, 0, 0})
	st := state(t, dB)
	require.Equal(t, tubeB, st.Queue)
}

func TestTwoConsumersShareATube(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	qA, qB := drivertest.NewQueue(0), drivertest.NewQueue(0)
	confA := testConfig(tube)
	confA.Prefetch = 2
	dA := newNamedDriver(t, "a", confA, qA)
	dB := newNamedDriver(t, "b", confA, qB)
	const n = 30
	for i := range n {
		push(t, dA, msg(strconv.Itoa(i)))
	}
	run(t, dA)
	run(t, dB)

	var mu sync.Mutex
	seen := map[string]int{}
	perConsumer := map[string]int{}
	var wg sync.WaitGroup
	for name, q := range map[string]*drivertest.Queue{"a": qA, "b": qB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, ok := q.ExtractMinTimeout(time.Second)
				if !ok {
					return
				}
				_, _ = j.Context()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				seen[j.ID()]++
				perConsumer[name]++
				mu.Unlock()
				_ = j.Ack()
			}
		}()
	}
	wg.Wait()
	require.Len(t, seen, n)
	for id, k := range seen {
		require.Equal(t, 1, k, "job %s", id)
	}
	require.Positive(t, perConsumer["a"])
	require.Positive(t, perConsumer["b"])
}

func TestConnectionLossAndRecovery(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	p := drivertest.StartProxy(t, testAddr())
	conf := testConfig(tube)
	conf.Addr, conf.Address = "tcp://"+p.Addr(), p.Addr()
	q := drivertest.NewQueue(0)
	d := newDriver(t, conf, q)
	run(t, d)
	push(t, d, msg("before"))
	atWorker := take(t, q)
	push(t, d, msg("queued"))
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)

	p.Cut()
	// Pushes fail, clearly and within their context.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	start := time.Now()
	err := d.Push(ctx, msg("during"))
	cancel()
	require.ErrorContains(t, err, `beanstalk pipeline "p1": push job "during": `)
	require.ErrorContains(t, err, p.Addr())
	require.Less(t, time.Since(start), 2500*time.Millisecond)
	// State reports it, and the job whose reservation was lost left the queue.
	require.Eventually(t, func() bool {
		st := state(t, d)
		return !st.Ready && st.ErrorMessage != ""
	}, waitFor, tick)
	require.Eventually(t, func() bool { return q.Len() == 0 }, waitFor, tick)
	require.ErrorContains(t, atWorker.Ack(), "its reservation was lost")

	p.Restore()
	// Consumption resumes by itself: the two jobs released by the lost connection come back.
	got := map[string]bool{}
	for range 2 {
		j := take(t, q)
		got[j.ID()] = true
		require.NoError(t, j.Ack())
	}
	require.Equal(t, map[string]bool{"before": true, "queued": true}, got)
	push(t, d, msg("after"))
	j := take(t, q)
	require.Equal(t, "after", j.ID())
	require.NoError(t, j.Ack())
	require.Eventually(t, func() bool {
		st := state(t, d)
		return st.Ready && st.ErrorMessage == ""
	}, waitFor, tick)
	requireCounts(t, d, counts{0, 0, 0})
}

func TestPushToAStalledServerEndsWithItsContext(t *testing.T) {
	// A server that accepts connections but never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	conf := testConfig("t")
	conf.Addr, conf.Address = "tcp://"+ln.Addr().String(), ln.Addr().String()
	d := newDriver(t, conf, drivertest.NewQueue(0))
	for range 2 { // a second push must not wait behind the first
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err := d.Push(ctx, msg("x"))
		cancel()
		require.ErrorContains(t, err, "context deadline exceeded")
		require.Less(t, time.Since(start), time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st, err := d.State(ctx)
	require.NoError(t, err)
	require.Contains(t, st.ErrorMessage, "read the stats of tube")
}

func TestDeclaredPipelineThroughThePlugin(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	var p Plugin
	require.NoError(t, p.Init(drivertest.NopLogger(), drivertest.Configurer{
		"beanstalk": map[string]any{"addr": "tcp://" + testAddr(), "timeout": "5s"},
	}))
	q := drivertest.NewQueue(0)
	drv, err := p.DriverFromPipeline(drivertest.NewPipeline("dyn", "beanstalk", map[string]any{
		"tube": tube, "priority": "3", "prefetch": "4", "tube_priority": "1", "reserve_timeout": "5",
	}), q)
	require.NoError(t, err)
	d := drv.(*Driver)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	require.NoError(t, d.Push(context.Background(), drivertest.NewMessage("d1", "j", "dyn", []byte("x"))))
	st := state(t, d)
	require.Equal(t, uint64(3), st.Priority)
	require.Equal(t, tube, st.Queue)
	require.NoError(t, d.Run(context.Background(), nil))
	j := take(t, q)
	require.Equal(t, int64(3), j.Priority(), "priority 0 gets the declared pipeline's")
	require.NoError(t, j.Ack())
}

func TestPutPriorityAndTTR(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	conf := testConfig(tube)
	conf.TubePriority = 77
	conf.Timeout = 2500 * time.Millisecond
	d := newDriver(t, conf, drivertest.NewQueue(0))
	push(t, d, msg("x"))
	c := client(t)
	id, _, err := beanstalk.NewTube(c, tube).PeekReady()
	require.NoError(t, err)
	st, err := c.StatsJob(id)
	require.NoError(t, err)
	require.Equal(t, "77", st["pri"])
	require.Equal(t, "3", st["ttr"])
}

func TestJobTooBigIsExplained(t *testing.T) {
	requireBeanstalk(t)
	d := newDriver(t, testConfig(uniqueTube(t)), drivertest.NewQueue(0))
	m := msg("big")
	m.Body = make([]byte, 70_000)
	err := d.Push(context.Background(), m)
	require.ErrorContains(t, err, "more than beanstalkd's max-job-size")
	// The connection is still usable.
	push(t, d, msg("small"))
}

func TestConcurrentPushAckAndState(t *testing.T) {
	requireBeanstalk(t)
	tube := uniqueTube(t)
	q := drivertest.NewQueue(0)
	conf := testConfig(tube)
	conf.Prefetch = 5
	d := newDriver(t, conf, q)
	run(t, d)
	const n = 200
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 4 {
				m := msg(fmt.Sprintf("%d-%d", w, i))
				if i%3 == 0 {
					m.Hdrs = map[string][]string{"h": {"v"}}
				}
				if err := d.Push(context.Background(), m); err != nil {
					t.Error(err)
				}
				if _, err := d.State(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	acked := map[string]bool{}
	requeued := map[string]bool{}
	for len(acked) < n {
		j := take(t, q)
		require.False(t, acked[j.ID()], "job %s delivered after its ack", j.ID())
		if !requeued[j.ID()] && len(requeued) < n/3 {
			requeued[j.ID()] = true
			if len(requeued)%2 == 0 {
				require.NoError(t, j.Requeue(map[string][]string{"again": {"1"}}, 0))
			} else {
				require.NoError(t, j.NackWithOptions(true, 0))
			}
			continue
		}
		require.NoError(t, j.Ack())
		acked[j.ID()] = true
	}
	wg.Wait()
	requireNothing(t, q, quiet)
	requireCounts(t, d, counts{0, 0, 0})
}
