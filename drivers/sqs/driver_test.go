package sqs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

func TestPushConsumeAck(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)

	m := msg("j1", `{"hello":"world"}`)
	m.Hdrs = map[string][]string{"X-Trace": {"abc"}, "multi": {"a", "b"}}
	m.Prio = 3
	push(t, d, m)
	push(t, d, msg("j2", "second"))
	waitCounts(t, srv, queue, [3]int{2, 0, 0})

	run(t, d)
	items := takeN(t, q, 2)
	require.Equal(t, []string{"j1", "j2"}, ids(items), "priority 3 before the pipeline's 10")
	it := items[0]
	require.Equal(t, int64(3), it.Priority())
	require.Equal(t, int64(10), items[1].Priority(), "priority 0 takes the pipeline's")
	require.Equal(t, `{"hello":"world"}`, string(it.Body()))
	require.Equal(t, "p1", it.GroupID())
	require.Equal(t, []string{"abc"}, it.Headers()["X-Trace"])
	require.Equal(t, []string{"a", "b"}, it.Headers()["multi"])
	require.Equal(t, []string{"1"}, it.Headers()["ApproximateReceiveCount"], "system attributes are headers, as with stock")

	ctx := jobContext(t, it)
	require.Equal(t, "j1", ctx["id"])
	require.Equal(t, "app.job", ctx["job"])
	require.Equal(t, "sqs", ctx["driver"])
	require.Equal(t, queue, ctx["queue"])
	require.Equal(t, "p1", ctx["pipeline"])

	waitCounts(t, srv, queue, [3]int{0, 2, 0})
	require.NoError(t, it.Ack())
	require.NoError(t, it.Ack(), "a second ack is a no-op")
	require.NoError(t, items[1].NackWithOptions(false, 0), "a final nack deletes")
	waitCounts(t, srv, queue, [3]int{0, 0, 0})
	nothing(t, q)
}

func TestStockMessageLayout(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)

	// What this driver sends is what the stock driver sends.
	m := msg("lay-1", "payload")
	m.Hdrs = map[string][]string{"k": {"v"}}
	m.Prio = 7
	m.DelaySeconds = 0
	push(t, d, m)
	raw := rawReceive(t, srv, queue, 1)
	require.Len(t, raw, 1)
	a := raw[0].MessageAttributes
	require.Equal(t, "payload", aws.ToString(raw[0].Body))
	require.Equal(t, "lay-1", aws.ToString(a[jobs.RRID].StringValue))
	require.Equal(t, "String", aws.ToString(a[jobs.RRID].DataType))
	require.Equal(t, "app.job", aws.ToString(a[jobs.RRJob].StringValue))
	require.Equal(t, "0", aws.ToString(a[jobs.RRDelay].StringValue))
	require.Equal(t, "Binary", aws.ToString(a[jobs.RRHeaders].DataType))
	require.JSONEq(t, `{"k":["v"]}`, string(a[jobs.RRHeaders].BinaryValue))
	require.Equal(t, "Number", aws.ToString(a[jobs.RRPriority].DataType))
	require.Equal(t, "7", aws.ToString(a[jobs.RRPriority].StringValue))
	require.Equal(t, "false", aws.ToString(a[jobs.RRAutoAck].StringValue))
	require.NotContains(t, a, attrBodyEncoding)

	// What a stock producer sends is read the same, and a foreign message gets an id, the job name
	// "deduced_by_rr" and its attributes as headers.
	c := client(srv)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	str := func(v string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	_, err := c.SendMessage(sctx, &sqs.SendMessageInput{QueueUrl: aws.String(srv.QueueURL(queue)), MessageBody: aws.String("from stock"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			jobs.RRID: str("stock-1"), jobs.RRJob: str("Stock\\Job"), jobs.RRDelay: str("0"), jobs.RRAutoAck: str("false"),
			jobs.RRHeaders:  {DataType: aws.String("Binary"), BinaryValue: []byte(`{"h":["1"]}`)},
			jobs.RRPriority: {DataType: aws.String("Number"), StringValue: aws.String("4")},
		}})
	require.NoError(t, err)
	_, err = c.SendMessage(sctx, &sqs.SendMessageInput{QueueUrl: aws.String(srv.QueueURL(queue)), MessageBody: aws.String("foreign"),
		MessageAttributes: map[string]types.MessageAttributeValue{"tenant": str("acme"),
			"blob": {DataType: aws.String("Binary"), BinaryValue: []byte("bytes")}}})
	require.NoError(t, err)

	// lay-1 stays invisible (taken by rawReceive); the driver gets the other two.
	run(t, d)
	got := map[string]*Item{}
	for range 2 {
		it := take(t, q)
		got[string(it.Body())] = it
	}
	stock := got["from stock"]
	require.NotNil(t, stock)
	require.Equal(t, "stock-1", stock.ID())
	require.Equal(t, int64(4), stock.Priority())
	require.Equal(t, []string{"1"}, stock.Headers()["h"])
	require.Equal(t, "Stock\\Job", jobContext(t, stock)["job"])
	foreign := got["foreign"]
	require.NotNil(t, foreign)
	require.Len(t, foreign.ID(), 36)
	require.Equal(t, foreignJobName, jobContext(t, foreign)["job"])
	require.Equal(t, []string{"acme"}, foreign.Headers()["tenant"])
	require.Equal(t, []string{"bytes"}, foreign.Headers()["blob"])
	require.Equal(t, int64(10), foreign.Priority())
	require.NoError(t, stock.Ack())
	require.NoError(t, foreign.Ack())
}

