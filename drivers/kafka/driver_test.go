package kafka

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

func TestPushConsumeAckWithContext(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", consumerSection(topic, "g-"+topic, map[string]any{"priority": 7}), q)

	push(t, d, &drivertest.Message{JobID: "j1", Job: "app.email", Pipeline: "p1", Body: []byte("hello"),
		Hdrs: map[string][]string{"tenant": {"acme"}, "multi": {"a", "b"}}})
	push(t, d, &drivertest.Message{JobID: "j2", Job: "app.sms", Pipeline: "p1", Body: nil, Prio: 2})

	// j2 has its own priority (2), j1 the pipeline's (7); both wait in the queue, j2 first.
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, 10*time.Millisecond)
	it2 := take(t, q)
	require.Equal(t, "j2", it2.ID())
	require.Equal(t, int64(2), it2.Priority())
	require.Equal(t, []byte{}, it2.Body())
	it1 := take(t, q)
	require.Equal(t, "j1", it1.ID())
	require.Equal(t, int64(7), it1.Priority())
	require.Equal(t, "p1", it1.GroupID())
	require.Equal(t, []byte("hello"), it1.Body())
	require.Equal(t, map[string][]string{"tenant": {"acme"}, "multi": {"a", "b"}}, it1.Headers(), "multi-valued headers survive, rr_* are hidden")

	raw, err := it1.Context()
	require.NoError(t, err)
	var ctx map[string]any
	require.NoError(t, json.Unmarshal(raw, &ctx))
	require.Equal(t, map[string]any{
		"id": "j1", "job": "app.email", "driver": "kafka", "queue": topic, "pipeline": "p1", "topic": topic,
		"partition": float64(0), "offset": float64(0),
		"headers": map[string]any{"tenant": []any{"acme"}, "multi": []any{"a", "b"}},
	}, ctx)

	st := waitState(t, d, func(s *stateView) bool { return s.Reserved == 2 })
	require.Equal(t, int64(0), st.Active)
	require.True(t, st.Ready)
	time.Sleep(2 * commitInterval)
	off, committed := e.committed(t, "g-"+topic, topic)[0]
	require.False(t, committed && off >= 0, "nothing is committed before a job is finished (got %d)", off)

	require.NoError(t, it1.Ack())
	require.NoError(t, it2.Ack())
	require.NoError(t, it2.Ack(), "a second ack is a no-op")
	waitState(t, d, func(s *stateView) bool { return s.Reserved == 0 && s.Active == 0 })
	require.Eventually(t, func() bool { return e.committed(t, "g-"+topic, topic)[0] == 2 }, waitFor, 20*time.Millisecond, "both offsets committed")
}

func TestPushTopicResolutionAndErrors(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	other := e.topic(t, 1)
	q := drivertest.NewQueue(0)
	d := e.driver(t, "p1", consumerSection(topic, "", nil), q)

	// A job naming a topic goes there; otherwise to the pipeline's first topic.
	push(t, d, &drivertest.Message{JobID: "x", Job: "j", Pipeline: "p1", KafkaTopic: other})
	pushID(t, d, "y")
	require.Equal(t, int64(1), e.records(t, other))
	require.Equal(t, int64(1), e.records(t, topic))

	// A producer-only pipeline needs the job's topic.
	prodOnly := e.driver(t, "p2", nil, q)
	err := prodOnly.Push(context.Background(), drivertest.NewMessage("z", "j", "p2", nil))
	require.ErrorContains(t, err, `kafka pipeline "p2": job "z" names no topic`)
	require.NoError(t, prodOnly.Run(context.Background(), drivertest.NewPipeline("p2", pluginName, nil)))
	require.True(t, state(t, prodOnly).Ready)

	require.ErrorContains(t, d.Push(context.Background(), nil), "nil message")
	stop(t, d)
	require.ErrorContains(t, d.Push(context.Background(), drivertest.NewMessage("late", "j", "p1", nil)), `kafka pipeline "p1" is stopped, job "late" was not pushed`)
	require.NoError(t, d.Stop(context.Background()), "Stop is idempotent")
	require.Error(t, d.Run(context.Background(), nil), "a stopped pipeline does not run again")
}

func TestPushWhileBrokerDownFails(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	d := e.driver(t, "p1", consumerSection(topic, "", nil), drivertest.NewQueue(0))
	pushID(t, d, "ok")
	e.cluster.Close()
	e.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err := d.Push(ctx, drivertest.NewMessage("lost", "j", "p1", nil))
	require.Error(t, err)
	require.Contains(t, err.Error(), `push job "lost" to topic "`+topic+`"`)
	require.Less(t, time.Since(start), 3*time.Second)
	t.Logf("push failed after %s: %v", time.Since(start), err)
	start = time.Now()
	stop(t, d)
	t.Logf("stop took %s", time.Since(start))
}

