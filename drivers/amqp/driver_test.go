package amqp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

func TestPushConsumeAck(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)

	push(t, d, "job-1", `{"a":1}`, func(m *drivertest.Message) {
		m.Hdrs = map[string][]string{"rr-attempt": {"2"}, "x-custom": {"a", "b"}}
		m.Prio = 3
	})
	require.Equal(t, 1, a.count(n.queue), "Push returned after the broker confirmed it")
	st := state(t, d)
	require.Equal(t, int64(1), st.Active)
	require.False(t, st.Ready)
	require.Empty(t, st.ErrorMessage)

	run(t, d)
	it := take(t, q)
	require.Equal(t, "job-1", it.ID())
	require.Equal(t, "p1", it.GroupID())
	require.Equal(t, int64(3), it.Priority())
	require.Equal(t, []byte(`{"a":1}`), it.Body())
	require.Equal(t, map[string][]string{"rr-attempt": {"2"}, "x-custom": {"a", "b"}}, it.Headers())

	raw, err := it.Context()
	require.NoError(t, err)
	var ctx driverkit.JobContext
	require.NoError(t, json.Unmarshal(raw, &ctx))
	require.JSONEq(t, fmt.Sprintf(`{"id":"job-1","job":"test.job","driver":"amqp","headers":{"rr-attempt":["2"],"x-custom":["a","b"]},"queue":%q,"pipeline":"p1"}`, n.queue), string(raw))

	st = state(t, d)
	require.True(t, st.Ready)
	require.Equal(t, int64(1), st.Reserved)
	require.Equal(t, int64(0), st.Active)
	require.Equal(t, n.queue, st.Queue)
	require.Equal(t, "amqp", st.Driver)
	require.Equal(t, "p1", st.Pipeline)
	require.Equal(t, uint64(10), st.Priority)

	require.NoError(t, it.Ack())
	require.Equal(t, int64(0), state(t, d).Reserved)
	require.ErrorIs(t, it.Ack(), errAlreadySettled, "a second ack is refused")
	nothing(t, q, quiet)
	require.Equal(t, 0, a.count(n.queue))
}

func TestRunIsIdempotentAndNeedsQueue(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	run(t, d)
	run(t, d)
	ctx := context.Background()
	require.ErrorContains(t, d.Run(ctx, drivertest.NewPipeline("other", pluginName, nil)), "no such pipeline")
	require.ErrorContains(t, d.Resume(ctx, "p1"), "already in the active state")
	require.ErrorContains(t, d.Pause(ctx, "other"), "no such pipeline")

	conf := testConfig(n)
	conf.Queue = ""
	pushOnly := newTestDriver(t, a, "p2", conf, q)
	require.ErrorContains(t, pushOnly.Run(ctx, drivertest.NewPipeline("p2", pluginName, nil)), "empty queue name")
	push(t, pushOnly, "via-p2", "x")
	it := take(t, q)
	require.Equal(t, "via-p2", it.ID())
	require.Equal(t, "p1", it.GroupID(), "a job belongs to the pipeline that consumed it")
	require.NoError(t, it.Ack())
	st := state(t, pushOnly)
	require.Empty(t, st.ErrorMessage)
	require.Empty(t, st.Queue)
}