func TestBinaryAndEmptyPayloads(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)
	bin := []byte{0x00, 0xff, 0xfe, 'a', 0x01, 0xc3}
	push(t, d, drivertest.NewMessage("bin", "j", "p1", bin))
	push(t, d, drivertest.NewMessage("empty", "j", "p1", nil))
	push(t, d, drivertest.NewMessage("noname", "", "p1", []byte("x")))
	run(t, d)
	got := map[string]*Item{}
	for _, it := range takeN(t, q, 3) {
		got[it.ID()] = it
	}
	require.Equal(t, bin, got["bin"].Body())
	require.Empty(t, got["empty"].Body())
	require.Equal(t, "", jobContext(t, got["noname"])["job"], "an empty job name survives")
	// A requeued copy keeps the payload exactly.
	require.NoError(t, got["bin"].Requeue(nil, 0))
	again := take(t, q)
	require.Equal(t, bin, again.Body())
	require.NoError(t, again.Ack())
}

func TestDelay(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)
	run(t, d)

	m := msg("late", "x")
	m.DelaySeconds = 1
	pushed := time.Now()
	push(t, d, m)
	st := state(t, d)
	require.Equal(t, int64(1), st.Delayed)
	require.Equal(t, int64(0), st.Active)
	it := take(t, q)
	require.GreaterOrEqual(t, time.Since(pushed), 900*time.Millisecond)
	require.NoError(t, it.Ack())

	// Past SQS's 15 minutes: a clear error naming the job and the limit, nothing sent.
	m = msg("too-late", "x")
	m.DelaySeconds = 901
	err := d.Push(context.Background(), m)
	require.ErrorContains(t, err, `job "too-late"`)
	require.ErrorContains(t, err, "900 seconds")
	waitCounts(t, srv, queue, [3]int{0, 0, 0})
}

func TestNackAndRequeue(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)
	run(t, d)

	m := msg("r1", "body")
	m.Hdrs = map[string][]string{"keep": {"me"}, "over": {"old"}}
	push(t, d, m)
	it := take(t, q)

	// Requeue: a copy with merged headers and a delay, the original deleted.
	start := time.Now()
	require.NoError(t, it.Requeue(map[string][]string{"over": {"new"}, "added": {"1"}}, 1))
	require.Error(t, it.Requeue(nil, 0), "a job is requeued once")
	require.NoError(t, it.Ack(), "an ack after the requeue is a no-op")
	waitCounts(t, srv, queue, [3]int{0, 0, 1})
	again := take(t, q)
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
	require.Equal(t, "r1", again.ID())
	require.Equal(t, []string{"me"}, again.Headers()["keep"])
	require.Equal(t, []string{"new"}, again.Headers()["over"])
	require.Equal(t, []string{"1"}, again.Headers()["added"])
	require.Equal(t, []string{"1"}, again.Headers()["ApproximateReceiveCount"], "a copy is a new message")

	// NackWithOptions(true, 0): back at once; plain Nack (stock default): a copy, back at once.
	require.NoError(t, again.NackWithOptions(true, 0))
	third := take(t, q)
	require.Equal(t, "r1", third.ID())
	require.NoError(t, third.Nack())
	fourth := take(t, q)
	require.Equal(t, "r1", fourth.ID())
	require.NoError(t, fourth.Ack())
	waitCounts(t, srv, queue, [3]int{0, 0, 0})
}

