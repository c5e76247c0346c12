package nats

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

func TestPushConsumeAck(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	h := newHarness(t, "p1", conf).run()
	h.push("a", func(m *drivertest.Message) {
		m.Hdrs = map[string][]string{"X-Trace": {"1", "2"}, "bad key:": {"v\r\nx"}}
	})
	it := h.take(5 * time.Second)
	require.Equal(t, "a", it.ID())
	require.Equal(t, []byte("payload-a"), it.Body())
	require.Equal(t, DefaultPriority, it.Priority())
	c := contextOf(t, it)
	require.Equal(t, driverContext{
		ID: "a", Job: "job.a", Driver: "nats", Queue: conf.Stream, Pipeline: "p1",
		Headers: map[string][]string{"X-Trace": {"1", "2"}, "bad key:": {"v\r\nx"}, subjectHeader: {conf.Subject}},
	}, c)
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Reserved == 1 && st.Active == 0 })
	require.NoError(t, it.Ack())
	require.NoError(t, it.Ack(), "a second ack is a no-op")
	st := h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Reserved == 0 })
	require.Equal(t, jobs.State{Pipeline: "p1", Driver: "nats", Queue: conf.Subject, Priority: 10, Ready: true}, *st)
	h.none(300 * time.Millisecond)
}

func TestJobPriority(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	conf.Priority = 3
	h := newHarness(t, "prio", conf)
	h.push("default")
	h.push("explicit", func(m *drivertest.Message) { m.Prio = 1 })
	h.run()
	got := map[string]int64{}
	for range 2 {
		it := h.take(5 * time.Second)
		got[it.ID()] = it.Priority()
		require.NoError(t, it.Ack())
	}
	require.Equal(t, map[string]int64{"default": 3, "explicit": 1}, got)
}

func TestNackVariants(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "nack", testConf(t)).run()

	h.push("plain")
	it := h.take(5 * time.Second)
	require.NoError(t, it.Nack())
	again := h.take(5 * time.Second)
	require.Equal(t, "plain", again.ID(), "plain Nack delivers the job again")
	require.NoError(t, again.NackWithOptions(true, 0))
	again = h.take(5 * time.Second)
	require.Equal(t, "plain", again.ID(), "NackWithOptions(true, 0) delivers the job again")
	require.NoError(t, again.NackWithOptions(false, 0))
	h.none(500 * time.Millisecond)

	h.push("delayed", func(m *drivertest.Message) { m.Hdrs = map[string][]string{"k": {"v"}} })
	it = h.take(5 * time.Second)
	start := time.Now()
	require.NoError(t, it.NackWithOptions(true, 1))
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Reserved == 0 && st.Delayed == 1 })
	again = h.take(5 * time.Second)
	require.GreaterOrEqual(t, time.Since(start), time.Second)
	require.Equal(t, "delayed", again.ID())
	require.Equal(t, []string{"v"}, again.Headers()["k"], "headers are kept")
	require.Equal(t, []byte("payload-delayed"), again.Body())
	require.NoError(t, again.Ack())
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Reserved == 0 && st.Delayed == 0 && st.Active == 0 })
}

func TestRequeueMergesHeadersAndDelays(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "rq", testConf(t)).run()
	h.push("r", func(m *drivertest.Message) {
		m.Hdrs = map[string][]string{"keep": {"1"}, "rr-attempt": {"1"}}
		m.Prio = 4
	})
	it := h.take(5 * time.Second)
	require.NoError(t, it.Requeue(map[string][]string{"rr-attempt": {"2"}, "new": {"x"}}, 0))
	again := h.take(5 * time.Second)
	require.Equal(t, "r", again.ID())
	require.Equal(t, int64(4), again.Priority())
	c := contextOf(t, again)
	require.Equal(t, map[string][]string{"keep": {"1"}, "rr-attempt": {"2"}, "new": {"x"}, subjectHeader: {h.conf.Subject}}, c.Headers)

	start := time.Now()
	require.NoError(t, again.Requeue(map[string][]string{"rr-attempt": {"3"}}, 2))
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Delayed == 1 && st.Reserved == 0 })
	third := h.take(6 * time.Second)
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second)
	require.Equal(t, []string{"3"}, third.Headers()["rr-attempt"])
	require.Equal(t, []string{"x"}, third.Headers()["new"])
	require.NoError(t, third.Ack())
	require.Error(t, third.Requeue(nil, 0), "requeue after ack is refused")
	h.none(300 * time.Millisecond)
}