func TestNackVariants(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)

	t.Run("nack without requeue_on_fail drops", func(t *testing.T) {
		n := uniqueNames(t, a)
		q := drivertest.NewQueue(0)
		d := newTestDriver(t, a, "p1", testConfig(n), q)
		run(t, d)
		push(t, d, "j1", "x")
		require.NoError(t, take(t, q).Nack())
		nothing(t, q, quiet)
		require.Equal(t, 0, a.count(n.queue))
		require.Equal(t, int64(0), state(t, d).Reserved)
	})
	t.Run("nack with requeue_on_fail redelivers", func(t *testing.T) {
		n := uniqueNames(t, a)
		q := drivertest.NewQueue(0)
		conf := testConfig(n)
		conf.RequeueOnFail = true
		d := newTestDriver(t, a, "p1", conf, q)
		run(t, d)
		push(t, d, "j1", "x", func(m *drivertest.Message) { m.Hdrs = map[string][]string{"h": {"v"}} })
		require.NoError(t, take(t, q).Nack())
		it := take(t, q)
		require.Equal(t, "j1", it.ID())
		require.Equal(t, []string{"v"}, it.Headers()["h"])
		require.NoError(t, it.Ack())
	})
	t.Run("NackWithOptions", func(t *testing.T) {
		n := uniqueNames(t, a)
		q := drivertest.NewQueue(0)
		d := newTestDriver(t, a, "p1", testConfig(n), q)
		run(t, d)
		push(t, d, "j1", "x")
		require.NoError(t, take(t, q).NackWithOptions(true, 0))
		it := take(t, q)
		require.Equal(t, "j1", it.ID())
		require.NoError(t, it.NackWithOptions(false, 0))
		nothing(t, q, quiet)
		require.Equal(t, 0, a.count(n.queue))
		require.Equal(t, int64(0), state(t, d).Reserved)
	})
}

func TestRequeueWithDelayKeepsOneCopy(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	run(t, d)
	push(t, d, "j1", "payload", func(m *drivertest.Message) {
		m.Hdrs = map[string][]string{"rr-attempt": {"1"}, "keep": {"me"}}
		m.Prio = 4
	})
	it := take(t, q)
	start := time.Now()
	require.NoError(t, it.Requeue(map[string][]string{"rr-attempt": {"2"}}, 1))
	st := state(t, d)
	require.Equal(t, int64(1), st.Delayed, "the copy waits in a delay queue")
	require.Equal(t, int64(0), st.Reserved, "the original was acknowledged")
	require.Equal(t, int64(0), st.Active)
	require.ErrorIs(t, it.Ack(), errAlreadySettled)

	again := take(t, q)
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
	require.Equal(t, "j1", again.ID())
	require.Equal(t, int64(4), again.Priority())
	require.Equal(t, []byte("payload"), again.Body())
	require.Equal(t, map[string][]string{"rr-attempt": {"2"}, "keep": {"me"}}, again.Headers())
	require.Equal(t, int64(0), state(t, d).Delayed)

	// Requeue without delay, then NackWithOptions with a delay (the plugin's retry after a crash).
	require.NoError(t, again.Requeue(nil, 0))
	third := take(t, q)
	require.Equal(t, "j1", third.ID())
	require.NoError(t, third.NackWithOptions(true, 1))
	fourth := take(t, q)
	require.Equal(t, "j1", fourth.ID())
	require.NoError(t, fourth.Ack())
	nothing(t, q, quiet)
	require.Equal(t, 0, a.count(n.queue))
}

func TestDelayedPush(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	run(t, d)
	start := time.Now()
	push(t, d, "late", "x", func(m *drivertest.Message) { m.DelaySeconds = 1 })
	push(t, d, "late2", "x", func(m *drivertest.Message) { m.DelaySeconds = 1 })
	push(t, d, "now", "x")
	require.Equal(t, "now", take(t, q).ID())
	st := state(t, d)
	require.Equal(t, int64(2), st.Delayed)
	for range 2 {
		it := take(t, q)
		require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
		require.Contains(t, []string{"late", "late2"}, it.ID())
		require.NoError(t, it.Ack())
	}
	require.Equal(t, int64(0), state(t, d).Delayed)

	ctx := context.Background()
	err := d.Push(ctx, &drivertest.Message{JobID: "too-late", Pipeline: "p1", DelaySeconds: 1 << 40})
	require.ErrorContains(t, err, "longer than the maximum")
}

