package googlepubsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
	// quiet is how long a test watches the queue to check that nothing (more) arrives.
	quiet = 700 * time.Millisecond
	// testProject is the project every test uses (the emulator accepts any).
	testProject = "rrjobs-test"
)

// backend is where a test's Pub/Sub runs: the in-process pstest fake or the emulator.
type backend struct {
	name string
	addr string
	srv  *pstest.Server // nil for the emulator
	// close closes srv (once).
	close func()
}

func fakeBackend(t *testing.T, opts ...pstest.ServerReactorOption) backend {
	t.Helper()
	srv := pstest.NewServer(opts...)
	closeSrv := sync.OnceFunc(func() { _ = srv.Close() })
	t.Cleanup(closeSrv)
	return backend{name: "pstest", addr: srv.Addr, srv: srv, close: closeSrv}
}

func emulatorBackend(t *testing.T) backend {
	t.Helper()
	addr := drivertest.Env("RRJOBS_PUBSUB_ADDR", "127.0.0.1:8085")
	drivertest.RequireTCP(t, "Pub/Sub emulator", addr)
	return backend{name: "emulator", addr: addr}
}

// onBoth runs fn against pstest and against the emulator (skipped loudly when it is not running).
func onBoth(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	t.Run("pstest", func(t *testing.T) {
		t.Parallel()
		fn(t, fakeBackend(t))
	})
	t.Run("emulator", func(t *testing.T) {
		t.Parallel()
		fn(t, emulatorBackend(t))
	})
}

func uniq(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// testConfig is a pipeline config on b with a fresh topic and subscription (deleted at the end of
// the test). The names are never reused: the emulator can hand a message of a subscription that
// was deleted and created again to a Pull of the old one that is still pending.
func testConfig(t *testing.T, b backend) Config {
	t.Helper()
	conf := Config{
		Endpoint: b.addr, Insecure: true, ProjectID: testProject, Topic: uniq("topic"), Subscription: uniq("sub"),
		Priority: DefaultPriority, Prefetch: DefaultPrefetch, AckDeadline: 10 * time.Second,
	}
	return conf
}

// adminClient is a plain client for fixtures and assertions.
func adminClient(t *testing.T, b backend) *pubsub.Client {
	t.Helper()
	c, err := newClient(context.Background(), Config{Endpoint: b.addr, Insecure: true, ProjectID: testProject})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// cleanupResources deletes conf's topics and subscriptions when the test ends (the emulator keeps
// them otherwise).
func cleanupResources(t *testing.T, b backend, conf Config, pipeline string) {
	t.Helper()
	if b.srv != nil {
		return
	}
	c := adminClient(t, b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sub := conf.Subscription
		if sub == "" {
			sub = DefaultSubscription(pipeline)
		}
		_ = c.SubscriptionAdminClient.DeleteSubscription(ctx, &pb.DeleteSubscriptionRequest{Subscription: subscriptionPath(conf.ProjectID, sub)})
		_ = c.TopicAdminClient.DeleteTopic(ctx, &pb.DeleteTopicRequest{Topic: topicPath(conf.ProjectID, conf.Topic)})
		if conf.DeadLetterTopic != "" {
			_ = c.SubscriptionAdminClient.DeleteSubscription(ctx, &pb.DeleteSubscriptionRequest{Subscription: subscriptionPath(conf.ProjectID, conf.DeadLetterTopic)})
			_ = c.TopicAdminClient.DeleteTopic(ctx, &pb.DeleteTopicRequest{Topic: topicPath(conf.ProjectID, conf.DeadLetterTopic)})
		}
	})
}

// newDriver builds a driver for pipeline on b with conf and a fresh queue; it is stopped (and its
// client closed) when the test ends.
func newDriver(t *testing.T, b backend, pipeline string, conf Config) (*Driver, *drivertest.Queue) {
	t.Helper()
	q := drivertest.NewQueue(0)
	log := zap.NewNop()
	if os.Getenv("RRJOBS_TEST_DEBUG") != "" {
		log = zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel)).With(zap.String("backend", b.name))
	}
	return newDriverQ(t, b, pipeline, conf, q, log), q
}

