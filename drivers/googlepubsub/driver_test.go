package googlepubsub

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

func TestPushConsumeAck(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		conf := testConfig(t, b)
		d, q := newDriver(t, b, "p-ack", conf)
		m := msg("p-ack", "j1")
		m.Hdrs = map[string][]string{"X-Trace": {"a", "b"}}
		push(t, d, m)
		run(t, d)

		it := next(t, q)
		require.Equal(t, "j1", it.ID())
		require.Equal(t, "p-ack", it.GroupID())
		require.Equal(t, int64(10), it.Priority(), "priority 0 inherits the pipeline's")
		require.Equal(t, `{"id":"j1"}`, string(it.Body()))
		require.Equal(t, []string{"a", "b"}, it.Headers()["X-Trace"])
		c := work(t, it)
		require.Equal(t, "j1", c.ID)
		require.Equal(t, "job.j1", c.Job)
		require.Equal(t, "google_pub_sub", c.Driver)
		require.Equal(t, conf.Topic, c.Queue)
		require.Equal(t, "p-ack", c.Pipeline)
		require.Equal(t, map[string][]string{"X-Trace": {"a", "b"}}, c.Headers)
		require.Equal(t, int64(1), state(t, d).Reserved)

		require.NoError(t, it.Ack())
		require.NoError(t, it.Ack(), "a second verdict is a no-op")
		nothing(t, q)
		st := state(t, d)
		require.Equal(t, int64(0), st.Reserved)
		require.Equal(t, int64(0), st.Active)
	})
}

func TestContextJSONKeys(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	d, q := newDriver(t, b, "p-ctx", testConfig(t, b))
	push(t, d, msg("p-ctx", "j1"))
	run(t, d)
	it := next(t, q)
	raw, err := it.Context()
	require.NoError(t, err)
	require.Equal(t, `{"id":"j1","job":"job.j1","driver":"google_pub_sub","headers":{},"queue":"`+d.conf.Topic+`","pipeline":"p-ctx"}`, string(raw))
	require.NoError(t, it.Ack())
}

func TestPriorityOrder(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	d, q := newDriver(t, b, "p-prio", testConfig(t, b))
	for i, p := range []int64{5, 1, 0, 3} {
		m := msg("p-prio", "j"+string(rune('a'+i)))
		m.Prio = p
		push(t, d, m)
	}
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 4 }, waitFor, tick)
	var got []int64
	for range 4 {
		it := next(t, q)
		got = append(got, it.Priority())
		work(t, it)
		require.NoError(t, it.Ack())
	}
	require.Equal(t, []int64{1, 3, 5, 10}, got)
}

func TestNackRedeliversAtOnce(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		d, q := newDriver(t, b, "p-nack", testConfig(t, b))
		push(t, d, msg("p-nack", "j1"))
		run(t, d)
		it := next(t, q)
		work(t, it)
		require.NoError(t, it.Nack())
		again := next(t, q)
		require.Equal(t, "j1", again.ID())
		require.NotEqual(t, it.ackID, again.ackID)
		work(t, again)
		require.NoError(t, again.Ack())
	})
}

func TestNackWithDelay(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		d, q := newDriver(t, b, "p-nackd", testConfig(t, b))
		push(t, d, msg("p-nackd", "j1"))
		run(t, d)
		it := next(t, q)
		work(t, it)
		start := time.Now()
		require.NoError(t, it.NackWithOptions(true, 2))
		again := next(t, q)
		require.GreaterOrEqual(t, time.Since(start), 1800*time.Millisecond, "delivered again before its delay")
		require.Equal(t, "j1", again.ID())
		work(t, again)
		require.NoError(t, again.Ack())
	})
}

func TestNackWithoutRequeueDropsWithoutDeadLetterTopic(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	d, q := newDriver(t, b, "p-drop", testConfig(t, b))
	push(t, d, msg("p-drop", "j1"))
	run(t, d)
	it := next(t, q)
	work(t, it)
	require.NoError(t, it.NackWithOptions(false, 0))
	nothing(t, q)
}