// roadrunner#1792: pipelines on different exchanges with the same queue name and delay shared one
// delay queue, so jobs went to the wrong exchange. Delay queues now carry every part of the target.
func TestDelayQueuesOfPipelinesDoNotCollide(t *testing.T) {
	requireRabbit(t)
	require.NotEqual(t, delayQueueName(1000, "ex1", "q", "rk"), delayQueueName(1000, "ex2", "q", "rk"))
	require.NotEqual(t, delayQueueName(1000, "a.b", "c", "d"), delayQueueName(1000, "a", "b.c", "d"))
	require.NotEqual(t, delayQueueName(1000, "ex", "q", "rk1"), delayQueueName(1000, "ex", "q", "rk2"))
	require.NotEqual(t, delayQueueName(1000, "ex", "q", "rk"), delayQueueName(2000, "ex", "q", "rk"))
	long := delayQueueName(1000, strings.Repeat("e", 255), strings.Repeat("q", 255), "k")
	require.LessOrEqual(t, len(long), 255)
	require.True(t, strings.HasPrefix(delayQueueName(1500, "ex", "q", "rk"), "delayed-1500.ex.q.rk."))

	a := newAdmin(t)
	n1, n2 := uniqueNames(t, a), uniqueNames(t, a)
	n2.queue = n1.queue + "-b"
	t.Cleanup(func() { a.deleteQueue(n2.queue) })
	q1, q2 := drivertest.NewQueue(0), drivertest.NewQueue(0)
	c1, c2 := testConfig(n1), testConfig(n2)
	c2.RoutingKey = n1.queue // same routing key, other exchange
	d1 := newTestDriver(t, a, "p1", c1, q1)
	d2 := newTestDriver(t, a, "p2", c2, q2)
	run(t, d1)
	run(t, d2)
	push(t, d1, "for-1", "x", func(m *drivertest.Message) { m.DelaySeconds = 1 })
	push(t, d2, "for-2", "x", func(m *drivertest.Message) { m.DelaySeconds = 1 })
	it1, it2 := take(t, q1), take(t, q2)
	require.Equal(t, "for-1", it1.ID())
	require.Equal(t, "for-2", it2.ID())
	require.NoError(t, it1.Ack())
	require.NoError(t, it2.Ack())
	nothing(t, q1, quiet)
	nothing(t, q2, quiet)
}

// The stock driver bound delay queues to the exchange, so on a fanout exchange a delayed job
// reached the queues at once (and the delay queue copied every later publish).
func TestDelayedPushOnFanout(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	conf := testConfig(n)
	conf.ExchangeType = amqp.ExchangeFanout
	conf.RoutingKey = ""
	d := newTestDriver(t, a, "p1", conf, q)
	run(t, d)
	start := time.Now()
	push(t, d, "late", "x", func(m *drivertest.Message) { m.DelaySeconds = 1 })
	push(t, d, "now", "x")
	require.Equal(t, "now", take(t, q).ID())
	it := take(t, q)
	require.Equal(t, "late", it.ID())
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
	nothing(t, q, quiet)
}

func TestPriorityFromHeaders(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	conf := testConfig(n)
	conf.Priority = 7
	d := newTestDriver(t, a, "p1", conf, q)
	push(t, d, "low", "x", func(m *drivertest.Message) { m.Prio = 50 })
	push(t, d, "default", "x")
	push(t, d, "high", "x", func(m *drivertest.Message) { m.Prio = 1 })
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, tick)
	var order []string
	var prios []int64
	for range 3 {
		it := take(t, q)
		order = append(order, it.ID())
		prios = append(prios, it.Priority())
		require.NoError(t, it.Ack())
	}
	require.Equal(t, []string{"high", "default", "low"}, order)
	require.Equal(t, []int64{1, 7, 50}, prios)
}