func TestPlainNackRetainsFailedJobs(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	conf := testConfig(srv, queue)
	conf.RetainFailedJobs = true
	conf.ErrorVisibilityTimeout = 1
	d := newDriver(t, conf, q)
	run(t, d)
	push(t, d, msg("keep", "x"))
	it := take(t, q)
	start := time.Now()
	require.NoError(t, it.Nack())
	again := take(t, q)
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "back after error_visibility_timeout")
	require.Equal(t, []string{"2"}, again.Headers()["ApproximateReceiveCount"], "the same message: SQS counts the receives")
	require.NoError(t, again.Ack())
}

func TestPauseResumeAndState(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)
	require.False(t, state(t, d).Ready)
	ctx := context.Background()
	require.Error(t, d.Pause(ctx, "p1"), "nothing to pause before Run")

	run(t, d)
	require.Error(t, d.Run(ctx, drivertest.NewPipeline("p1", pluginName, nil)), "already running")
	for round := range 2 {
		// Pause cancels the long poll in progress (wait_time_seconds 20) at once.
		start := time.Now()
		require.NoError(t, d.Pause(ctx, "p1"))
		require.Less(t, time.Since(start), 2*time.Second)
		st := state(t, d)
		require.False(t, st.Ready)

		m := msg("paused-"+string(rune('a'+round)), "x")
		push(t, d, m)
		delayed := msg("delayed-"+string(rune('a'+round)), "x")
		delayed.DelaySeconds = 60
		push(t, d, delayed)
		nothing(t, q)
		st = state(t, d)
		require.Equal(t, [3]int64{1, 1 + int64(round), 0}, [3]int64{st.Active, st.Delayed, st.Reserved})
		require.Equal(t, "sqs", st.Driver)
		require.Equal(t, queue, st.Queue)
		require.Equal(t, "p1", st.Pipeline)
		require.Equal(t, uint64(10), st.Priority)
		require.Empty(t, st.ErrorMessage)

		require.NoError(t, d.Resume(ctx, "p1"))
		it := take(t, q)
		require.Equal(t, m.JobID, it.ID())
		st = state(t, d)
		require.True(t, st.Ready)
		require.Equal(t, [3]int64{0, 1 + int64(round), 1}, [3]int64{st.Active, st.Delayed, st.Reserved})
		require.NoError(t, it.Ack())
	}
}

func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	conf := testConfig(srv, queue)
	conf.MaxInFlight = 2
	d := newDriver(t, conf, q)
	for i := range 5 {
		push(t, d, msg("m"+string(rune('0'+i)), "x"))
	}
	run(t, d)
	first := takeN(t, q, 2)
	nothing(t, q)
	require.Equal(t, [3]int{3, 2, 0}, counts(t, srv, queue), "only max_messages_in_flight are received")
	require.NoError(t, first[0].Ack())
	third := take(t, q)
	nothing(t, q)
	require.NoError(t, first[1].Ack())
	require.NoError(t, third.Ack())
	for _, it := range takeN(t, q, 2) {
		require.NoError(t, it.Ack())
	}
	waitCounts(t, srv, queue, [3]int{0, 0, 0})
}

// A job held longer than the visibility timeout is not delivered to another consumer: its
// visibility is extended while it waits in the queue and while it runs.
func TestVisibilityIsExtended(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	conf := testConfig(srv, queue)
	conf.VisibilityTimeout = 1
	q1, q2 := drivertest.NewQueue(0), drivertest.NewQueue(0)
	d1 := newNamedDriver(t, "p1", conf, q1)
	push(t, d1, msg("long", "x"))
	run(t, d1)
	it := take(t, q1)
	_, _ = it.Context() // at a worker now

	d2 := newNamedDriver(t, "p2", conf, q2)
	run(t, d2)
	deadline := time.Now().Add(3500 * time.Millisecond)
	for time.Now().Before(deadline) {
		require.Equal(t, [3]int{0, 1, 0}, counts(t, srv, queue))
		_, got := q2.ExtractMinTimeout(100 * time.Millisecond)
		require.False(t, got, "the job was delivered again while it ran")
	}
	require.Greater(t, srv.Calls("ChangeMessageVisibilityBatch"), 2)
	require.NoError(t, it.Ack())
	waitCounts(t, srv, queue, [3]int{0, 0, 0})
	nothing(t, q2)
}

