package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/stretchr/testify/require"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rrjobs/jobs/drivers/drivertest"
	"github.com/rrjobs/jobs/tests/helpers"
)

// End-to-end tests of the google_pub_sub driver against the Pub/Sub emulator (RRJOBS_PUBSUB_ADDR,
// default 127.0.0.1:8085, started by scripts/services.sh). Every test works on its own topics and
// subscriptions and deletes them at the end; names are never reused (the emulator may hand a
// message of a re-created subscription to a Pull of the old one).

const pubsubProject = "rrjobs-e2e"

func pubsubAddr() string { return drivertest.Env("RRJOBS_PUBSUB_ADDR", "127.0.0.1:8085") }

func requirePubSub(t *testing.T) {
	t.Helper()
	drivertest.RequireTCP(t, "Pub/Sub emulator", pubsubAddr())
}

// pubsubGlobal is the `google_pub_sub:` section for the emulator.
func pubsubGlobal(*testing.T) string {
	return "google_pub_sub:\n  endpoint: \"" + pubsubAddr() + "\"\n  insecure: true\n"
}

// pubsubClient is a plain client of the emulator, closed at the end of the test.
func pubsubClient(t *testing.T) *pubsub.Client {
	t.Helper()
	c, err := pubsub.NewClient(context.Background(), pubsubProject,
		option.WithEndpoint(pubsubAddr()), option.WithoutAuthentication(), option.WithTelemetryDisabled(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func pubsubTopicPath(id string) string { return "projects/" + pubsubProject + "/topics/" + id }
func pubsubSubPath(id string) string   { return "projects/" + pubsubProject + "/subscriptions/" + id }

// pubsubTopic returns a fresh topic name. The topic and the subscription "<topic>-sub" (the one
// pubsubPipeline consumes) are deleted when the test ends, as are a subscription named after the
// topic (the one the driver creates on a dead-letter topic).
func pubsubTopic(t *testing.T) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	name := "rre2e-" + hex.EncodeToString(b[:])
	c := pubsubClient(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, sub := range []string{name + "-sub", name} {
			_ = c.SubscriptionAdminClient.DeleteSubscription(ctx, &pb.DeleteSubscriptionRequest{Subscription: pubsubSubPath(sub)})
		}
		_ = c.TopicAdminClient.DeleteTopic(ctx, &pb.DeleteTopicRequest{Topic: pubsubTopicPath(name)})
	})
	return name
}

// pubsubPipeline is a pipeline consuming topic through the subscription "<topic>-sub". The ack
// deadline is short so that the lease extensions run during the tests.
func pubsubPipeline(topic string) string {
	return "project_id: " + pubsubProject + "\ntopic: " + topic + "\nsubscription: " + topic + "-sub\nack_deadline: 10s\n"
}

func TestPubSubConformance(t *testing.T) {
	runConformance(t, conformance{
		driver:   "google_pub_sub",
		require:  requirePubSub,
		global:   pubsubGlobal,
		newQueue: pubsubTopic,
		pipeline: pubsubPipeline,
		declare: func(topic string) map[string]string {
			return map[string]string{"project_id": pubsubProject, "topic": topic, "subscription": topic + "-sub", "prefetch": "5"}
		},
		// The queue a worker sees and Stat shows is the topic (the default: the queue itself).
		// Reserved is exact; Active and Delayed count only what this process holds (Pub/Sub has
		// no backlog count outside Cloud Monitoring, the emulator none at all), so a paused
		// pipeline shows 0 for jobs still in the subscription.
		stat: statCaps{active: false, delayed: false, reserved: true},
	})
}

// pubsubConfig is a config with google_pub_sub pipelines name -> config lines, with one poller per
// worker (so a job waiting for a busy worker stays in the plugin's queue, where Stat counts it as
// Active).
func pubsubConfig(workers int, consume []string, pipelines map[string]string) string {
	var b strings.Builder
	b.WriteString(memoryConfig)
	b.WriteString(pubsubGlobal(nil))
	quoted := make([]string, len(consume))
	for i, n := range consume {
		quoted[i] = strconv.Quote(n)
	}
	fmt.Fprintf(&b, "jobs:\n  num_pollers: %d\n  timeout: 10\n  pool:\n    num_workers: %d\n    allocate_timeout: 10s\n", workers, workers)
	fmt.Fprintf(&b, "  consume: [%s]\n  pipelines:\n", strings.Join(quoted, ", "))
	for name, lines := range pipelines {
		fmt.Fprintf(&b, "    %s:\n      driver: google_pub_sub\n      config:\n", name)
		for _, line := range strings.Split(strings.TrimRight(lines, "\n"), "\n") {
			b.WriteString("        " + line + "\n")
		}
	}
	return b.String()
}

// Pause really stops delivery: the jobs waiting in the plugin's queue are handed back, jobs pushed
// while paused are not run, and everything runs after Resume. Stat works in every state.
func TestPubSubPauseStopsDelivery(t *testing.T) {
	requirePubSub(t)
	topic, marker := pubsubTopic(t), pubsubTopic(t)
	s, c := start(t, pubsubConfig(1, []string{"q", "marker"}, map[string]string{
		"q": pubsubPipeline(topic), "marker": pubsubPipeline(marker),
	}))

	// One worker, busy: three jobs wait in the plugin's queue.
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "blocker", Payload: helpers.Action("sleep", "ms", 1500)}))
	s.WaitEvents(t, 15*time.Second, "start", "blocker", 1)
	for i := range 3 {
		require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "queued-" + strconv.Itoa(i), Payload: helpers.Action("ack")}))
	}
	st := waitStat(t, c, "q", func(st stat) bool { return st.Active == 3 && st.Reserved == 1 })
	require.True(t, st.Ready)
	require.Equal(t, topic, st.Queue)

	require.NoError(t, c.Pause("q"))
	waitStat(t, c, "q", func(st stat) bool { return !st.Ready && st.Reserved <= 1 })
	for i := range 3 {
		require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "paused-" + strconv.Itoa(i), Payload: helpers.Action("ack")}))
	}
	s.WaitEvents(t, 15*time.Second, "done", "blocker", 1)
	// The marker pipeline goes on meanwhile; by the time its job is done, a paused pipeline that
	// handed out anything would have started it on the free worker.
	require.NoError(t, c.Push(helpers.Job{Pipeline: "marker", ID: "m1", Payload: helpers.Action("sleep", "ms", 1000)}))
	s.WaitEvents(t, 15*time.Second, "done", "m1", 1)
	waitStat(t, c, "q", func(st stat) bool { return st.Active == 0 && st.Reserved == 0 && !st.Ready })
	for _, e := range s.Events(t, "start", "") {
		require.False(t, strings.HasPrefix(e.ID, "queued-") || strings.HasPrefix(e.ID, "paused-"), "job %s ran while the pipeline was paused", e.ID)
	}

	require.NoError(t, c.Resume("q"))
	helpers.Eventually(t, 20*time.Second, func() error {
		done := map[string]bool{}
		for _, e := range s.Events(t, "done", "") {
			done[e.ID] = true
		}
		for _, p := range []string{"queued-", "paused-"} {
			for i := range 3 {
				if !done[p+strconv.Itoa(i)] {
					return fmt.Errorf("%s%d not done", p, i)
				}
			}
		}
		return nil
	}, "every job runs after Resume")
	waitStat(t, c, "q", func(st stat) bool { return st.Ready && st.Active == 0 && st.Reserved == 0 })
	for _, e := range s.Events(t, "start", "") {
		require.Equal(t, "google_pub_sub", e.Driver)
	}
}