func TestPauseResumeRepeatedly(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	ctx := context.Background()
	require.ErrorContains(t, d.Pause(ctx, "p1"), "nothing to pause")
	run(t, d)
	for i := range 3 {
		push(t, d, fmt.Sprintf("before-pause-%d", i), "x")
		held := take(t, q)
		require.NoError(t, d.Pause(ctx, "p1"))
		require.ErrorContains(t, d.Pause(ctx, "p1"), "nothing to pause")
		require.False(t, state(t, d).Ready)
		require.Empty(t, state(t, d).ErrorMessage)

		id := fmt.Sprintf("while-paused-%d", i)
		push(t, d, id, "x")
		nothing(t, q, quiet)
		require.Equal(t, int64(1), state(t, d).Active)
		require.NoError(t, held.Ack(), "a job taken before the pause is acknowledged on the same channel")

		require.NoError(t, d.Resume(ctx, "p1"))
		require.True(t, state(t, d).Ready)
		it := take(t, q)
		require.Equal(t, id, it.ID())
		require.NoError(t, it.Ack())
	}
	nothing(t, q, quiet)
	require.Equal(t, 0, a.count(n.queue))
}

func TestStopReturnsJobsAndIsBounded(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	run(t, d)
	for i := range 3 {
		push(t, d, fmt.Sprintf("j%d", i), "x")
	}
	require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, tick)
	atWorker := take(t, q)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, d.Stop(ctx))
	require.Less(t, time.Since(start), 3*time.Second)
	require.Equal(t, uint64(0), q.Len(), "the pipeline's jobs left the shared queue")
	require.Eventually(t, func() bool { return a.count(n.queue) == 3 }, waitFor, tick, "unacknowledged jobs are back in the queue")
	require.ErrorIs(t, atWorker.Ack(), errChannelGone)
	require.NoError(t, d.Stop(ctx), "Stop is idempotent")
	require.ErrorContains(t, d.Push(ctx, drivertest.NewMessage("late", "j", "p1", nil)), "is stopped")
	require.ErrorContains(t, d.Resume(ctx, "p1"), "is stopped")
	st := state(t, d)
	require.False(t, st.Ready)
}

func TestDeleteQueueOnStop(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	conf := testConfig(n)
	conf.DeleteQueueOnStop = true
	d := newTestDriver(t, a, "p1", conf, drivertest.NewQueue(0))
	push(t, d, "j", "x")
	require.Equal(t, 1, a.count(n.queue))
	require.NoError(t, d.Stop(context.Background()))
	require.Equal(t, -1, a.count(n.queue))
}

func TestAutoAck(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	run(t, d)
	push(t, d, "auto", "x", func(m *drivertest.Message) { m.AutoAckFlag = true })
	it := take(t, q)
	require.Equal(t, int64(0), state(t, d).Reserved, "acknowledged on receipt")
	require.NoError(t, it.Nack())
	require.NoError(t, it.Requeue(nil, 0))
	require.NoError(t, it.Ack())
	nothing(t, q, quiet)
	require.Equal(t, 0, a.count(n.queue))
}

func TestMultipleAck(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	conf := testConfig(n)
	conf.MultipleAck = true
	d := newTestDriver(t, a, "p1", conf, q)
	for i := range 4 {
		push(t, d, fmt.Sprintf("j%d", i), "x")
	}
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 4 }, waitFor, tick)
	items := make([]*Item, 4)
	for i := range items {
		items[i] = take(t, q)
		require.Equal(t, fmt.Sprintf("j%d", i), items[i].ID())
	}
	require.NoError(t, items[1].Requeue(nil, 0)) // single ack of j1 after its copy
	copyOfJ1 := take(t, q)
	require.Equal(t, "j1", copyOfJ1.ID())
	require.NoError(t, items[2].Ack()) // acknowledges j0 and j2
	require.Equal(t, int64(2), state(t, d).Reserved, "j3 and the copy of j1 are left")
	require.NoError(t, items[0].Ack(), "j0 was acknowledged by the multiple ack")
	require.NoError(t, items[3].Ack())
	require.NoError(t, copyOfJ1.Ack())
	require.Equal(t, int64(0), state(t, d).Reserved)
	nothing(t, q, quiet)
	// The channel survived (no double ack): the pipeline still consumes.
	push(t, d, "after", "x")
	it := take(t, q)
	require.Equal(t, "after", it.ID())
	require.NoError(t, it.Ack())
	require.Equal(t, 0, a.count(n.queue))
}