// TestOffsetsCommittedOnlyBelowFinishedJobs: acks out of order never commit past an unfinished job;
// after a restart of the group member the unfinished job and everything after it come back, the
// finished ones before it do not.
func TestOffsetsCommittedOnlyBelowFinishedJobs(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	group := "g-" + topic
	section := consumerSection(topic, group, nil)

	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", section, q)
	for i := range 10 {
		pushID(t, d, "j"+strconv.Itoa(i))
	}
	items := takeN(t, q, 10)
	require.Equal(t, []string{"j0", "j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8", "j9"}, ids(items))
	// Finish everything but j4 (j6 by a final nack), in reverse order.
	for i := 9; i >= 0; i-- {
		switch i {
		case 4:
		case 6:
			require.NoError(t, items[i].NackWithOptions(false, 0))
		default:
			require.NoError(t, items[i].Ack())
		}
	}
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 4 }, waitFor, 20*time.Millisecond)
	time.Sleep(2 * commitInterval)
	require.Equal(t, int64(4), e.committed(t, group, topic)[0], "never past the unfinished j4")
	stop(t, d)
	require.ErrorContains(t, items[4].Ack(), "could not be committed", "an ack after Stop says it did not count")

	// A new member of the group resumes at j4: nothing is skipped.
	q2 := drivertest.NewQueue(0)
	d2 := e.running(t, "p1", section, q2)
	again := takeN(t, q2, 6)
	require.Equal(t, []string{"j4", "j5", "j6", "j7", "j8", "j9"}, ids(again))
	for _, it := range again {
		require.NoError(t, it.Ack())
	}
	stop(t, d2)
	require.Equal(t, int64(10), e.committed(t, group, topic)[0], "Stop commits what finished")

	// And a third member starts after all of them.
	q3 := drivertest.NewQueue(0)
	d3 := e.running(t, "p1", section, q3)
	pushID(t, d3, "j10")
	require.Equal(t, "j10", take(t, q3).ID())
	expectNone(t, q3, quiet)
}

func TestNackRequeueReproducesBeforeFinishing(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	group := "g-" + topic
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", consumerSection(topic, group, nil), q)

	push(t, d, &drivertest.Message{JobID: "n1", Job: "j", Pipeline: "p1", Body: []byte("b"), Hdrs: map[string][]string{"keep": {"me"}}})
	it := take(t, q)
	require.NoError(t, it.Requeue(map[string][]string{"attempts": {"1"}}, 0))
	require.ErrorContains(t, it.Requeue(nil, 0), "already acknowledged or requeued")
	require.Equal(t, int64(2), e.records(t, topic), "the requeue is a new record")

	again := take(t, q)
	require.Equal(t, "n1", again.ID())
	require.Equal(t, int64(1), again.offset)
	require.Equal(t, []byte("b"), again.Body())
	require.Equal(t, map[string][]string{"keep": {"me"}, "attempts": {"1"}}, again.Headers())
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 1 }, waitFor, 20*time.Millisecond, "the original is finished once the copy is stored")

	require.NoError(t, again.NackWithOptions(true, 0))
	third := take(t, q)
	require.Equal(t, map[string][]string{"keep": {"me"}, "attempts": {"1"}}, third.Headers(), "a nack keeps the headers")
	require.NoError(t, third.NackWithOptions(false, 0))
	expectNone(t, q, quiet)
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 3 }, waitFor, 20*time.Millisecond)
}

func TestDelayOnPushAndRequeue(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	group := "g-" + topic
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", consumerSection(topic, group, nil), q)

	pushed := time.Now()
	push(t, d, &drivertest.Message{JobID: "late", Job: "j", Pipeline: "p1", DelaySeconds: 1})
	pushID(t, d, "now")
	require.Equal(t, "now", take(t, q).ID(), "a delayed job does not hold back the next one")
	waitState(t, d, func(s *stateView) bool { return s.Delayed == 1 })
	late := take(t, q)
	require.Equal(t, "late", late.ID())
	require.GreaterOrEqual(t, time.Since(pushed), 950*time.Millisecond)
	require.NotContains(t, late.Headers(), hdrDelayUntil)

	// Requeue with a delay: the copy waits, and the commit stays below it until it ran.
	requeued := time.Now()
	require.NoError(t, late.Requeue(nil, 1))
	waitState(t, d, func(s *stateView) bool { return s.Delayed == 1 && s.Reserved == 1 })
	back := take(t, q)
	require.Equal(t, "late", back.ID())
	require.GreaterOrEqual(t, time.Since(requeued), 950*time.Millisecond)
	require.NoError(t, back.Ack())
	waitState(t, d, func(s *stateView) bool { return s.Delayed == 0 })
}

func TestDelayedJobSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	section := consumerSection(topic, "g-"+topic, nil)
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", section, q)
	push(t, d, &drivertest.Message{JobID: "later", Job: "j", Pipeline: "p1", DelaySeconds: 2})
	pushID(t, d, "now")
	require.NoError(t, take(t, q).Ack())
	waitState(t, d, func(s *stateView) bool { return s.Delayed == 1 })
	stop(t, d)
	require.Equal(t, 0, q.CountGroup("p1"))

	// The delay lives in the record, not in the process. The held record kept the commit below it,
	// so the job finished behind it in the same partition runs again (at least once).
	q2 := drivertest.NewQueue(0)
	e.running(t, "p1", section, q2)
	require.Equal(t, "now", take(t, q2).ID())
	it := take(t, q2)
	require.Equal(t, "later", it.ID())
	require.NotContains(t, it.Headers(), hdrDelayUntil)
}

func TestPauseResumeKeepsBufferedRecords(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", consumerSection(topic, "g-"+topic, map[string]any{"prefetch": 2}), q)
	for i := range 6 {
		pushID(t, d, "b"+strconv.Itoa(i))
	}
	first := takeN(t, q, 2)
	expectNone(t, q, quiet) // prefetch 2: the rest stays with the client
	require.NoError(t, d.Pause(context.Background(), "p1"))
	require.False(t, state(t, d).Ready)
	require.ErrorContains(t, d.Pause(context.Background(), "p1"), "no active listeners, nothing to pause")
	for _, it := range first {
		require.NoError(t, it.Ack())
	}
	pushID(t, d, "b6")
	expectNone(t, q, quiet)
	// Active counts what is not fetched yet: 5 records.
	waitState(t, d, func(s *stateView) bool { return s.Active == 5 })

	require.NoError(t, d.Resume(context.Background(), "p1"))
	require.ErrorContains(t, d.Resume(context.Background(), "p1"), "already running")
	var got []string
	for range 5 {
		it := take(t, q)
		got = append(got, it.ID())
		require.NoError(t, it.Ack())
	}
	require.Equal(t, []string{"b2", "b3", "b4", "b5", "b6"}, got, "nothing buffered was lost")

	// Pause and resume again.
	require.NoError(t, d.Pause(context.Background(), "p1"))
	require.NoError(t, d.Resume(context.Background(), "p1"))
	pushID(t, d, "b7")
	require.Equal(t, "b7", take(t, q).ID())
}

func TestStateBeforeRunCountsTheBacklog(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 3)
	q := drivertest.NewQueue(0)
	d := e.driver(t, "p1", consumerSection(topic, "g-"+topic, map[string]any{"priority": 4}), q)
	for i := range 5 {
		pushID(t, d, "s"+strconv.Itoa(i))
	}
	st, err := d.State(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(5), st.Active)
	require.Equal(t, topic, st.Queue)
	require.Equal(t, "kafka", st.Driver)
	require.Equal(t, "p1", st.Pipeline)
	require.Equal(t, uint64(4), st.Priority)
	require.False(t, st.Ready)
	require.Empty(t, st.ErrorMessage)

	require.NoError(t, d.Run(context.Background(), nil))
	items := takeN(t, q, 5)
	waitState(t, d, func(s *stateView) bool { return s.Active == 0 && s.Reserved == 5 })
	for _, it := range items {
		require.NoError(t, it.Ack())
	}
	waitState(t, d, func(s *stateView) bool { return s.Active == 0 && s.Reserved == 0 })
}

func TestAutoAckFinishesAtHandOff(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	group := "g-" + topic
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", consumerSection(topic, group, nil), q)
	push(t, d, &drivertest.Message{JobID: "aa", Job: "j", Pipeline: "p1", AutoAckFlag: true})
	it := take(t, q)
	require.Equal(t, int64(0), state(t, d).Reserved)
	require.NoError(t, it.NackWithOptions(true, 1), "requeue of an auto_ack job is a no-op")
	require.NoError(t, it.Requeue(nil, 0))
	require.NoError(t, it.Nack())
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 1 }, waitFor, 20*time.Millisecond)
	expectNone(t, q, quiet)
	require.Equal(t, int64(1), e.records(t, topic))
}