func TestNackWithoutRequeueGoesToDeadLetterTopic(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		conf := testConfig(t, b)
		conf.DeadLetterTopic = uniq("dlt")
		d, q := newDriver(t, b, "p-fail", conf)
		m := msg("p-fail", "j1")
		m.Hdrs = map[string][]string{"k": {"v"}}
		push(t, d, m)
		run(t, d)
		it := next(t, q)
		work(t, it)
		require.NoError(t, it.NackWithOptions(false, 0))
		nothing(t, q)

		got := pullRaw(t, adminClient(t, b), conf.DeadLetterTopic, 1, waitFor)
		require.Len(t, got, 1)
		dec := decodeMessage(got[0].GetMessage(), 10)
		require.Equal(t, "j1", dec.ID)
		require.Equal(t, map[string][]string{"k": {"v"}}, dec.Headers)
	})
}

func TestRequeueWithHeadersAndDelay(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		d, q := newDriver(t, b, "p-req", testConfig(t, b))
		m := msg("p-req", "j1")
		m.Prio = 4
		m.Hdrs = map[string][]string{"keep": {"1"}, "replace": {"old"}}
		push(t, d, m)
		run(t, d)
		it := next(t, q)
		work(t, it)
		start := time.Now()
		require.NoError(t, it.Requeue(map[string][]string{"replace": {"new"}, "add": {"x"}}, 1))
		copyIt := next(t, q)
		require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "the copy ran before its delay")
		require.Equal(t, "j1", copyIt.ID())
		require.Equal(t, int64(4), copyIt.Priority())
		require.Equal(t, map[string][]string{"keep": {"1"}, "replace": {"new"}, "add": {"x"}}, copyIt.Headers())
		work(t, copyIt)
		require.NoError(t, copyIt.Ack())
		nothing(t, q) // the original was acknowledged
	})
}

func TestRequeueFallsBackToNackWhenThePublishFails(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	d, q := newDriver(t, b, "p-reqf", testConfig(t, b))
	push(t, d, msg("p-reqf", "j1"))
	run(t, d)
	it := next(t, q)
	work(t, it)
	// A publish to a topic that is gone fails for good.
	c := adminClient(t, b)
	require.NoError(t, c.TopicAdminClient.DeleteTopic(context.Background(), &pb.DeleteTopicRequest{Topic: d.topic}))
	err := it.Requeue(map[string][]string{"h": {"v"}}, 0)
	require.Error(t, err)
	require.Contains(t, err.Error(), "nacked instead")
	again := next(t, q)
	require.Equal(t, "j1", again.ID())
	require.Nil(t, again.Headers()["h"])
	work(t, again)
	require.NoError(t, again.Ack())
}

func TestDelayedPush(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		d, q := newDriver(t, b, "p-delay", testConfig(t, b))
		run(t, d)
		m := msg("p-delay", "late")
		m.DelaySeconds = 2
		start := time.Now()
		push(t, d, m)
		push(t, d, msg("p-delay", "now"))

		it := next(t, q)
		require.Equal(t, "now", it.ID())
		work(t, it)
		require.NoError(t, it.Ack())
		require.Eventually(t, func() bool { return state(t, d).Delayed == 1 }, waitFor, tick)
		require.Equal(t, int64(0), state(t, d).Active)

		late := next(t, q)
		require.Equal(t, "late", late.ID())
		require.GreaterOrEqual(t, time.Since(start), 1900*time.Millisecond, "delivered before its delay")
		require.Equal(t, int64(0), state(t, d).Delayed)
		work(t, late)
		require.NoError(t, late.Ack())
	})
}

func TestDelayedJobSurvivesPauseAndStop(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	conf := testConfig(t, b)
	d, q := newDriver(t, b, "p-delay2", conf)
	run(t, d)
	m := msg("p-delay2", "late")
	m.DelaySeconds = 2
	push(t, d, m)
	require.Eventually(t, func() bool { return state(t, d).Delayed == 1 }, waitFor, tick)
	// Paused: the held message goes back to Pub/Sub until its due time.
	require.NoError(t, d.Pause(context.Background(), "p-delay2"))
	require.Equal(t, int64(0), state(t, d).Delayed)
	require.NoError(t, d.Stop(context.Background()))

	// Another consumer of the subscription (a restart) gets it when due.
	d2, q2 := newDriver(t, b, "p-delay2", conf)
	run(t, d2)
	it := next(t, q2)
	require.Equal(t, "late", it.ID())
	work(t, it)
	require.NoError(t, it.Ack())
	nothing(t, q)
}