func TestRoutingKeyHeaderAndUnroutable(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	run(t, d)

	// x-routing-key overrides the routing key: no queue is bound for it, so the broker returns the
	// job and Push fails instead of losing it.
	ctx := context.Background()
	m := drivertest.NewMessage("lost", "j", "p1", nil)
	m.Hdrs = map[string][]string{"x-routing-key": {"nowhere"}}
	err := d.Push(ctx, m)
	require.ErrorContains(t, err, `no queue is bound to exchange "`+n.exchange+`" for routing key "nowhere"`)
	m.Hdrs = map[string][]string{"x-routing-key": {n.queue}, "other": {"1"}}
	m.JobID = "routed"
	require.NoError(t, d.Push(ctx, m))
	it := take(t, q)
	require.Equal(t, "routed", it.ID())
	require.Equal(t, map[string][]string{"other": {"1"}}, it.Headers())
	require.NoError(t, it.Ack())

	conf := testConfig(n)
	conf.RoutingKey = ""
	conf.Queue = ""
	noKey := newTestDriver(t, a, "p2", conf, q)
	require.ErrorContains(t, noKey.Push(ctx, drivertest.NewMessage("x", "j", "p2", nil)), "empty routing key")
}

// Messages the stock driver (or any producer) published are read; ours are readable by it.
func TestWireCompatibility(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)

	push(t, d, "ours", "body", func(m *drivertest.Message) {
		m.Hdrs = map[string][]string{"rr-attempt": {"3"}}
		m.Prio = 5
		m.DelaySeconds = 0
	})
	got := a.get(n.queue)
	require.Equal(t, "ours", got.Headers[jobs.RRID])
	require.Equal(t, "test.job", got.Headers[jobs.RRJob])
	require.Equal(t, "p1", got.Headers[jobs.RRPipeline])
	require.Equal(t, int64(5), got.Headers[jobs.RRPriority], "the stock reader type-asserts int64")
	require.Equal(t, int32(0), got.Headers[jobs.RRDelay])
	require.Equal(t, false, got.Headers[jobs.RRAutoAck])
	require.IsType(t, []byte(nil), got.Headers[jobs.RRHeaders])
	require.JSONEq(t, `{"rr-attempt":["3"]}`, string(got.Headers[jobs.RRHeaders].([]byte)))
	require.Equal(t, uint8(amqp.Persistent), got.DeliveryMode)
	require.Equal(t, "application/octet-stream", got.ContentType)

	// A message written the way the stock driver writes it.
	a.publish(n.exchange, n.queue, amqp.Publishing{
		Headers: amqp.Table{
			jobs.RRID: "stock-1", jobs.RRJob: "App\\Job", jobs.RRPipeline: "elsewhere",
			jobs.RRHeaders: []byte(`{"rr-attempt":["2"],"Traceparent":["00-abc"]}`), jobs.RRDelay: 0,
			jobs.RRPriority: int64(2), jobs.RRAutoAck: false,
		},
		Body: []byte("stock"),
	})
	// A foreign message: no rr_* headers.
	a.publish(n.exchange, n.queue, amqp.Publishing{
		MessageId: "foreign-1",
		Headers:   amqp.Table{"tenant": "acme", "n": int32(5), "list": []any{"a", int64(1)}},
		Body:      []byte("foreign"),
	})
	run(t, d)
	stock := take(t, q)
	require.Equal(t, "stock-1", stock.ID())
	require.Equal(t, int64(2), stock.Priority())
	require.Equal(t, "p1", stock.GroupID())
	require.Equal(t, map[string][]string{"rr-attempt": {"2"}, "Traceparent": {"00-abc"}}, stock.Headers())
	raw, err := stock.Context()
	require.NoError(t, err)
	require.Contains(t, string(raw), `"job":"App\\Job"`)
	require.NoError(t, stock.Ack())

	foreign := take(t, q)
	require.Equal(t, "foreign-1", foreign.ID())
	require.Equal(t, int64(10), foreign.Priority())
	require.Equal(t, map[string][]string{"tenant": {"acme"}, "n": {"5"}, "list": {"a", "1"}}, foreign.Headers())
	raw, err = foreign.Context()
	require.NoError(t, err)
	require.Contains(t, string(raw), `"job":"deduced_by_rr"`)
	require.NoError(t, foreign.Ack())
}

