package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/sqs/sqsfake"
	"github.com/rrjobs/jobs/tests/helpers"
)

// End-to-end tests of the sqs driver. There is no SQS here: each test starts sqsfake (an in-process
// server speaking the SQS JSON protocol of aws-sdk-go-v2, see drivers/sqs/sqsfake) and points
// `sqs.endpoint` at it.

// sqsFake starts a fake SQS server that lives as long as the test.
func sqsFake(t *testing.T) *sqsfake.Server {
	t.Helper()
	srv := sqsfake.New()
	t.Cleanup(srv.Close)
	return srv
}

// sqsGlobal is the `sqs:` section for srv.
func sqsGlobal(srv *sqsfake.Server) string {
	return "sqs:\n  key: test\n  secret: test\n  region: us-east-1\n  endpoint: " + srv.URL() + "\n"
}

// sqsClient is a plain client of srv for assertions and cleanup.
func sqsClient(srv *sqsfake.Server) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL()),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
	})
}

// sqsQueue returns a fresh queue name (suffix "" or ".fifo"), deleted when the test ends.
func sqsQueue(t *testing.T, srv *sqsfake.Server, suffix string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "rrjobs-e2e-" + hex.EncodeToString(b[:]) + suffix
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = sqsClient(srv).DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(srv.QueueURL(name))})
	})
	return name
}

// sqsPipeline is the `config:` of a pipeline on queue: long polling, ten jobs at a time.
func sqsPipeline(queue string) string {
	return "queue: " + queue + "\nprefetch: 10\nwait_time_seconds: 20\n"
}

func TestSQSConformance(t *testing.T) {
	srv := sqsFake(t) // one server, so two rr instances share its queues
	runConformance(t, conformance{
		driver:   "sqs",
		global:   func(*testing.T) string { return sqsGlobal(srv) },
		newQueue: func(t *testing.T) string { return sqsQueue(t, srv, "") },
		pipeline: sqsPipeline,
		declare: func(queue string) map[string]string {
			return map[string]string{"queue": queue, "prefetch": "10", "wait_time": "20"}
		},
		stat: statCaps{active: true, delayed: true, reserved: true},
	})
}

// sqsConfig is a server with one sqs pipeline "q" on queue with extra config lines, and one poller
// per worker (more pollers than workers could hand jobs to workers out of queue order).
func sqsConfig(srv *sqsfake.Server, workers int, queue, extra string) string {
	cfg := memoryConfig + sqsGlobal(srv) + fmt.Sprintf(`
jobs:
  num_pollers: %d
  pool:
    num_workers: %d
    allocate_timeout: 10s
  consume: ["q"]
  pipelines:
    q:
      driver: sqs
      config:
        priority: 10
        queue: %s
        prefetch: 10
        wait_time_seconds: 20
`, workers, workers, queue)
	for _, line := range strings.Split(extra, "\n") {
		if line != "" {
			cfg += "        " + line + "\n"
		}
	}
	return cfg
}

// A FIFO pipeline runs a message group's jobs in push order, and a job requeued twice within the
// 5-minute deduplication window of its id is neither lost nor run out of turn
// (roadrunner-server/sqs#864: the stock driver's copy reused the id and vanished).
func TestSQSFIFOOrderingAndRequeue(t *testing.T) {
	helpers.RequirePHP(t)
	srv := sqsFake(t)
	queue := sqsQueue(t, srv, ".fifo")
	s, c := start(t, sqsConfig(srv, 1, queue, "message_group_id: orders\n"))
	// Everything is in the queue before consumption starts, so the expected order does not depend
	// on how the pushes and receives interleave.
	require.NoError(t, c.Pause("q"))
	waitStat(t, c, "q", func(st stat) bool { return !st.Ready })

	ids := []string{"f1", "f2", "rq", "f3", "f4", "f5"}
	for _, id := range ids {
		payload := helpers.Action("ack")
		if id == "rq" {
			payload = helpers.Action("requeue_until", "times", 2)
		}
		require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: id, Payload: payload}))
	}
	require.NoError(t, c.Resume("q"))
	s.WaitEvents(t, 20*time.Second, "done", "rq", 3)
	s.WaitEvents(t, 20*time.Second, "done", "", len(ids)+2)

	var order []string
	for _, e := range s.Events(t, "start", "") {
		order = append(order, e.ID)
	}
	// The group's order holds; each requeued copy goes to the end of the group.
	require.Equal(t, []string{"f1", "f2", "rq", "f3", "f4", "f5", "rq", "rq"}, order)
	starts := s.Events(t, "start", "rq")
	require.Equal(t, []string{"1"}, starts[1].Headers["attempts"])
	require.Equal(t, []string{"2"}, starts[2].Headers["attempts"])
	require.Equal(t, []string{"orders"}, starts[2].Headers["MessageGroupId"])
	waitStat(t, c, "q", func(st stat) bool { return st.Active == 0 && st.Reserved == 0 && st.Delayed == 0 })
}