func TestDelayedPush(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "delay", testConf(t))
	start := time.Now()
	h.push("later", func(m *drivertest.Message) { m.DelaySeconds = 2 })
	h.push("now")
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Delayed == 1 && st.Active == 1 })
	h.run()
	it := h.take(5 * time.Second)
	require.Equal(t, "now", it.ID())
	require.NoError(t, it.Ack())
	it = h.take(5 * time.Second)
	require.Equal(t, "later", it.ID())
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second)
	require.NoError(t, it.Ack())
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Delayed == 0 && st.Active == 0 && st.Reserved == 0 })
}

// The stock driver created a new consumer on every Run/Resume and replayed the whole stream.
func TestPauseResumeAndRestartDoNotReplay(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	h := newHarness(t, "durable", conf).run()
	for _, id := range []string{"1", "2"} {
		h.push(id)
		require.NoError(t, h.take(5*time.Second).Ack())
	}
	for range 3 {
		require.NoError(t, h.d.Pause(context.Background(), "durable"))
		require.False(t, h.state().Ready)
		require.Error(t, h.d.Pause(context.Background(), "durable"), "pausing twice")
		h.push("while-paused")
		h.none(300 * time.Millisecond)
		h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Active == 1 })
		require.NoError(t, h.d.Resume(context.Background(), "durable"))
		require.Error(t, h.d.Resume(context.Background(), "durable"), "resuming twice")
		it := h.take(5 * time.Second)
		require.Equal(t, "while-paused", it.ID())
		require.NoError(t, it.Ack())
		h.none(200 * time.Millisecond)
	}
	h.push("left")
	h.stop()

	h2 := newHarness(t, "durable", conf).run()
	it := h2.take(5 * time.Second)
	require.Equal(t, "left", it.ID(), "only the unacked job comes back")
	require.NoError(t, it.Ack())
	h2.none(500 * time.Millisecond)
}

func TestStopHandsBackQueuedJobs(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	h := newHarness(t, "stop", conf)
	for _, id := range []string{"a", "b", "c"} {
		h.push(id)
	}
	h.run()
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Reserved == 3 })
	require.Eventually(t, func() bool { return h.q.Len() == 3 }, 5*time.Second, 20*time.Millisecond)
	start := time.Now()
	h.stop()
	require.Less(t, time.Since(start), 3*time.Second)
	require.Zero(t, h.q.Len(), "stop removes the pipeline's jobs from the shared queue")
	require.Error(t, h.d.Push(context.Background(), drivertest.NewMessage("x", "x", "stop", nil)))
	require.Error(t, h.d.Run(context.Background(), drivertest.NewPipeline("stop", pluginName, nil)))
	require.NoError(t, h.d.Stop(context.Background()), "stop is idempotent")

	// Handed back with a Nak: another consumer gets them at once, not after ack_wait (30s).
	h2 := newHarness(t, "stop", conf)
	h2.run()
	got := map[string]bool{}
	for range 3 {
		it := h2.take(5 * time.Second)
		got[it.ID()] = true
		require.NoError(t, it.Ack())
	}
	require.Len(t, got, 3)
}

func TestAutoAck(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "auto", testConf(t)).run()
	h.push("aa", func(m *drivertest.Message) { m.AutoAckFlag = true })
	it := h.take(5 * time.Second)
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Reserved == 0 && st.Active == 0 })
	require.NoError(t, it.Requeue(nil, 0))
	require.NoError(t, it.Nack())
	require.NoError(t, it.Ack())
	h.none(500 * time.Millisecond)
}

func TestLongJobIsNotRedelivered(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	conf.AckWait = time.Second
	h := newHarness(t, "long", conf).run()
	h.push("slow")
	it := h.take(5 * time.Second)
	h.none(3500 * time.Millisecond) // 3.5 x ack_wait
	require.NoError(t, it.Ack())
	h.none(1500 * time.Millisecond)
}