func TestQueueHeadersAndTopologyConflicts(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	conf := testConfig(n)
	table, err := parseTable(`{"x-max-length": 2, "x-overflow": "reject-publish"}`)
	require.NoError(t, err)
	conf.QueueHeaders = table
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", conf, q)
	push(t, d, "1", "x")
	push(t, d, "2", "x")
	ctx := context.Background()
	err = d.Push(ctx, drivertest.NewMessage("3", "j", "p1", nil))
	require.ErrorContains(t, err, "refused", "reject-publish nacks the third: Push reports it")
	require.Equal(t, 2, a.count(n.queue))

	// The same exchange with another type cannot be declared: the constructor says so.
	other := testConfig(n)
	other.ExchangeType = amqp.ExchangeFanout
	_, err = NewDriver(nil, "p2", other, q)
	require.ErrorContains(t, err, `declare exchange "`+n.exchange+`"`)
	require.ErrorContains(t, err, `p2`)
}

func TestUnreachableBrokerAtStart(t *testing.T) {
	p := drivertest.StartProxy(t, "127.0.0.1:1")
	p.Cut()
	conf := Config{Addr: proxyURL(p), Queue: "q", RoutingKey: "q"}
	start := time.Now()
	_, err := NewDriver(nil, "p1", conf, drivertest.NewQueue(0))
	require.Error(t, err)
	require.Contains(t, err.Error(), `amqp pipeline "p1": connect to amqp://guest@`)
	require.NotContains(t, err.Error(), "guest:guest")
	require.Less(t, time.Since(start), 10*time.Second)
}

// The connection is cut while jobs are in flight: pushes fail at once with a clear error, State
// reports the pipeline not ready, and after the network is back the driver reconnects and consumes
// again by itself. Jobs that were not acknowledged are delivered again; none is lost.
func TestReconnectAfterConnectionCut(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	p := drivertest.StartProxy(t, brokerHostPort(t, testAddr()))
	conf := testConfig(n)
	conf.Addr = proxyURL(p)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", conf, q)
	run(t, d)
	for i := range 3 {
		push(t, d, fmt.Sprintf("j%d", i), "x")
	}
	require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, tick)
	atWorker := take(t, q)

	p.Cut()
	require.Eventually(t, func() bool { return q.Len() == 0 }, waitFor, tick, "jobs of the dead channel leave the shared queue")
	st := state(t, d)
	require.False(t, st.Ready)
	require.Contains(t, st.ErrorMessage, "not connected to RabbitMQ")

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := d.Push(ctx, drivertest.NewMessage("while-down", "j", "p1", nil))
	require.ErrorContains(t, err, errNotConnected.Error())
	require.Contains(t, err.Error(), `job "while-down" was not pushed`)
	require.Less(t, time.Since(start), time.Second)
	require.ErrorIs(t, atWorker.Ack(), errChannelGone)
	require.Equal(t, int64(0), state(t, d).Reserved)

	p.Restore()
	require.Eventually(t, func() bool {
		st := state(t, d)
		return st.Ready && st.ErrorMessage == ""
	}, waitFor, tick)
	seen := map[string]int{}
	for range 3 {
		it := take(t, q)
		seen[it.ID()]++
		require.NoError(t, it.Ack())
	}
	require.Equal(t, map[string]int{"j0": 1, "j1": 1, "j2": 1}, seen)
	push(t, d, "after", "x")
	it := take(t, q)
	require.Equal(t, "after", it.ID())
	require.NoError(t, it.Ack())
	nothing(t, q, quiet)
}