// Without extension (a job nobody holds any more after Stop) SQS redelivers after the timeout.
func TestStopHandsJobsBack(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	conf := testConfig(srv, queue)
	q := drivertest.NewQueue(0)
	d := newDriver(t, conf, q)
	for i := range 3 {
		push(t, d, msg("s"+string(rune('0'+i)), "x"))
	}
	aa := msg("auto", "x")
	aa.AutoAckFlag = true
	push(t, d, aa)
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 4 }, waitFor, tick)
	waitCounts(t, srv, queue, [3]int{0, 3, 0}) // the auto_ack job was deleted on receipt

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
	require.Less(t, time.Since(start), 3*time.Second, "Stop does not wait for a long poll")
	require.Zero(t, q.Len(), "the pipeline's jobs left the shared queue")
	require.Equal(t, [3]int{4, 0, 0}, counts(t, srv, queue), "visible again at once; the auto_ack job was sent back")
	require.NoError(t, d.Stop(ctx), "Stop is idempotent")
	require.ErrorContains(t, d.Push(context.Background(), msg("late", "x")), "stopped")
	require.Error(t, d.Resume(ctx, "p1"))

	// Another consumer gets all four.
	q2 := drivertest.NewQueue(0)
	d2 := newNamedDriver(t, "p2", conf, q2)
	run(t, d2)
	got := map[string]bool{}
	for _, it := range takeN(t, q2, 4) {
		got[it.ID()] = true
		require.NoError(t, it.Ack())
	}
	require.Len(t, got, 4)
}

func TestAutoAck(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)
	m := msg("aa", "x")
	m.AutoAckFlag = true
	push(t, d, m)
	run(t, d)
	it := take(t, q)
	waitCounts(t, srv, queue, [3]int{0, 0, 0})
	// The worker crashed: the plugin requeues, which is a no-op for an auto_ack job.
	require.NoError(t, it.NackWithOptions(true, 1))
	require.NoError(t, it.Nack())
	require.NoError(t, it.Requeue(nil, 0))
	nothing(t, q)
	waitCounts(t, srv, queue, [3]int{0, 0, 0})
}

func TestFIFOOrderAndRequeue(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue(".fifo")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)
	require.True(t, d.conf.FIFO)
	for _, id := range []string{"f1", "f2", "f3", "f4"} {
		push(t, d, msg(id, id))
	}
	// The job id is the deduplication id: the same job pushed again within 5 minutes is stored once.
	push(t, d, msg("f1", "f1 again"))
	// FIFO queues have no per-message delay: pushed without it.
	late := msg("f5", "f5")
	late.DelaySeconds = 30
	push(t, d, late)
	waitCounts(t, srv, queue, [3]int{5, 0, 0})

	run(t, d)
	items := takeN(t, q, 5)
	require.Equal(t, []string{"f1", "f2", "f3", "f4", "f5"}, ids(items))
	for _, h := range items {
		require.Equal(t, []string{"g1"}, h.Headers()["MessageGroupId"])
	}

	// Requeue f1 within the 5-minute deduplication window of its id: the copy must not vanish
	// (roadrunner-server/sqs#864).
	require.NoError(t, items[0].Requeue(map[string][]string{"attempt": {"2"}}, 0))
	for _, it := range items[1:] {
		require.NoError(t, it.Ack())
	}
	again := take(t, q)
	require.Equal(t, "f1", again.ID())
	require.Equal(t, []string{"2"}, again.Headers()["attempt"])

	// A requeue whose send fails keeps the original: it is not deleted, and comes back after its
	// visibility timeout.
	srv.FailNext("SendMessage", retryAttempts)
	err := again.Requeue(nil, 0)
	require.ErrorContains(t, err, "the original message is kept")
	require.Equal(t, [3]int{0, 1, 0}, counts(t, srv, queue))
	srv.Advance(31 * time.Second)
	back := take(t, q)
	require.Equal(t, "f1", back.ID())
	require.Equal(t, []string{"2"}, back.Headers()["ApproximateReceiveCount"])
	require.NoError(t, back.Ack())
	waitCounts(t, srv, queue, [3]int{0, 0, 0})
}

// Within a message group, a later job waits while an earlier one is in flight, here or in another
// rr instance.
func TestFIFOGroupsAcrossConsumers(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue(".fifo")
	conf := testConfig(srv, queue)
	q1, q2 := drivertest.NewQueue(0), drivertest.NewQueue(0)
	d1 := newNamedDriver(t, "p1", conf, q1)
	conf.MaxInFlight, conf.Prefetch = 1, 1
	d2 := newNamedDriver(t, "p2", conf, q2)
	push(t, d1, msg("a1", "x"))
	push(t, d1, msg("a2", "x"))
	run(t, d2)
	first := take(t, q2)
	require.Equal(t, "a1", first.ID())
	// d2 stops receiving (so it cannot take a2 itself); its job a1 is still running.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d2.Stop(ctx))
	run(t, d1)
	nothing(t, q1) // a2 waits for a1
	require.NoError(t, first.Ack())
	require.Equal(t, "a2", take(t, q1).ID())
}