func TestPrefetchLimit(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		conf := testConfig(t, b)
		conf.Prefetch = 2
		d, q := newDriver(t, b, "p-pref", conf)
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			push(t, d, msg("p-pref", id))
		}
		run(t, d)
		require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick)
		time.Sleep(quiet) // nothing more arrives while both slots are taken
		require.Equal(t, uint64(2), q.Len())
		require.Equal(t, int64(2), state(t, d).Active)

		seen := map[string]bool{}
		for range 5 {
			it := next(t, q)
			seen[it.ID()] = true
			work(t, it)
			require.LessOrEqual(t, state(t, d).Active+state(t, d).Reserved, int64(2))
			require.NoError(t, it.Ack())
		}
		require.Len(t, seen, 5)
	})
}

func TestPauseStopsDeliveryAndResumeRestartsIt(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		d, q := newDriver(t, b, "p-pause", testConfig(t, b))
		push(t, d, msg("p-pause", "before"))
		run(t, d)
		require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)

		require.NoError(t, d.Pause(context.Background(), "p-pause"))
		require.Equal(t, uint64(0), q.Len(), "queued jobs are handed back on Pause")
		require.False(t, state(t, d).Ready)
		require.Error(t, d.Pause(context.Background(), "p-pause"), "already paused")
		push(t, d, msg("p-pause", "during"))
		nothing(t, q)

		require.NoError(t, d.Resume(context.Background(), "p-pause"))
		require.Error(t, d.Resume(context.Background(), "p-pause"), "already running")
		require.True(t, state(t, d).Ready)
		got := map[string]bool{}
		for range 2 {
			it := next(t, q)
			got[it.ID()] = true
			work(t, it)
			require.NoError(t, it.Ack())
		}
		require.Equal(t, map[string]bool{"before": true, "during": true}, got)

		// Repeatedly.
		for range 3 {
			require.NoError(t, d.Pause(context.Background(), "p-pause"))
			require.NoError(t, d.Resume(context.Background(), "p-pause"))
		}
		push(t, d, msg("p-pause", "after"))
		it := next(t, q)
		require.Equal(t, "after", it.ID())
		work(t, it)
		require.NoError(t, it.Ack())
	})
}

func TestJobAtAWorkerFinishesAcrossPause(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	d, q := newDriver(t, b, "p-pw", testConfig(t, b))
	push(t, d, msg("p-pw", "j1"))
	run(t, d)
	it := next(t, q)
	work(t, it)
	require.NoError(t, d.Pause(context.Background(), "p-pw"))
	require.Equal(t, int64(1), state(t, d).Reserved)
	require.NoError(t, it.Ack())
	require.NoError(t, d.Resume(context.Background(), "p-pw"))
	nothing(t, q)
}

func TestStateNeverNil(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	conf := testConfig(t, b)
	conf.Priority = 7
	d, _ := newDriver(t, b, "p-state", conf)
	st := state(t, d)
	require.Equal(t, "p-state", st.Pipeline)
	require.Equal(t, "google_pub_sub", st.Driver)
	require.Equal(t, conf.Topic, st.Queue)
	require.Equal(t, uint64(7), st.Priority)
	require.False(t, st.Ready)
	run(t, d)
	require.True(t, state(t, d).Ready)
	stopAndWait(t, d)
	st = state(t, d)
	require.False(t, st.Ready)
}

func TestStopHandsBackQueuedJobs(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		conf := testConfig(t, b)
		d, q := newDriver(t, b, "p-stop", conf)
		for _, id := range []string{"a", "b", "c"} {
			push(t, d, msg("p-stop", id))
		}
		run(t, d)
		require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, tick)
		start := time.Now()
		require.NoError(t, d.Stop(context.Background()))
		require.Less(t, time.Since(start), time.Second, "Stop does not wait")
		require.Equal(t, uint64(0), q.Len())
		require.NoError(t, d.Stop(context.Background()), "idempotent")
		err := d.Push(context.Background(), msg("p-stop", "x"))
		require.Error(t, err)
		require.Contains(t, err.Error(), "stopped")
		require.Error(t, d.Run(context.Background(), drivertest.NewPipeline("p-stop", pluginName, nil)))

		// A restarted pipeline resumes the subscription and gets them at once.
		d2, q2 := newDriver(t, b, "p-stop", conf)
		run(t, d2)
		var got []string
		for range 3 {
			it := next(t, q2)
			got = append(got, it.ID())
			work(t, it)
			require.NoError(t, it.Ack())
		}
		sort.Strings(got)
		require.Equal(t, []string{"a", "b", "c"}, got)
	})
}