// SQS delays a message for at most 15 minutes: a longer delay is refused at Push with an error
// naming the job and the limit, and nothing is stored.
func TestSQSDelayOverLimit(t *testing.T) {
	helpers.RequirePHP(t)
	srv := sqsFake(t)
	queue := sqsQueue(t, srv, "")
	s, c := start(t, sqsConfig(srv, 1, queue, ""))

	err := c.Push(helpers.Job{Pipeline: "q", ID: "too-late", Payload: helpers.Action("ack"), Delay: 901})
	require.Error(t, err)
	require.ErrorContains(t, err, `job "too-late"`)
	require.ErrorContains(t, err, "900 seconds")

	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "max", Payload: helpers.Action("ack"), Delay: 900}))
	st := waitStat(t, c, "q", func(st stat) bool { return st.Delayed == 1 })
	require.Equal(t, int64(0), st.Active)
	require.Empty(t, s.Events(t, "start", ""))
}

// A job that runs longer than visibility_timeout runs once: the driver extends the visibility of
// the message while the job runs, so SQS does not hand it out again.
func TestSQSVisibilityExtendedForLongJobs(t *testing.T) {
	helpers.RequirePHP(t)
	srv := sqsFake(t)
	queue := sqsQueue(t, srv, "")
	s, c := start(t, sqsConfig(srv, 2, queue, "visibility_timeout: 1\n"))

	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "long", Payload: helpers.Action("sleep", "ms", 3500)}))
	s.WaitEvents(t, 15*time.Second, "start", "long", 1)
	waitStat(t, c, "q", func(st stat) bool { return st.Reserved == 1 })
	s.WaitEvents(t, 15*time.Second, "done", "long", 1)
	waitStat(t, c, "q", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 })

	// A second delivery would have started by now (the timeout was 1 s, a worker was free).
	time.Sleep(1500 * time.Millisecond)
	require.Len(t, s.Events(t, "start", "long"), 1, "the job ran once")
	require.Greater(t, srv.Calls("ChangeMessageVisibilityBatch"), 3, "the visibility was extended")
}

// A pipeline on a queue that cannot be reached is reported, and recovers when it is back; pushes
// in between fail with an error instead of being lost.
func TestSQSOutage(t *testing.T) {
	helpers.RequirePHP(t)
	srv := sqsFake(t)
	queue := sqsQueue(t, srv, "")
	s, c := start(t, sqsConfig(srv, 1, queue, ""))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "before", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 15*time.Second, "done", "before", 1)

	srv.Down()
	err := c.Push(helpers.Job{Pipeline: "q", ID: "during", Payload: helpers.Action("ack")})
	require.Error(t, err, "a job SQS did not store is not reported as pushed")
	helpers.Eventually(t, 15*time.Second, func() error {
		return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusServiceUnavailable)
	}, "not ready while SQS is unreachable")

	require.NoError(t, srv.Up())
	helpers.Eventually(t, 15*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready again")
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "after", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 15*time.Second, "done", "after", 1)
	require.Empty(t, s.Events(t, "start", "during"))
}
