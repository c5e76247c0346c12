package sqs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/drivertest"
	"github.com/rrjobs/jobs/drivers/sqs/sqsfake"
)

// There is no SQS in the test environment: the tests run against sqsfake, an in-process server
// speaking the same JSON protocol (drivers/sqs/sqsfake, itself tested against the documented SQS
// behaviour with this SDK).

const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
	// quiet is how long a test watches the queue to check that nothing (more) arrives.
	quiet = 300 * time.Millisecond
)

// fake starts a fake SQS server for one test.
func fake(t *testing.T) *sqsfake.Server {
	t.Helper()
	srv := sqsfake.New()
	t.Cleanup(srv.Close)
	return srv
}

// uniqueQueue returns a fresh queue name with the given suffix ("" or ".fifo").
func uniqueQueue(suffix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "rrt_" + hex.EncodeToString(b[:]) + suffix
}

// testConfig is a pipeline on srv: long polling, prefetch 10.
func testConfig(srv *sqsfake.Server, queue string) Config {
	conf := Config{
		Key: "test", Secret: "test", Region: "us-east-1", Endpoint: srv.URL(),
		Queue: queue, Priority: 10, Prefetch: 10, MaxInFlight: 10, WaitTime: 20,
		Attributes: map[string]string{}, Tags: map[string]string{},
	}
	if len(queue) > 5 && queue[len(queue)-5:] == ".fifo" {
		conf.FIFO = true
		conf.MessageGroupID = "g1"
		conf.Attributes["FifoQueue"] = "true"
	}
	return conf
}

// newDriver builds a driver for pipeline "p1" that is stopped at cleanup.
func newDriver(t *testing.T, conf Config, q jobs.Queue) *Driver {
	t.Helper()
	return newNamedDriver(t, "p1", conf, q)
}

func newNamedDriver(t *testing.T, name string, conf Config, q jobs.Queue) *Driver {
	t.Helper()
	d, err := NewDriver(zap.NewNop(), name, conf, q)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
	})
	return d
}

func run(t *testing.T, d *Driver) {
	t.Helper()
	require.NoError(t, d.Run(context.Background(), drivertest.NewPipeline(d.pipeline, pluginName, nil)))
}

func push(t *testing.T, d *Driver, m *drivertest.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.Push(ctx, m))
}

func msg(id string, payload string) *drivertest.Message {
	return drivertest.NewMessage(id, "app.job", "p1", []byte(payload))
}

// take waits for the next job in q.
func take(t *testing.T, q *drivertest.Queue) *Item {
	t.Helper()
	j, ok := q.ExtractMinTimeout(waitFor)
	require.True(t, ok, "no job within %s", waitFor)
	it, ok := j.(*Item)
	require.True(t, ok, "%T is not an *Item", j)
	return it
}

// takeN waits for n jobs and returns them in queue order.
func takeN(t *testing.T, q *drivertest.Queue, n int) []*Item {
	t.Helper()
	out := make([]*Item, 0, n)
	for range n {
		out = append(out, take(t, q))
	}
	return out
}

// nothing checks that no job arrives within quiet.
func nothing(t *testing.T, q *drivertest.Queue) {
	t.Helper()
	j, ok := q.ExtractMinTimeout(quiet)
	require.False(t, ok, "unexpected job %v", j)
}

func ids(items []*Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID()
	}
	return out
}

// jobContext decodes a job's context.
func jobContext(t *testing.T, it *Item) map[string]any {
	t.Helper()
	b, err := it.Context()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// client is a plain SQS client of srv for fixtures and assertions.
func client(srv *sqsfake.Server) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL()),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
		RetryMaxAttempts: 1,
	})
}

// counts returns the queue's visible, not visible and delayed message counts.
func counts(t *testing.T, srv *sqsfake.Server, queue string) [3]int {
	t.Helper()
	c := client(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(srv.QueueURL(queue)),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	require.NoError(t, err)
	n := func(k types.QueueAttributeName) int {
		v, err := strconv.Atoi(out.Attributes[string(k)])
		require.NoError(t, err)
		return v
	}
	return [3]int{
		n(types.QueueAttributeNameApproximateNumberOfMessages),
		n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}
}

// waitCounts waits until the queue's [visible, not visible, delayed] counts are want.
func waitCounts(t *testing.T, srv *sqsfake.Server, queue string, want [3]int) {
	t.Helper()
	require.Eventually(t, func() bool { return counts(t, srv, queue) == want }, waitFor, tick,
		"queue %s counts: want %v, last %v", queue, want, counts(t, srv, queue))
}

// rawReceive takes messages straight from the queue (not through a driver).
func rawReceive(t *testing.T, srv *sqsfake.Server, queue string, wait int32) []types.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := client(srv).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(srv.QueueURL(queue)), MaxNumberOfMessages: 10, WaitTimeSeconds: wait,
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	require.NoError(t, err)
	return out.Messages
}

func state(t *testing.T, d *Driver) *jobs.State {
	t.Helper()
	st, err := d.State(context.Background())
	require.NoError(t, err)
	require.NotNil(t, st)
	return st
}