func TestStopWithAJobAtAWorkerKeepsTheClientForItsAck(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	d, q := newDriver(t, b, "p-stopw", testConfig(t, b))
	push(t, d, msg("p-stopw", "j1"))
	run(t, d)
	it := next(t, q)
	work(t, it)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
	require.False(t, d.isClosed())
	require.NoError(t, it.Ack())
	select {
	case <-d.closed:
	case <-time.After(waitFor):
		t.Fatal("the client was not closed once the last job was acked")
	}
}

func TestStopIsBoundedWhileTheQueueIsFull(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	q := drivertest.NewQueue(1)
	conf := testConfig(t, b)
	d := newDriverQ(t, b, "p-full", conf, q, zap.NewNop())
	// Another pipeline's job fills the queue: the pull loop blocks in Insert.
	q.Insert(&Item{drv: &Driver{pipeline: "other"}, id: "other"})
	push(t, d, msg("p-full", "j1"))
	run(t, d)
	time.Sleep(quiet)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.NoError(t, d.Stop(ctx))
	require.Less(t, time.Since(start), 2*time.Second)
	// Unblock the loop: it sees the pipeline stopped and hands the job back.
	_, ok := q.TryExtractMin()
	require.True(t, ok)
	require.Eventually(t, func() bool { return d.heldCount() == 0 }, waitFor, tick)
}

func TestAutoAck(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		d, q := newDriver(t, b, "p-auto", testConfig(t, b))
		m := msg("p-auto", "j1")
		m.AutoAckFlag = true
		push(t, d, m)
		run(t, d)
		it := next(t, q)
		work(t, it) // acknowledged here
		require.Equal(t, int64(0), state(t, d).Reserved)
		require.NoError(t, it.Nack(), "no-op")
		require.NoError(t, it.Requeue(nil, 0), "no-op")
		nothing(t, q)
	})
}

func TestAckDeadlineIsExtendedWhileAJobRuns(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	var mu sync.Mutex
	offset := time.Duration(0)
	b.srv.SetTimeNowFunc(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(offset)
	})
	advance := func(by time.Duration) {
		mu.Lock()
		offset += by
		mu.Unlock()
	}
	conf := testConfig(t, b) // ack deadline 10 s: extended every 3.3 s
	d, q := newDriver(t, b, "p-lease", conf)
	push(t, d, msg("p-lease", "j1"))
	run(t, d)
	it := next(t, q)
	work(t, it)

	advance(8 * time.Second)
	// Wait for an extension (the keeper runs every 10 s / 3 of real time).
	time.Sleep(3500 * time.Millisecond)
	advance(8 * time.Second) // 16 s after the pull: expired without the extension

	// Another consumer of the subscription gets nothing.
	d2, q2 := newDriver(t, b, "p-lease", conf)
	run(t, d2)
	nothing(t, q2)
	require.NoError(t, it.Ack())
}

func TestTwoDriversShareTheSubscription(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		conf := testConfig(t, b)
		conf.Prefetch = 2
		q := drivertest.NewQueue(0)
		d1 := newDriverQ(t, b, "p-share", conf, q, zap.NewNop())
		d2 := newDriverQ(t, b, "p-share", conf, q, zap.NewNop())
		const n = 20
		for i := range n {
			push(t, d1, msg("p-share", "j"+string(rune('A'+i))))
		}
		run(t, d1)
		run(t, d2)
		seen := map[string]int{}
		by := map[*Driver]int{}
		for range n {
			it := next(t, q)
			seen[it.ID()]++
			by[it.drv]++
			work(t, it)
			require.NoError(t, it.Ack())
		}
		require.Len(t, seen, n)
		for id, c := range seen {
			require.Equal(t, 1, c, "job %s ran twice", id)
		}
		nothing(t, q)
	})
}

func TestDeadLetterPolicyAfterMaxDeliveryAttempts(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		conf := testConfig(t, b)
		conf.DeadLetterTopic = uniq("dlt")
		conf.MaxDeliveryAttempts = 5
		d, q := newDriver(t, b, "p-dlq", conf)
		push(t, d, msg("p-dlq", "doomed"))
		run(t, d)
		for attempt := int32(1); attempt <= 5; attempt++ {
			it := next(t, q)
			require.Equal(t, "doomed", it.ID())
			require.Equal(t, attempt, it.attempt)
			work(t, it)
			require.NoError(t, it.Nack())
		}
		nothing(t, q)
		got := pullRaw(t, adminClient(t, b), conf.DeadLetterTopic, 1, waitFor)
		require.Len(t, got, 1)
		require.Equal(t, "doomed", got[0].GetMessage().GetAttributes()[attrID])
	})
}