func TestStopReleasesQueuedJobs(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	section := consumerSection(topic, "g-"+topic, nil)
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", section, q)
	for i := range 3 {
		pushID(t, d, "q"+strconv.Itoa(i))
	}
	require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, 10*time.Millisecond)
	start := time.Now()
	stop(t, d)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Zero(t, q.Len(), "the pipeline's jobs left the shared queue")

	q2 := drivertest.NewQueue(0)
	e.running(t, "p1", section, q2)
	require.Equal(t, []string{"q0", "q1", "q2"}, ids(takeN(t, q2, 3)), "released jobs are delivered again")
}

// TestStopDoesNotHangOnAFullQueue: the poll loop blocked in Insert on a full shared queue.
func TestStopDoesNotHangOnAFullQueue(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	q := drivertest.NewQueue(1)
	d := e.running(t, "p1", consumerSection(topic, "", nil), q)
	for i := range 3 {
		pushID(t, d, "f"+strconv.Itoa(i))
	}
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.NoError(t, d.Pause(ctx, "p1"), "Pause returns at its deadline even though the poll loop is blocked")
	start := time.Now()
	stop(t, d)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestWithoutGroupNothingIsCommitted(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 2)
	section := consumerSection(topic, "", nil)
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", section, q)
	pushID(t, d, "a")
	pushID(t, d, "b")
	for _, it := range takeN(t, q, 2) {
		require.NoError(t, it.Ack())
	}
	stop(t, d)
	// Each start reads from consumer_offset (the log start by default), as the stock driver does.
	q2 := drivertest.NewQueue(0)
	e.running(t, "p1", section, q2)
	got := ids(takeN(t, q2, 2))
	sort.Strings(got)
	require.Equal(t, []string{"a", "b"}, got)

	// consumer_offset AtEnd skips what is there.
	q3 := drivertest.NewQueue(0)
	d3 := e.running(t, "p3", consumerSection(topic, "", map[string]any{
		"consumer_options": map[string]any{"topics": []any{topic}, "consumer_offset": map[string]any{"type": "AtEnd"}},
	}), q3)
	expectNone(t, q3, quiet)
	require.Equal(t, int64(0), state(t, d3).Active)
}

func TestConsumePartitions(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 2)
	q := drivertest.NewQueue(0)
	producer := e.driver(t, "prod", map[string]any{"producer_options": map[string]any{"partitioning_strategy": "Manual"}}, drivertest.NewQueue(0))
	for i := range 4 {
		push(t, producer, &drivertest.Message{JobID: "m" + strconv.Itoa(i), Job: "j", Pipeline: "prod", KafkaTopic: topic, KafkaPartition: int32(i % 2)})
	}
	d := e.running(t, "p1", map[string]any{"consumer_options": map[string]any{"consume_partitions": map[string]any{
		topic: map[string]any{"1": map[string]any{"type": "At", "value": 1}},
	}}}, q)
	it := take(t, q)
	require.Equal(t, "m3", it.ID())
	require.Equal(t, int32(1), it.partition)
	expectNone(t, q, quiet)
	st, err := d.State(context.Background())
	require.NoError(t, err)
	require.Equal(t, topic, st.Queue)
	require.Equal(t, int64(0), st.Active, "only partition 1 from offset 1 counts")
}

func TestCreateTopicsWithConfig(t *testing.T) {
	e := newEnv(t)
	topic := randName("rrt_created_")
	t.Cleanup(func() { _, _ = e.adm.DeleteTopics(context.Background(), topic) })
	section := consumerSection(topic, "", map[string]any{"create_topics": map[string]any{
		"partitions": 3, "replication_factor": 1, "config": map[string]any{"retention.ms": "123456", "cleanup.policy": "delete"},
	}})
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", section, q)

	ctx := context.Background()
	details, err := e.adm.ListTopics(ctx, topic)
	require.NoError(t, err)
	require.Len(t, details[topic].Partitions, 3)
	cfgs, err := e.adm.DescribeTopicConfigs(ctx, topic)
	require.NoError(t, err)
	rc, err := cfgs.On(topic, nil)
	require.NoError(t, err)
	got := map[string]string{}
	for _, c := range rc.Configs {
		if c.Value != nil {
			got[c.Key] = *c.Value
		}
	}
	require.Equal(t, "123456", got["retention.ms"])
	require.Equal(t, "delete", got["cleanup.policy"])

	pushID(t, d, "c1")
	require.Equal(t, "c1", take(t, q).ID())

	// A second pipeline on the existing topic starts fine.
	e.driver(t, "p2", section, drivertest.NewQueue(0))

	// A config the broker refuses fails the start, naming the pipeline and topic.
	bad := consumerSection(randName("rrt_bad_"), "", map[string]any{"create_topics": map[string]any{"replication_factor": 3}})
	conf, err := parseFor("p3", e.global(), bad)
	require.NoError(t, err)
	_, err = NewDriver(nil, "p3", conf, drivertest.NewQueue(0))
	require.ErrorContains(t, err, `kafka pipeline "p3": create topic`)
}