func TestDeliverNew(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	js := testJS(t)
	// The stream exists with an old message before the pipeline's consumer is created.
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: conf.Stream, Subjects: []string{conf.Subject}})
	require.NoError(t, err)
	_, err = js.Publish(context.Background(), conf.Subject, []byte(`{"id":"old","job":"j","payload":""}`))
	require.NoError(t, err)

	conf.DeliverNew = true
	h := newHarness(t, "new", conf).run()
	h.push("fresh")
	it := h.take(5 * time.Second)
	require.Equal(t, "fresh", it.ID())
	require.NoError(t, it.Ack())
	h.none(300 * time.Millisecond)

	conf.DeliverNew = false
	h2 := newHarness(t, "all", conf).run()
	seen := map[string]bool{}
	for range 2 {
		it := h2.take(5 * time.Second)
		seen[it.ID()] = true
		require.NoError(t, it.Ack())
	}
	require.Equal(t, map[string]bool{"old": true, "fresh": true}, seen)
}

func TestDeleteAfterAckAndDeleteStreamOnStop(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	conf.DeleteAfterAck = true
	conf.DeleteStreamOnStop = true
	js := testJS(t)
	h := newHarness(t, "del", conf).run()
	h.push("a")
	h.push("b")
	a := h.take(5 * time.Second)
	b := h.take(5 * time.Second)
	require.NoError(t, a.Ack())
	require.NoError(t, b.NackWithOptions(false, 0))
	require.Eventually(t, func() bool {
		s, err := js.Stream(context.Background(), conf.Stream)
		return err == nil && s.CachedInfo().State.Msgs == 0
	}, 5*time.Second, 50*time.Millisecond, "acked and terminated messages are deleted")
	h.stop()
	_, err := js.Stream(context.Background(), conf.Stream)
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
}

// The stock driver's consumer had no filter subject: pipelines sharing a stream got each other's
// jobs. Here each pipeline sees its own subject only, and the stream keeps its other settings.
func TestSharedStream(t *testing.T) {
	t.Parallel()
	requireNATS(t)
	stream := newStreamName(t)
	js := testJS(t)
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: stream, Subjects: []string{stream + ".other"}, MaxAge: time.Hour,
	})
	require.NoError(t, err)
	base := Config{Addr: natsURL(), Stream: stream, Prefetch: 10}
	c1, c2 := base, base
	c1.Subject, c2.Subject = stream+".one", stream+".two"
	// Built concurrently: both add their subjects to the same stream.
	q1 := drivertest.NewQueue(0)
	var d1 *Driver
	var err1 error
	done := make(chan struct{})
	go func() { defer close(done); d1, err1 = NewDriver(nil, "one", c1, q1) }()
	h2 := newHarness(t, "two", c2)
	<-done
	require.NoError(t, err1)
	h1 := &harness{t: t, d: d1, q: q1, conf: d1.conf, name: "one"}
	t.Cleanup(h1.stop)
	h1.run()
	h2.run()
	s, err := js.Stream(context.Background(), stream)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{stream + ".other", c1.Subject, c1.Subject + ".rr-delayed", c2.Subject, c2.Subject + ".rr-delayed"}, s.CachedInfo().Config.Subjects)
	require.Equal(t, time.Hour, s.CachedInfo().Config.MaxAge)

	h1.push("for-one")
	h2.push("for-two")
	it := h1.take(5 * time.Second)
	require.Equal(t, "for-one", it.ID())
	require.NoError(t, it.Ack())
	it = h2.take(5 * time.Second)
	require.Equal(t, "for-two", it.ID())
	require.NoError(t, it.Ack())
	h1.none(300 * time.Millisecond)
	h2.none(10 * time.Millisecond)
}