func TestExistingSubscriptionGetsTheDeadLetterPolicy(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, b backend) {
		conf := testConfig(t, b)
		d, _ := newDriver(t, b, "p-upd", conf)
		require.NoError(t, d.Stop(context.Background()))

		conf.DeadLetterTopic = uniq("dlt")
		conf.MaxDeliveryAttempts = 7
		d2, _ := newDriver(t, b, "p-upd", conf)
		sub, err := adminClient(t, b).SubscriptionAdminClient.GetSubscription(context.Background(), &pb.GetSubscriptionRequest{Subscription: d2.sub})
		require.NoError(t, err)
		require.Equal(t, d2.dlt, sub.GetDeadLetterPolicy().GetDeadLetterTopic())
		require.Equal(t, int32(7), sub.GetDeadLetterPolicy().GetMaxDeliveryAttempts())
	})
}

func TestSubscriptionOfAnotherTopicIsRefused(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	conf := testConfig(t, b)
	conf.Subscription = "shared-sub"
	newDriver(t, b, "p-one", conf)
	conf.Topic = uniq("other")
	_, err := NewDriver(zap.NewNop(), "p-two", conf, drivertest.NewQueue(0))
	require.Error(t, err)
	require.Contains(t, err.Error(), "is attached to topic")
	require.Contains(t, err.Error(), `pipeline "p-two"`)
}

func TestShortPipelineNameGetsAValidSubscription(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	conf := testConfig(t, b)
	conf.Subscription = "" // the default
	d, q := newDriver(t, b, "p1", conf)
	require.Equal(t, subscriptionPath(testProject, "rr-p1"), d.sub)
	push(t, d, msg("p1", "j1"))
	run(t, d)
	it := next(t, q)
	work(t, it)
	require.NoError(t, it.Ack())
}

func TestStockMessagesInteroperate(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	conf := testConfig(t, b)
	d, q := newDriver(t, b, "p-stock", conf)
	// Exactly what the stock driver publishes.
	b.srv.Publish(d.topic, []byte("payload"), map[string]string{
		"rr_id": "stock-1", "rr_job": "App\\Job", "rr_delay": "0", "rr_headers": `{"a":["1"]}`,
		"rr_priority": "3", "rr_auto_ack": "false",
	})
	// A message from some other producer.
	b.srv.Publish(d.topic, []byte("raw"), map[string]string{"origin": "elsewhere"})
	run(t, d)
	got := map[string]*Item{}
	for range 2 {
		it := next(t, q)
		got[it.job] = it
	}
	s := got["App\\Job"]
	require.NotNil(t, s)
	require.Equal(t, "stock-1", s.ID())
	require.Equal(t, int64(3), s.Priority())
	require.Equal(t, map[string][]string{"a": {"1"}}, s.Headers())
	require.Equal(t, "payload", string(s.Body()))
	f := got[foreignJobName]
	require.NotNil(t, f)
	require.Equal(t, f.msgID, f.ID())
	require.Equal(t, int64(10), f.Priority())
	require.Equal(t, map[string][]string{"origin": {"elsewhere"}}, f.Headers())
	for _, it := range got {
		work(t, it)
		require.NoError(t, it.Ack())
	}

	// And what this driver publishes is the stock layout.
	m := msg("p-stock", "ours")
	m.Prio = 2
	m.DelaySeconds = 0
	m.Hdrs = map[string][]string{"h": {"v"}}
	push(t, d, m)
	var attrs map[string]string
	require.Eventually(t, func() bool {
		for _, sm := range b.srv.Messages() {
			if sm.Attributes["rr_id"] == "ours" {
				attrs = sm.Attributes
				return true
			}
		}
		return false
	}, waitFor, tick)
	require.Equal(t, map[string]string{
		"rr_id": "ours", "rr_job": "job.ours", "rr_delay": "0", "rr_headers": `{"h":["v"]}`, "rr_priority": "2", "rr_auto_ack": "false",
	}, attrs)
	it := next(t, q)
	work(t, it)
	require.NoError(t, it.Ack())
}