// A paused pipeline reconnects too, and stays paused.
func TestReconnectWhilePaused(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	p := drivertest.StartProxy(t, brokerHostPort(t, testAddr()))
	conf := testConfig(n)
	conf.Addr = proxyURL(p)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", conf, q)
	p.Cut()
	require.Eventually(t, func() bool { return state(t, d).ErrorMessage != "" }, waitFor, tick)
	ctx := context.Background()
	require.ErrorContains(t, d.Run(ctx, nil), errNotConnected.Error())
	p.Restore()
	require.Eventually(t, func() bool { return state(t, d).ErrorMessage == "" }, waitFor, tick)
	push(t, d, "j", "x")
	nothing(t, q, quiet)
	run(t, d)
	it := take(t, q)
	require.NoError(t, it.Ack())
}

// RabbitMQ closes a consumer channel on consumer_timeout or a channel error; the driver opens a
// new one and consumes again (roadrunner#2091, #1103).
func TestConsumerChannelClosedRestarts(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	run(t, d)
	push(t, d, "j0", "x")
	push(t, d, "j1", "x")
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick)
	atWorker := take(t, q)

	g := d.currentGen()
	require.NoError(t, g.ch.Close())
	require.ErrorIs(t, atWorker.Ack(), errChannelGone)
	seen := map[string]bool{}
	for len(seen) < 2 {
		it := take(t, q)
		if _, err := it.Context(); err != nil {
			// Taken from the shared queue before the dead channel's jobs were removed from it: the
			// plugin nacks it, and RabbitMQ delivers it again.
			require.ErrorIs(t, err, errChannelGone)
			require.Same(t, g, it.gen)
			require.Error(t, it.Nack())
			continue
		}
		require.NotSame(t, g, it.gen)
		require.False(t, seen[it.ID()], "delivered once after the restart")
		seen[it.ID()] = true
		require.NoError(t, it.Ack())
	}
	require.Equal(t, map[string]bool{"j0": true, "j1": true}, seen)
	nothing(t, q, quiet)
	require.True(t, state(t, d).Ready)
}

// A queue deleted under a running consumer (the broker cancels the consumer) is declared again.
func TestQueueDeletedIsRecreated(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	run(t, d)
	a.deleteQueue(n.queue)
	require.Eventually(t, func() bool { return a.count(n.queue) == 0 }, waitFor, tick)
	require.Eventually(t, func() bool { return state(t, d).Ready }, waitFor, tick)
	push(t, d, "j", "x")
	it := take(t, q)
	require.Equal(t, "j", it.ID())
	require.NoError(t, it.Ack())
}

// A publish to a deleted exchange closes the publishing channel; the driver reopens it and
// declares the exchange again.
func TestExchangeDeletedIsRecreated(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	run(t, d)
	a.deleteExchange(n.exchange)
	ctx := context.Background()
	err := d.Push(ctx, drivertest.NewMessage("lost", "j", "p1", nil))
	require.Error(t, err)
	require.Eventually(t, func() bool {
		return d.Push(ctx, drivertest.NewMessage("j", "j", "p1", nil)) == nil
	}, waitFor, 50*time.Millisecond)
	it := take(t, q)
	require.Equal(t, "j", it.ID())
	require.NoError(t, it.Ack())
}