func TestForeignAndStockMessages(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	js := testJS(t)
	h := newHarness(t, "foreign", conf).run()

	m := nats.NewMsg(conf.Subject)
	m.Data = []byte("plain text")
	m.Header.Set("tenant", "acme")
	m.Header.Set(nats.MsgIdHdr, "foreign-1")
	_, err := js.PublishMsg(context.Background(), m)
	require.NoError(t, err)
	it := h.take(5 * time.Second)
	require.Equal(t, "foreign-1", it.ID())
	require.Equal(t, []byte("plain text"), it.Body())
	c := contextOf(t, it)
	require.Equal(t, foreignJobName, c.Job)
	require.Equal(t, []string{"acme"}, c.Headers["tenant"])
	require.NotContains(t, c.Headers, nats.MsgIdHdr)
	require.NoError(t, it.Ack())

	// What the stock driver publishes: base64 payload, headers as NATS headers only.
	m = nats.NewMsg(conf.Subject)
	m.Data = []byte(`{"job":"stock.job","id":"s1","payload":"aGVsbG8=","options":{"priority":2,"pipeline":"x","auto_ack":false}}`)
	m.Header.Set("Traceparent", "00-abc")
	_, err = js.PublishMsg(context.Background(), m)
	require.NoError(t, err)
	it = h.take(5 * time.Second)
	require.Equal(t, "s1", it.ID())
	require.Equal(t, int64(2), it.Priority())
	require.Equal(t, []byte("hello"), it.Body())
	c = contextOf(t, it)
	require.Equal(t, "stock.job", c.Job)
	require.Equal(t, []string{"00-abc"}, c.Headers["Traceparent"])
	require.NoError(t, it.Ack())
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	payload := make([]byte, 400)
	for i := range payload {
		payload[i] = 'x'
	}
	h := newHarness(t, "rate", conf)
	for i := range 6 {
		h.push(string(rune('a'+i)), func(m *drivertest.Message) { m.Body = payload })
	}
	// Each message is ~600 bytes of JSON (base64 payload): ~4800 bits. 9600 bits/s lets the first
	// second's worth (two messages) through at once, then two per second.
	size := 0
	js := testJS(t)
	s, err := js.Stream(context.Background(), conf.Stream)
	require.NoError(t, err)
	raw, err := s.GetMsg(context.Background(), 1)
	require.NoError(t, err)
	size = len(raw.Data) * 8
	conf.RateLimit = uint64(size * 2)
	h.stop()
	h = newHarness(t, "rate", conf).run()
	start := time.Now()
	for range 6 {
		require.NoError(t, h.take(10*time.Second).Ack())
	}
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, 1500*time.Millisecond, "6 messages at 2/s with a 1s burst take about 2s")
	require.Less(t, elapsed, 5*time.Second)
}

func TestPushWhileDisconnectedAndResume(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	p := drivertest.StartProxy(t, natsHostPort(t))
	conf.Addr = "nats://" + p.Addr()
	conf.AckWait = time.Second
	h := newHarness(t, "cut", conf).run()
	h.push("before")
	held := h.take(5 * time.Second)

	p.Cut()
	require.Eventually(t, func() bool { return !h.d.nc.IsConnected() }, 5*time.Second, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	start := time.Now()
	err := h.d.Push(ctx, drivertest.NewMessage("lost", "j", "cut", []byte("x")))
	cancel()
	require.Error(t, err)
	require.Less(t, time.Since(start), time.Second, "a push while disconnected fails at once")
	require.Contains(t, err.Error(), "not connected to the NATS server")
	require.Contains(t, err.Error(), "was not stored")
	st := h.state()
	require.False(t, st.Ready)
	require.Contains(t, st.ErrorMessage, "not connected")

	time.Sleep(2500 * time.Millisecond) // longer than ack_wait: the server will redeliver "before"
	p.Restore()
	st = h.waitState(10*time.Second, func(st *jobs.State) bool { return st.Ready && st.ErrorMessage == "" })
	require.Equal(t, int64(1), st.Reserved)
	h.push("after")
	it := h.take(5 * time.Second)
	require.Equal(t, "after", it.ID(), "the held job is not handed out a second time")
	require.NoError(t, it.Ack())
	require.NoError(t, held.Ack())
	h.none(1500 * time.Millisecond)
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Reserved == 0 && st.Active == 0 })
}