// Stat shows what the driver holds: jobs at a worker (Reserved), jobs waiting in the plugin's queue
// (Active) and delayed jobs held until due (Delayed); it never fails, also for a pipeline that
// does not consume.
func TestPubSubStatCounts(t *testing.T) {
	requirePubSub(t)
	topic, idle := pubsubTopic(t), pubsubTopic(t)
	s, c := start(t, pubsubConfig(1, []string{"q"}, map[string]string{"q": pubsubPipeline(topic), "idle": pubsubPipeline(idle)}))

	st := waitStat(t, c, "idle", func(st stat) bool { return !st.Ready })
	require.Equal(t, "google_pub_sub", st.Driver)
	require.Equal(t, idle, st.Queue)
	require.Equal(t, uint64(10), st.Priority)
	require.Zero(t, st.Active+st.Reserved+st.Delayed)

	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "busy", Payload: helpers.Action("sleep", "ms", 2000)}))
	s.WaitEvents(t, 15*time.Second, "start", "busy", 1)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "w1", Payload: helpers.Action("ack")}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "w2", Payload: helpers.Action("ack")}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "later", Payload: helpers.Action("ack"), Delay: 4}))
	waitStat(t, c, "q", func(st stat) bool { return st.Reserved == 1 && st.Active == 2 && st.Delayed == 1 && st.Ready })
	s.WaitEvents(t, 15*time.Second, "done", "w2", 1)
	waitStat(t, c, "q", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 && st.Delayed == 1 })
	s.WaitEvents(t, 15*time.Second, "done", "later", 1)
	waitStat(t, c, "q", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 && st.Delayed == 0 })
}