// Two drivers share one queue: every job runs once.
func TestTwoConsumersShareAQueue(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q1, q2 := drivertest.NewQueue(0), drivertest.NewQueue(0)
	d1 := newTestDriver(t, a, "p1", testConfig(n), q1)
	d2 := newTestDriver(t, a, "p1", testConfig(n), q2)
	run(t, d1)
	run(t, d2)
	const total = 40
	for i := range total {
		push(t, d1, fmt.Sprintf("j%d", i), "x")
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for _, q := range []*drivertest.Queue{q1, q2} {
		wg.Go(func() {
			for {
				j, ok := q.ExtractMinTimeout(quiet * 2)
				if !ok {
					return
				}
				mu.Lock()
				seen[j.ID()]++
				mu.Unlock()
				_ = j.Ack()
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, total)
	for id, c := range seen {
		require.Equal(t, 1, c, id)
	}
}

func TestPrefetchBoundsReserved(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(0)
	conf := testConfig(n)
	conf.Prefetch = 2
	d := newTestDriver(t, a, "p1", conf, q)
	for i := range 5 {
		push(t, d, fmt.Sprintf("j%d", i), "x")
	}
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick)
	nothing := func() bool { return q.Len() == 2 }
	time.Sleep(quiet)
	require.True(t, nothing())
	st := state(t, d)
	require.Equal(t, int64(2), st.Reserved)
	require.Equal(t, int64(3), st.Active)
	for range 5 {
		require.NoError(t, take(t, q).Ack())
	}
}

func TestContextOfJobFromDeadChannelFails(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	d := newTestDriver(t, a, "p1", testConfig(n), drivertest.NewQueue(0))
	g := &consumerGen{closed: make(chan struct{}), outstanding: map[uint64]*Item{}}
	it := &Item{drv: d, gen: g, id: "x"}
	d.mu.Lock()
	g.dead = true
	d.mu.Unlock()
	_, err := it.Context()
	require.True(t, errors.Is(err, errChannelGone))
	require.ErrorIs(t, it.Requeue(nil, 1), errChannelGone)
}

// A broker that stops answering (no TCP close) does not hang Push, State or Stop: each is bounded
// by its context.
func TestHungBrokerIsBoundedByContexts(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	p := drivertest.StartProxy(t, brokerHostPort(t, testAddr()))
	conf := testConfig(n)
	conf.Addr = proxyURL(p)
	q := drivertest.NewQueue(0)
	d := newTestDriver(t, a, "p1", conf, q)
	t.Cleanup(func() { a.deleteQueue(DelayQueueName(3*time.Second, n.exchange, n.queue, n.queue)) })
	run(t, d)
	push(t, d, "j", "x")
	it := take(t, q)

	p.Freeze(true)
	defer p.Freeze(false)
	bounded := func(what string, limit time.Duration, fn func(ctx context.Context)) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		fn(ctx)
		require.Less(t, time.Since(start), limit, what)
	}
	bounded("push", 2*time.Second, func(ctx context.Context) {
		err := d.Push(ctx, drivertest.NewMessage("hung", "j", "p1", nil))
		require.ErrorContains(t, err, "did not confirm")
	})
	bounded("delayed push", 2*time.Second, func(ctx context.Context) {
		require.Error(t, d.Push(ctx, &drivertest.Message{JobID: "hung2", Pipeline: "p1", DelaySeconds: 3}))
	})
	bounded("state", 2*time.Second, func(ctx context.Context) {
		st, err := d.State(ctx)
		require.NoError(t, err)
		require.Contains(t, st.ErrorMessage, "context deadline exceeded")
	})
	bounded("pause", 2*time.Second, func(ctx context.Context) { _ = d.Pause(ctx, "p1") })
	require.NoError(t, it.Ack(), "an ack is a frame written to the socket, it does not wait")
	bounded("stop", 3*time.Second, func(ctx context.Context) { require.NoError(t, d.Stop(ctx)) })
}

// Stop does not hang on a consumer blocked inserting into a full shared queue.
func TestStopWithFullSharedQueue(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	q := drivertest.NewQueue(1)
	d := newTestDriver(t, a, "p1", testConfig(n), q)
	for i := range 3 {
		push(t, d, fmt.Sprintf("j%d", i), "x")
	}
	run(t, d)
	require.Eventually(t, func() bool {
		return q.Len() == 1 && state(t, d).Reserved == 2 /* one in the queue, one blocked in Insert */
	}, waitFor, tick)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, d.Stop(ctx))
	require.Less(t, time.Since(start), 3*time.Second)
	require.Equal(t, uint64(0), q.Len())
	require.Eventually(t, func() bool { return a.count(n.queue) == 3 }, waitFor, tick)
}