func TestConstructionErrors(t *testing.T) {
	t.Parallel()
	q := drivertest.NewQueue(0)
	_, err := NewDriver(nil, "p", Config{Addr: "nats://127.0.0.1:1"}, q)
	require.Error(t, err)
	require.Contains(t, err.Error(), `nats pipeline "p": connect to nats://127.0.0.1:1`)
	_, err = NewDriver(nil, "p", Config{}, nil)
	require.Error(t, err)

	requireNATS(t)
	stream := newStreamName(t)
	js := testJS(t)
	// Another stream owns the subject already.
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".taken"}})
	require.NoError(t, err)
	other := newStreamName(t)
	_, err = NewDriver(nil, "p", Config{Addr: natsURL(), Stream: other, Subject: stream + ".taken"}, q)
	require.Error(t, err)
	require.Contains(t, err.Error(), `nats pipeline "p"`)
	require.Contains(t, err.Error(), other)
}

func TestPrefetchLimitsHeldJobs(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	conf.Prefetch = 2
	h := newHarness(t, "prefetch", conf)
	for _, id := range []string{"1", "2", "3", "4", "5"} {
		h.push(id)
	}
	h.run()
	st := h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Reserved == 2 })
	require.Equal(t, int64(3), st.Active)
	require.Never(t, func() bool { return h.q.Len() > 2 }, 300*time.Millisecond, 20*time.Millisecond)
	for range 5 {
		require.NoError(t, h.take(5*time.Second).Ack())
	}
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.Reserved == 0 && st.Active == 0 })
}

func TestStopWithFullQueueDoesNotHang(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	q := drivertest.NewQueue(1)
	d, err := NewDriver(drivertest.TestLogger(t).NamedLogger(pluginName), "full", conf, q)
	require.NoError(t, err)
	h := &harness{t: t, d: d, q: q, conf: d.conf, name: "full"}
	for _, id := range []string{"a", "b", "c"} {
		h.push(id)
	}
	h.run()
	require.Eventually(t, func() bool { return q.Len() == 1 }, 5*time.Second, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, d.Stop(ctx))
	require.Less(t, time.Since(start), 3*time.Second)
	require.Zero(t, q.Len())

	h2 := newHarness(t, "full", conf).run()
	for range 3 {
		require.NoError(t, h2.take(5*time.Second).Ack())
	}
}

func TestConsumerIsRecreated(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	h := newHarness(t, "repair", conf).run()
	js := testJS(t)
	require.NoError(t, js.DeleteConsumer(context.Background(), conf.Stream, h.d.names[0]))
	require.NoError(t, js.DeleteConsumer(context.Background(), conf.Stream, h.d.names[1]))
	h.push("after-delete", func(m *drivertest.Message) { m.DelaySeconds = 1 })
	it := h.take(10 * time.Second)
	require.Equal(t, "after-delete", it.ID())
	require.NoError(t, it.Ack())
	h.waitState(5*time.Second, func(st *jobs.State) bool { return st.ErrorMessage == "" && st.Ready })

	// The whole stream is deleted: the driver creates it again.
	require.NoError(t, js.DeleteStream(context.Background(), conf.Stream))
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return h.d.Push(ctx, drivertest.NewMessage("after-stream", "j", "repair", nil)) == nil
	}, 10*time.Second, 100*time.Millisecond)
	it = h.take(10 * time.Second)
	require.Equal(t, "after-stream", it.ID())
	require.NoError(t, it.Ack())
}

func TestStateReportsMissingStream(t *testing.T) {
	t.Parallel()
	conf := testConf(t)
	h := newHarness(t, "gone", conf)
	require.NoError(t, testJS(t).DeleteStream(context.Background(), conf.Stream))
	st := h.state()
	require.Contains(t, st.ErrorMessage, `nats pipeline "gone": read consumer`)
	err := h.d.Push(context.Background(), drivertest.NewMessage("x", "j", "gone", nil))
	require.ErrorContains(t, err, `nats pipeline "gone": push job "x": publish to subject`)
	require.ErrorContains(t, err, "the job was not stored")
}

func TestLimiter(t *testing.T) {
	require.True(t, (*limiter)(nil).wait(context.Background(), 1<<30))
	l := newLimiter(8000) // 1000 bytes/s
	start := time.Now()
	for range 2 {
		require.True(t, l.wait(context.Background(), 4000)) // 500 bytes: 2 per second
	}
	require.Less(t, time.Since(start), 100*time.Millisecond, "the first second's worth passes at once")
	require.True(t, l.wait(context.Background(), 4000))
	require.GreaterOrEqual(t, time.Since(start), 450*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.False(t, l.wait(ctx, 80000))
}