// A job nacked max_delivery_attempts times lands on the dead-letter topic (Pub/Sub's own policy,
// which the emulator implements), with its id, name and headers: a pipeline on that topic runs it.
func TestPubSubDeadLetterTopic(t *testing.T) {
	requirePubSub(t)
	topic, dlt := pubsubTopic(t), pubsubTopic(t)
	s, c := start(t, pubsubConfig(2, []string{"q", "dead"}, map[string]string{
		"q": pubsubPipeline(topic) + "dead_letter_topic: " + dlt + "\nmax_delivery_attempts: 5\n",
		// The driver created a subscription named after the dead-letter topic: consume it.
		"dead": "project_id: " + pubsubProject + "\ntopic: " + dlt + "\nsubscription: " + dlt + "\n",
	}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "poison", Payload: helpers.Action("nack", "requeue", true),
		Headers: map[string][]string{"origin": {"e2e"}}}))
	// 5 attempts in q, then the dead-letter pipeline gets it (where it is nacked again, so it may
	// come back there: only q's deliveries are counted exactly).
	got := s.WaitEvents(t, 20*time.Second, "start", "poison", 6)
	require.Equal(t, "dead", got[5].Pipeline)
	require.Equal(t, []string{"e2e"}, got[5].Headers["origin"])
	for _, e := range got[:5] {
		require.Equal(t, "q", e.Pipeline)
	}
	waitStat(t, c, "q", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 })
	inQ := 0
	for _, e := range s.Events(t, "start", "poison") {
		if e.Pipeline == "q" {
			inQ++
		}
	}
	require.Equal(t, 5, inQ, "no delivery in q after the dead-letter topic took it")
}

// A restarted rr resumes the pipeline's subscription: jobs pushed while it was paused and then
// stopped run after the restart, and a message published by another producer in the stock
// layout runs with its id, name and headers.
func TestPubSubRestartResumesTheSubscription(t *testing.T) {
	requirePubSub(t)
	topic := pubsubTopic(t)
	cfg := pubsubConfig(2, []string{"q"}, map[string]string{"q": pubsubPipeline(topic)})
	s1, c1 := start(t, cfg)
	require.NoError(t, c1.Push(helpers.Job{Pipeline: "q", ID: "first", Payload: helpers.Action("ack")}))
	s1.WaitEvents(t, 15*time.Second, "done", "first", 1)
	require.NoError(t, c1.Pause("q"))
	require.NoError(t, c1.Push(helpers.Job{Pipeline: "q", ID: "pending", Payload: helpers.Action("ack")}))
	require.NoError(t, c1.Push(helpers.Job{Pipeline: "q", ID: "delayed", Payload: helpers.Action("ack"), Delay: 3}))
	require.NoError(t, s1.Stop())

	ps := pubsubClient(t)
	_, err := ps.TopicAdminClient.Publish(context.Background(), &pb.PublishRequest{Topic: pubsubTopicPath(topic), Messages: []*pb.PubsubMessage{{
		Data: []byte(helpers.Action("ack")),
		Attributes: map[string]string{
			"rr_id": "stock", "rr_job": "App\\Jobs\\Stock", "rr_delay": "0", "rr_headers": `{"from":["stock"]}`,
			"rr_priority": "5", "rr_auto_ack": "false",
		},
	}}})
	require.NoError(t, err)

	s2, c2 := start(t, cfg)
	s2.WaitEvents(t, 20*time.Second, "done", "pending", 1)
	s2.WaitEvents(t, 20*time.Second, "done", "delayed", 1)
	s2.WaitEvents(t, 20*time.Second, "done", "stock", 1)
	st := s2.Events(t, "start", "stock")[0]
	require.Equal(t, "App\\Jobs\\Stock", st.Job)
	require.Equal(t, []string{"stock"}, st.Headers["from"])
	waitStat(t, c2, "q", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 && st.Delayed == 0 })
	require.Empty(t, s2.Events(t, "start", "first"), "an acknowledged job is not delivered again")
}

// The connection to Pub/Sub is cut while a job runs: pushes fail with a clear error, /ready
// reports the pipeline unhealthy, the running job's ack is retried until the connection is back,
// and consumption resumes by itself.
func TestPubSubConnectionCut(t *testing.T) {
	requirePubSub(t)
	p := helpers.StartProxy(t, pubsubAddr())
	topic := pubsubTopic(t)
	cfg := strings.Replace(pubsubConfig(2, []string{"q"}, map[string]string{"q": pubsubPipeline(topic)}),
		"endpoint: \""+pubsubAddr()+"\"", "endpoint: \""+p.Addr+"\"", 1)
	s, c := start(t, cfg)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "before", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 15*time.Second, "done", "before", 1)
	helpers.Eventually(t, 15*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready")

	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "long", Payload: helpers.Action("sleep", "ms", 2000)}))
	s.WaitEvents(t, 15*time.Second, "start", "long", 1)
	p.Cut()
	begin := time.Now()
	err := c.Push(helpers.Job{Pipeline: "q", ID: "while-cut", Payload: helpers.Action("ack")})
	require.Error(t, err)
	require.Less(t, time.Since(begin), 8*time.Second)
	require.Contains(t, err.Error(), `google_pub_sub pipeline "q"`)
	require.Contains(t, err.Error(), `push job "while-cut"`)
	require.Contains(t, err.Error(), "Unavailable")
	helpers.Eventually(t, 10*time.Second, func() error {
		return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusServiceUnavailable)
	}, "not ready while Pub/Sub is unreachable")

	p.Restore(t)
	helpers.Eventually(t, 30*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready again")
	s.WaitEvents(t, 15*time.Second, "done", "long", 1)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "after", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 20*time.Second, "done", "after", 1)
	waitStat(t, c, "q", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 })
	require.Empty(t, s.Events(t, "start", "while-cut"))
}