func TestAutoCreateTopicsEnable(t *testing.T) {
	e := newEnv(t, kfake.AllowAutoTopicCreation())
	topic := randName("rrt_auto_")
	t.Cleanup(func() { _, _ = e.adm.DeleteTopics(context.Background(), topic) })

	// Without auto_create_topics_enable the client never asks for the topic: the push times out.
	plain := e.driver(t, "p0", consumerSection(topic, "", nil), drivertest.NewQueue(0))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	require.Error(t, plain.Push(ctx, drivertest.NewMessage("x", "j", "p0", nil)))
	cancel()

	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", consumerSection(topic, "", map[string]any{"auto_create_topics_enable": true}), q)
	pushID(t, d, "auto")
	require.Equal(t, "auto", take(t, q).ID())
}

// TestRebalanceHandsOverWithoutDuplicates: a second member joins; the first gives up the revoked
// partitions' jobs still in its queue (not run), lets its running jobs finish and commits, so every
// job runs exactly once.
func TestRebalanceHandsOverWithoutDuplicates(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 4)
	group := "g-" + topic
	section := consumerSection(topic, group, map[string]any{"prefetch": 1000})
	qa := drivertest.NewQueue(0)
	a := e.running(t, "shared", section, qa)
	const n = 40
	for i := range n {
		pushID(t, a, "r"+strconv.Itoa(i))
	}
	require.Eventually(t, func() bool { return qa.Len() == n }, waitFor, 10*time.Millisecond)
	// One job of A is running when B joins.
	running := take(t, qa)

	qb := drivertest.NewQueue(0)
	e.running(t, "shared", section, qb)
	seen := map[string]int{running.ID(): 1}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = running.Ack()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		for _, q := range []*drivertest.Queue{qa, qb} {
			if j, ok := q.TryExtractMin(); ok {
				it := j.(*Item) //nolint:forcetypeassert // test
				_, _ = it.Context()
				seen[it.ID()]++
				require.NoError(t, it.Ack())
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	require.Len(t, seen, n)
	expectNone(t, qa, quiet)
	expectNone(t, qb, 10*time.Millisecond)
	for id, k := range seen {
		require.Equal(t, 1, k, "job %s ran %d times", id, k)
	}
}

// TestRequeueFallsBackWhenTheProduceFails: the copy cannot be stored, so the original keeps its
// place in the partition (nothing is committed past it) and runs again from this process.
func TestRequeueFallsBackWhenTheProduceFails(t *testing.T) {
	e := newEnv(t)
	topic := e.topic(t, 1)
	group := "g-" + topic
	q := drivertest.NewQueue(0)
	d := e.running(t, "p1", consumerSection(topic, group, map[string]any{
		"producer_options": map[string]any{"disable_idempotent": true},
	}), q)
	pushID(t, d, "f1")
	it := take(t, q)

	// Refuse every produce from now on.
	e.cluster.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		req := r.(*kmsg.ProduceRequest)                    //nolint:forcetypeassert // keyed on Produce
		resp := req.ResponseKind().(*kmsg.ProduceResponse) //nolint:forcetypeassert // its response
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.InvalidRecord.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	start := time.Now()
	require.NoError(t, it.Requeue(map[string][]string{"try": {"2"}}, 0))
	t.Logf("requeue returned after %s", time.Since(start))
	again := take(t, q)
	t.Logf("job back after %s", time.Since(start))
	require.GreaterOrEqual(t, time.Since(start), requeueFallbackDelay)
	require.Equal(t, "f1", again.ID())
	require.Equal(t, int64(0), again.offset)
	require.Equal(t, []string{"2"}, again.Headers()["try"])
	require.NoError(t, again.Ack())
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 1 }, waitFor, 20*time.Millisecond)
}