func newDriverQ(t *testing.T, b backend, pipeline string, conf Config, q jobs.Queue, log *zap.Logger) *Driver {
	t.Helper()
	cleanupResources(t, b, conf, pipeline)
	d, err := NewDriver(log, pipeline, conf, q)
	require.NoError(t, err)
	t.Cleanup(func() {
		if os.Getenv("RRJOBS_TEST_DEBUG") != "" {
			stopAndWait(t, d) // a test logger must not be used after the test
			return
		}
		require.NoError(t, d.Stop(context.Background()))
	})
	return d
}

// stopAndWait stops d and waits until its client is closed (jobs at workers settled or expired).
func stopAndWait(t *testing.T, d *Driver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
	select {
	case <-d.closed:
	case <-time.After(d.conf.AckDeadline + 5*time.Second):
		t.Errorf("client of pipeline %q was not closed after Stop", d.pipeline)
	}
}

func run(t *testing.T, d *Driver) {
	t.Helper()
	require.NoError(t, d.Run(context.Background(), drivertest.NewPipeline(d.pipeline, pluginName, nil)))
}

// msg is a job for pipeline.
func msg(pipeline, id string) *drivertest.Message {
	return drivertest.NewMessage(id, "job."+id, pipeline, []byte(`{"id":"`+id+`"}`))
}

func push(t *testing.T, d *Driver, m *drivertest.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Push(ctx, m))
}

// next takes the next job from q, failing after waitFor.
func next(t *testing.T, q *drivertest.Queue) *Item {
	t.Helper()
	return nextWithin(t, q, waitFor)
}

func nextWithin(t *testing.T, q *drivertest.Queue, within time.Duration) *Item {
	t.Helper()
	j, ok := q.ExtractMinTimeout(within)
	require.True(t, ok, "no job arrived within %s", within)
	it, ok := j.(*Item)
	require.True(t, ok, "unexpected job type %T", j)
	return it
}

// nothing checks that no job arrives for quiet.
func nothing(t *testing.T, q *drivertest.Queue) {
	t.Helper()
	if j, ok := q.ExtractMinTimeout(quiet); ok {
		t.Fatalf("unexpected job %q", j.ID())
	}
}

// work takes a job as a worker would: it reads the context.
func work(t *testing.T, it *Item) driverkit.JobContext {
	t.Helper()
	raw, err := it.Context()
	require.NoError(t, err)
	var c driverkit.JobContext
	require.NoError(t, json.Unmarshal(raw, &c))
	return c
}

func state(t *testing.T, d *Driver) *jobs.State {
	t.Helper()
	st, err := d.State(context.Background())
	require.NoError(t, err)
	require.NotNil(t, st)
	return st
}

// pullRaw pulls up to max messages of subscription id (acking them) within wait.
func pullRaw(t *testing.T, c *pubsub.Client, id string, want int, wait time.Duration) []*pb.ReceivedMessage {
	t.Helper()
	var got []*pb.ReceivedMessage
	deadline := time.Now().Add(wait)
	for len(got) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Until(deadline))
		resp, err := c.SubscriptionAdminClient.Pull(ctx, &pb.PullRequest{Subscription: subscriptionPath(testProject, id), MaxMessages: int32(want - len(got))}) //nolint:gosec // small
		cancel()
		if err != nil {
			continue
		}
		var ids []string
		for _, rm := range resp.GetReceivedMessages() {
			got = append(got, rm)
			ids = append(ids, rm.GetAckId())
		}
		if len(ids) > 0 {
			_ = c.SubscriptionAdminClient.Acknowledge(context.Background(), &pb.AcknowledgeRequest{Subscription: subscriptionPath(testProject, id), AckIds: ids})
		}
	}
	return got
}