func TestFIFOPushNeedsGroup(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	conf := testConfig(srv, uniqueQueue(".fifo"))
	conf.MessageGroupID = ""
	d := newDriver(t, conf, drivertest.NewQueue(0))
	err := d.Push(context.Background(), msg("x", "y"))
	require.ErrorContains(t, err, "message_group_id is required")
}

func TestOutage(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)
	run(t, d)
	push(t, d, msg("before", "x"))
	it := take(t, q)

	srv.Down()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := d.Push(ctx, msg("while-down", "x"))
	require.Error(t, err, "a push SQS did not take is an error")
	require.ErrorContains(t, err, `job "while-down"`)
	require.Less(t, time.Since(start), 15*time.Second)
	require.Eventually(t, func() bool { return state(t, d).ErrorMessage != "" }, waitFor, tick)

	require.NoError(t, srv.Up())
	require.NoError(t, it.Ack(), "a job received before the outage is acked after it")
	require.Eventually(t, func() bool { return state(t, d).ErrorMessage == "" }, waitFor, tick)
	push(t, d, msg("after", "x"))
	require.Equal(t, "after", take(t, q).ID())
}

func TestQueueDeletedBehindOurBack(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(srv, queue), q)
	run(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client(srv).DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(srv.QueueURL(queue))})
	require.NoError(t, err)
	srv.Advance(61 * time.Second) // SQS refuses the name for 60 seconds after a delete
	push(t, d, msg("recreated", "x"))
	require.Equal(t, "recreated", take(t, q).ID())
}

func TestSkipDeclaration(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	conf := testConfig(srv, uniqueQueue(""))
	conf.SkipDeclare = true
	_, err := NewDriver(nil, "p1", conf, drivertest.NewQueue(0))
	require.ErrorContains(t, err, conf.Queue)
	require.ErrorContains(t, err, "skip_queue_declaration")

	// With the queue there, it is used as it is.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = client(srv).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(conf.Queue), Attributes: map[string]string{"VisibilityTimeout": "7"}})
	require.NoError(t, err)
	d := newDriver(t, conf, drivertest.NewQueue(0))
	require.Equal(t, 7, d.visibility, "the queue's own visibility timeout is the one extended")
}

func TestQueueAttributesAndTags(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	conf := testConfig(srv, queue)
	conf.Attributes = map[string]string{"VisibilityTimeout": "12", "MessageRetentionPeriod": "600"}
	conf.Tags = map[string]string{"team": "jobs"}
	d := newDriver(t, conf, drivertest.NewQueue(0))
	require.Equal(t, 12, d.visibility)
	c := client(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(srv.QueueURL(queue)),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	require.NoError(t, err)
	require.Equal(t, "600", attrs.Attributes["MessageRetentionPeriod"])
	tags, err := c.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(srv.QueueURL(queue))})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "jobs"}, tags.Tags)

	// A second pipeline with other attributes uses the existing queue (with a warning).
	conf.Attributes = map[string]string{"VisibilityTimeout": "99"}
	d2 := newNamedDriver(t, "p2", conf, drivertest.NewQueue(0))
	require.Equal(t, 12, d2.visibility)
}

func TestBadEndpointFailsConstruction(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	conf := testConfig(srv, uniqueQueue(""))
	srv.Close()
	start := time.Now()
	_, err := NewDriver(nil, "p1", conf, drivertest.NewQueue(0))
	require.Error(t, err)
	require.ErrorContains(t, err, `sqs pipeline "p1"`)
	require.ErrorContains(t, err, "create queue")
	require.Less(t, time.Since(start), 15*time.Second)
}

func TestStopWhileQueueFull(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	queue := uniqueQueue("")
	q := drivertest.NewQueue(1) // Insert blocks once one job waits
	d := newDriver(t, testConfig(srv, queue), q)
	for i := range 3 {
		push(t, d, msg("full"+string(rune('0'+i)), "x"))
	}
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 1 }, waitFor, tick)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
	require.Zero(t, q.Len())
	waitCounts(t, srv, queue, [3]int{3, 0, 0})
}

func TestErrorsNameThePipeline(t *testing.T) {
	t.Parallel()
	srv := fake(t)
	d := newDriver(t, testConfig(srv, uniqueQueue("")), drivertest.NewQueue(0))
	err := d.Push(context.Background(), nil)
	require.ErrorContains(t, err, `sqs pipeline "p1"`)
	_, err = NewDriver(nil, "", testConfig(srv, "x"), drivertest.NewQueue(0))
	require.Error(t, err)
	_, err = NewDriver(nil, "p", testConfig(srv, "x"), nil)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "nil queue"))
}