func TestLargeHeadersAreSplitAcrossAttributes(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	d, q := newDriver(t, b, "p-big", testConfig(t, b))
	big := strings.Repeat("é", 1500) // 3000 bytes, multi-byte runes across the cuts
	m := msg("p-big", "j1")
	m.Hdrs = map[string][]string{"big": {big}, "small": {"s"}}
	push(t, d, m)
	run(t, d)
	it := next(t, q)
	require.Equal(t, m.Hdrs, it.Headers())
	work(t, it)
	require.NoError(t, it.Ack())
}

func TestDelayBeyondRetentionIsRefused(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	conf := testConfig(t, b)
	conf.Subscription = uniq("sub")
	c := adminClient(t, b)
	_, err := c.TopicAdminClient.CreateTopic(context.Background(), &pb.Topic{Name: topicPath(testProject, conf.Topic)})
	require.NoError(t, err)
	_, err = c.SubscriptionAdminClient.CreateSubscription(context.Background(), &pb.Subscription{
		Name: subscriptionPath(testProject, conf.Subscription), Topic: topicPath(testProject, conf.Topic),
		MessageRetentionDuration: durationpb.New(10 * time.Minute),
	})
	require.NoError(t, err)
	d, _ := newDriver(t, b, "p-ret", conf)
	m := msg("p-ret", "j1")
	m.DelaySeconds = 700
	err = d.Push(context.Background(), m)
	require.Error(t, err)
	require.Contains(t, err.Error(), "message retention")
	m.DelaySeconds = 500
	require.NoError(t, d.Push(context.Background(), m))
}

func TestPushFailsClearlyWhenPubSubIsDown(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	d, _ := newDriver(t, b, "p-down", testConfig(t, b))
	b.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err := d.Push(ctx, msg("p-down", "j1"))
	require.Error(t, err)
	require.Less(t, time.Since(start), 3*time.Second)
	require.Contains(t, err.Error(), `pipeline "p-down"`)
	require.Contains(t, err.Error(), `push job "j1"`)
	require.Contains(t, err.Error(), "Unavailable")
}

func TestPullErrorsShowInState(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t, pstest.WithErrorInjection("Pull", codes.PermissionDenied, "not allowed"))
	core, logs := observer.New(zap.ErrorLevel)
	q := drivertest.NewQueue(0)
	d := newDriverQ(t, b, "p-perm", testConfig(t, b), q, zap.New(core))
	run(t, d)
	require.Eventually(t, func() bool { return strings.Contains(state(t, d).ErrorMessage, "not allowed") }, waitFor, tick)
	require.NotZero(t, logs.FilterMessage("messages could not be pulled, retrying").Len())
}

func TestConstructionFailsClearlyWhenUnreachable(t *testing.T) {
	old := setupTimeout
	setupTimeout = time.Second
	t.Cleanup(func() { setupTimeout = old })
	conf := Config{Endpoint: "127.0.0.1:1", Insecure: true, ProjectID: testProject, Topic: "t-unreachable"}
	_, err := NewDriver(zap.NewNop(), "p-x", conf, drivertest.NewQueue(0))
	require.Error(t, err)
	require.Contains(t, err.Error(), `pipeline "p-x"`)
	require.Contains(t, err.Error(), "127.0.0.1:1")
	require.Contains(t, err.Error(), "Unavailable")
}

func TestPushValidation(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	d, _ := newDriver(t, b, "p-val", testConfig(t, b))
	require.Error(t, d.Push(context.Background(), nil))
	m := msg("p-val", "j1")
	m.Hdrs = map[string][]string{"h": {strings.Repeat("x", maxHeaderParts*maxAttrValue)}}
	err := d.Push(context.Background(), m)
	require.Error(t, err)
	require.Contains(t, err.Error(), "headers")
}

func TestMissingCredentialsMentionTheEmulatorSettings(t *testing.T) {
	t.Setenv(emulatorEnv, "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/rrjobs-credentials.json")
	conf := Config{Endpoint: "127.0.0.1:8085", ProjectID: testProject, Topic: "t-nocreds"}
	_, err := NewDriver(zap.NewNop(), "p-creds", conf, drivertest.NewQueue(0))
	require.Error(t, err)
	require.Contains(t, err.Error(), `google_pub_sub pipeline "p-creds"`)
	require.Contains(t, err.Error(), "google_pub_sub.insecure: true")
}
