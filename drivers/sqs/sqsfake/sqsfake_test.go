package sqsfake_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/sqs/sqsfake"
)

// The fake is checked with the real aws-sdk-go-v2 client, against the behaviour SQS documents.

func newClient(t *testing.T) (*sqsfake.Server, *sqs.Client) {
	t.Helper()
	srv := sqsfake.New()
	t.Cleanup(srv.Close)
	c := sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL()),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
		RetryMaxAttempts: 1,
	})
	return srv, c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func createQueue(t *testing.T, c *sqs.Client, name string, attrs map[string]string) string {
	t.Helper()
	out, err := c.CreateQueue(ctx(t), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	require.NoError(t, err)
	return aws.ToString(out.QueueUrl)
}

func send(t *testing.T, c *sqs.Client, url, body string, opts ...func(*sqs.SendMessageInput)) *sqs.SendMessageOutput {
	t.Helper()
	in := &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}
	for _, o := range opts {
		o(in)
	}
	out, err := c.SendMessage(ctx(t), in)
	require.NoError(t, err)
	return out
}

func receive(t *testing.T, c *sqs.Client, url string, n int32, opts ...func(*sqs.ReceiveMessageInput)) []types.Message {
	t.Helper()
	in := &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: n,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	}
	for _, o := range opts {
		o(in)
	}
	out, err := c.ReceiveMessage(ctx(t), in)
	require.NoError(t, err)
	return out.Messages
}

func bodies(msgs []types.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = aws.ToString(m.Body)
	}
	return out
}

func counts(t *testing.T, c *sqs.Client, url string) (visible, notVisible, delayed int) {
	t.Helper()
	out, err := c.GetQueueAttributes(ctx(t), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	require.NoError(t, err)
	atoi := func(k types.QueueAttributeName) int {
		n, err := strconv.Atoi(out.Attributes[string(k)])
		require.NoError(t, err)
		return n
	}
	return atoi(types.QueueAttributeNameApproximateNumberOfMessages),
		atoi(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		atoi(types.QueueAttributeNameApproximateNumberOfMessagesDelayed)
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestQueueLifecycle(t *testing.T) {
	srv, c := newClient(t)
	url := createQueue(t, c, "life", map[string]string{"VisibilityTimeout": "45", "DelaySeconds": "0"})
	require.Equal(t, srv.QueueURL("life"), url)

	// Same attributes: the same queue. A different value: QueueNameExists.
	require.Equal(t, url, createQueue(t, c, "life", map[string]string{"VisibilityTimeout": "45"}))
	_, err := c.CreateQueue(ctx(t), &sqs.CreateQueueInput{QueueName: aws.String("life"), Attributes: map[string]string{"VisibilityTimeout": "10"}})
	var exists *types.QueueNameExists
	require.ErrorAs(t, err, &exists)
	require.Equal(t, "QueueAlreadyExists", apiCode(err))

	got, err := c.GetQueueUrl(ctx(t), &sqs.GetQueueUrlInput{QueueName: aws.String("life")})
	require.NoError(t, err)
	require.Equal(t, url, aws.ToString(got.QueueUrl))

	attrs, err := c.GetQueueAttributes(ctx(t), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	require.NoError(t, err)
	require.Equal(t, "45", attrs.Attributes["VisibilityTimeout"])
	require.Equal(t, "arn:aws:sqs:us-east-1:000000000000:life", attrs.Attributes["QueueArn"])
	require.Equal(t, "345600", attrs.Attributes["MessageRetentionPeriod"])
	require.NotContains(t, attrs.Attributes, "FifoQueue")

	_, err = c.TagQueue(ctx(t), &sqs.TagQueueInput{QueueUrl: aws.String(url), Tags: map[string]string{"team": "jobs"}})
	require.NoError(t, err)
	tags, err := c.ListQueueTags(ctx(t), &sqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "jobs"}, tags.Tags)

	createQueue(t, c, "life-2", nil)
	list, err := c.ListQueues(ctx(t), &sqs.ListQueuesInput{QueueNamePrefix: aws.String("life")})
	require.NoError(t, err)
	require.Equal(t, []string{url, srv.QueueURL("life-2")}, list.QueueUrls)
	page, err := c.ListQueues(ctx(t), &sqs.ListQueuesInput{MaxResults: aws.Int32(1)})
	require.NoError(t, err)
	require.Equal(t, []string{url}, page.QueueUrls)
	page, err = c.ListQueues(ctx(t), &sqs.ListQueuesInput{MaxResults: aws.Int32(1), NextToken: page.NextToken})
	require.NoError(t, err)
	require.Equal(t, []string{srv.QueueURL("life-2")}, page.QueueUrls)

	_, err = c.DeleteQueue(ctx(t), &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	require.NoError(t, err)
	_, err = c.GetQueueUrl(ctx(t), &sqs.GetQueueUrlInput{QueueName: aws.String("life")})
	var missing *types.QueueDoesNotExist
	require.ErrorAs(t, err, &missing)
	require.Equal(t, "AWS.SimpleQueueService.NonExistentQueue", apiCode(err))
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x")})
	require.Equal(t, "AWS.SimpleQueueService.NonExistentQueue", apiCode(err))

	// A name cannot be reused for 60 seconds.
	_, err = c.CreateQueue(ctx(t), &sqs.CreateQueueInput{QueueName: aws.String("life")})
	require.Equal(t, "AWS.SimpleQueueService.QueueDeletedRecently", apiCode(err))
	srv.Advance(61 * time.Second)
	createQueue(t, c, "life", nil)
}

func TestCreateQueueValidation(t *testing.T) {
	_, c := newClient(t)
	for name, tc := range map[string]struct {
		queue string
		attrs map[string]string
		code  string
	}{
		"unknown attribute":       {"q1", map[string]string{"visibilitytimeout": "5"}, "InvalidAttributeName"},
		"read-only attribute":     {"q2", map[string]string{"ApproximateNumberOfMessages": "5"}, "InvalidAttributeName"},
		"fifo-only on standard":   {"q3", map[string]string{"ContentBasedDeduplication": "true"}, "InvalidAttributeName"},
		"visibility out of range": {"q4", map[string]string{"VisibilityTimeout": "43201"}, "InvalidAttributeValue"},
		"delay out of range":      {"q5", map[string]string{"DelaySeconds": "901"}, "InvalidAttributeValue"},
		"fifo name without flag":  {"q6.fifo", nil, "InvalidParameterValue"},
		"fifo flag without name":  {"q7", map[string]string{"FifoQueue": "true"}, "InvalidParameterValue"},
		"bad name":                {"bad name", nil, "InvalidParameterValue"},
		"redrive to nowhere":      {"q8", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:none","maxReceiveCount":3}`}, "InvalidParameterValue"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.CreateQueue(ctx(t), &sqs.CreateQueueInput{QueueName: aws.String(tc.queue), Attributes: tc.attrs})
			require.Error(t, err)
			require.Equal(t, tc.code, apiCode(err), "%v", err)
		})
	}
}

func TestSendReceiveAttributesAndChecksums(t *testing.T) {
	_, c := newClient(t)
	url := createQueue(t, c, "attrs", nil)
	attrs := map[string]types.MessageAttributeValue{
		"rr_job":     {DataType: aws.String("String"), StringValue: aws.String("app.job")},
		"rr_headers": {DataType: aws.String("Binary"), BinaryValue: []byte(`{"a":["b"]}`)},
		"rr_pri":     {DataType: aws.String("Number"), StringValue: aws.String("10")},
	}
	sent := send(t, c, url, "héllo", func(in *sqs.SendMessageInput) { in.MessageAttributes = attrs })
	require.NotEmpty(t, sent.MessageId)
	require.Len(t, aws.ToString(sent.MD5OfMessageAttributes), 32)

	got := receive(t, c, url, 10)
	require.Len(t, got, 1)
	m := got[0]
	require.Equal(t, "héllo", aws.ToString(m.Body))
	require.Equal(t, aws.ToString(sent.MessageId), aws.ToString(m.MessageId))
	require.Equal(t, aws.ToString(sent.MD5OfMessageAttributes), aws.ToString(m.MD5OfMessageAttributes))
	require.Equal(t, "app.job", aws.ToString(m.MessageAttributes["rr_job"].StringValue))
	require.Equal(t, []byte(`{"a":["b"]}`), m.MessageAttributes["rr_headers"].BinaryValue)
	require.Equal(t, "1", m.Attributes["ApproximateReceiveCount"])
	require.NotEmpty(t, m.Attributes["SentTimestamp"])

	// Only the attributes asked for are returned.
	send(t, c, url, "second", func(in *sqs.SendMessageInput) { in.MessageAttributes = attrs })
	got = receive(t, c, url, 1, func(in *sqs.ReceiveMessageInput) {
		in.MessageAttributeNames = []string{"rr_job"}
		in.MessageSystemAttributeNames = nil
	})
	require.Len(t, got, 1)
	require.Len(t, got[0].MessageAttributes, 1)
	require.Empty(t, got[0].Attributes)
}

// The attribute digest follows the documented algorithm: the AWS samples (two String attributes;
// one Binary attribute) have known digests.
func TestAttributeDigestKnownValues(t *testing.T) {
	_, c := newClient(t)
	url := createQueue(t, c, "digest", nil)
	str := func(v string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	out := send(t, c, url, "x", func(in *sqs.SendMessageInput) {
		in.MessageAttributes = map[string]types.MessageAttributeValue{
			"test_attribute_name_2": str("test_attribute_value_2"),
			"test_attribute_name_1": str("test_attribute_value_1"),
		}
	})
	require.Equal(t, "d53f3b558fe951154770f25cb63dbba9", aws.ToString(out.MD5OfMessageAttributes))
	out = send(t, c, url, "x", func(in *sqs.SendMessageInput) {
		in.MessageAttributes = map[string]types.MessageAttributeValue{
			"test_attribute_name": {DataType: aws.String("Binary"), BinaryValue: []byte("test_attribute_value")},
		}
	})
	require.Equal(t, "23f6bd27ea87aab7dfeadcc9aebee495", aws.ToString(out.MD5OfMessageAttributes))
}

func TestSendValidation(t *testing.T) {
	_, c := newClient(t)
	url := createQueue(t, c, "val", nil)
	_, err := c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x"), DelaySeconds: 901})
	require.Equal(t, "InvalidParameterValue", apiCode(err))
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("bad \x01 char")})
	require.Equal(t, "InvalidMessageContents", apiCode(err))
	var contents *types.InvalidMessageContents
	require.ErrorAs(t, err, &contents)
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("")})
	require.Equal(t, "MissingParameter", apiCode(err))
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x"), MessageDeduplicationId: aws.String("d")})
	require.Equal(t, "InvalidParameterValue", apiCode(err), "dedup id on a standard queue")
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x"),
		MessageAttributes: map[string]types.MessageAttributeValue{"e": {DataType: aws.String("String"), StringValue: aws.String("")}}})
	require.Equal(t, "InvalidParameterValue", apiCode(err), "empty attribute value")
	_, err = c.ReceiveMessage(ctx(t), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 11})
	require.Equal(t, "InvalidParameterValue", apiCode(err))
	_, err = c.ReceiveMessage(ctx(t), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 21})
	require.Equal(t, "InvalidParameterValue", apiCode(err))

	_, err = c.SetQueueAttributes(ctx(t), &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: map[string]string{"MaximumMessageSize": "1024"}})
	require.NoError(t, err)
	big := make([]byte, 1025)
	for i := range big {
		big[i] = 'a'
	}
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(string(big))})
	require.Equal(t, "InvalidParameterValue", apiCode(err), "message too large")
}

func TestVisibilityExpiryRedelivers(t *testing.T) {
	srv, c := newClient(t)
	url := createQueue(t, c, "vis", map[string]string{"VisibilityTimeout": "30"})
	send(t, c, url, "job")

	first := receive(t, c, url, 1)
	require.Len(t, first, 1)
	require.Empty(t, receive(t, c, url, 1), "invisible while in flight")
	v, nv, d := counts(t, c, url)
	require.Equal(t, [3]int{0, 1, 0}, [3]int{v, nv, d})

	srv.Advance(31 * time.Second)
	v, nv, _ = counts(t, c, url)
	require.Equal(t, [2]int{1, 0}, [2]int{v, nv})
	second := receive(t, c, url, 1)
	require.Len(t, second, 1)
	require.Equal(t, aws.ToString(first[0].MessageId), aws.ToString(second[0].MessageId))
	require.Equal(t, "2", second[0].Attributes["ApproximateReceiveCount"])
	require.NotEqual(t, aws.ToString(first[0].ReceiptHandle), aws.ToString(second[0].ReceiptHandle))

	// The superseded handle succeeds without deleting; the current one deletes.
	_, err := c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: first[0].ReceiptHandle})
	require.NoError(t, err)
	_, nv, _ = counts(t, c, url)
	require.Equal(t, 1, nv)
	_, err = c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: second[0].ReceiptHandle})
	require.NoError(t, err)
	v, nv, d = counts(t, c, url)
	require.Equal(t, [3]int{0, 0, 0}, [3]int{v, nv, d})
	// Deleting again succeeds.
	_, err = c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: second[0].ReceiptHandle})
	require.NoError(t, err)

	_, err = c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: aws.String("garbage")})
	var invalid *types.ReceiptHandleIsInvalid
	require.ErrorAs(t, err, &invalid)
	require.Equal(t, "ReceiptHandleIsInvalid", apiCode(err))
}

func TestVisibilityTimeoutOnReceiveRealTime(t *testing.T) {
	_, c := newClient(t)
	url := createQueue(t, c, "vis-rt", nil)
	send(t, c, url, "job")
	require.Len(t, receive(t, c, url, 1, func(in *sqs.ReceiveMessageInput) { in.VisibilityTimeout = 1 }), 1)
	start := time.Now()
	got := receive(t, c, url, 1, func(in *sqs.ReceiveMessageInput) { in.WaitTimeSeconds = 5 })
	require.Len(t, got, 1, "redelivered once the 1 s visibility timeout expired")
	require.Less(t, time.Since(start), 3*time.Second)
}

func TestChangeMessageVisibility(t *testing.T) {
	srv, c := newClient(t)
	url := createQueue(t, c, "cmv", map[string]string{"VisibilityTimeout": "10"})
	send(t, c, url, "job")
	m := receive(t, c, url, 1)[0]

	// Extending keeps it invisible past the original timeout.
	srv.Advance(8 * time.Second)
	_, err := c.ChangeMessageVisibility(ctx(t), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 10})
	require.NoError(t, err)
	srv.Advance(8 * time.Second)
	require.Empty(t, receive(t, c, url, 1))

	// Zero makes it visible at once.
	_, err = c.ChangeMessageVisibility(ctx(t), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
	require.NoError(t, err)
	again := receive(t, c, url, 1)
	require.Len(t, again, 1)

	// The old handle no longer works; a message whose visibility expired is not in flight.
	_, err = c.ChangeMessageVisibility(ctx(t), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 5})
	require.Equal(t, "InvalidParameterValue", apiCode(err))
	srv.Advance(11 * time.Second)
	_, err = c.ChangeMessageVisibility(ctx(t), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: again[0].ReceiptHandle, VisibilityTimeout: 5})
	var notInflight *types.MessageNotInflight
	require.ErrorAs(t, err, &notInflight)
	require.Equal(t, "AWS.SimpleQueueService.MessageNotInflight", apiCode(err))

	// At most 12 hours in all from the receive.
	m = receive(t, c, url, 1)[0]
	srv.Advance(12 * time.Hour)
	_, err = c.ChangeMessageVisibility(ctx(t), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 10})
	require.Error(t, err) // expired: not in flight any more
	m = receive(t, c, url, 1)[0]
	_, err = c.ChangeMessageVisibility(ctx(t), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 43200})
	require.NoError(t, err)
	srv.Advance(time.Hour)
	_, err = c.ChangeMessageVisibility(ctx(t), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 43200})
	require.Equal(t, "InvalidParameterValue", apiCode(err))
}

func TestBatches(t *testing.T) {
	_, c := newClient(t)
	url := createQueue(t, c, "batch", nil)
	out, err := c.SendMessageBatch(ctx(t), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String("one")},
		{Id: aws.String("b"), MessageBody: aws.String("two"), DelaySeconds: 1000},
		{Id: aws.String("c"), MessageBody: aws.String("three")},
	}})
	require.NoError(t, err)
	require.Len(t, out.Successful, 2)
	require.Len(t, out.Failed, 1)
	require.Equal(t, "b", aws.ToString(out.Failed[0].Id))
	require.Equal(t, "InvalidParameterValue", aws.ToString(out.Failed[0].Code))
	require.True(t, out.Failed[0].SenderFault)

	_, err = c.SendMessageBatch(ctx(t), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String("one")}, {Id: aws.String("a"), MessageBody: aws.String("two")},
	}})
	var dup *types.BatchEntryIdsNotDistinct
	require.ErrorAs(t, err, &dup)
	_, err = c.SendMessageBatch(ctx(t), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: []types.SendMessageBatchRequestEntry{}})
	require.Error(t, err)

	msgs := receive(t, c, url, 10)
	require.ElementsMatch(t, []string{"one", "three"}, bodies(msgs))
	cv, err := c.ChangeMessageVisibilityBatch(ctx(t), &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
		{Id: aws.String("x"), ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: 60},
		{Id: aws.String("y"), ReceiptHandle: aws.String("bogus"), VisibilityTimeout: 60},
	}})
	require.NoError(t, err)
	require.Len(t, cv.Successful, 1)
	require.Equal(t, "ReceiptHandleIsInvalid", aws.ToString(cv.Failed[0].Code))
	del, err := c.DeleteMessageBatch(ctx(t), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("x"), ReceiptHandle: msgs[0].ReceiptHandle},
		{Id: aws.String("y"), ReceiptHandle: msgs[1].ReceiptHandle},
	}})
	require.NoError(t, err)
	require.Len(t, del.Successful, 2)
	v, nv, d := counts(t, c, url)
	require.Equal(t, [3]int{0, 0, 0}, [3]int{v, nv, d})
}

func TestDelay(t *testing.T) {
	_, c := newClient(t)
	url := createQueue(t, c, "delay", nil)
	send(t, c, url, "later", func(in *sqs.SendMessageInput) { in.DelaySeconds = 1 })
	v, nv, d := counts(t, c, url)
	require.Equal(t, [3]int{0, 0, 1}, [3]int{v, nv, d})
	require.Empty(t, receive(t, c, url, 1))
	start := time.Now()
	got := receive(t, c, url, 1, func(in *sqs.ReceiveMessageInput) { in.WaitTimeSeconds = 5 })
	require.Equal(t, []string{"later"}, bodies(got), "a long poll wakes when the delay ends")
	require.Less(t, time.Since(start), 2500*time.Millisecond)

	// The queue's DelaySeconds applies when the message sets none.
	qurl := createQueue(t, c, "delay-q", map[string]string{"DelaySeconds": "60"})
	send(t, c, qurl, "queued")
	_, _, d = counts(t, c, qurl)
	require.Equal(t, 1, d)
}

func TestLongPollWakesOnSend(t *testing.T) {
	srv, c := newClient(t)
	url := createQueue(t, c, "poll", nil)
	done := make(chan []types.Message, 1)
	start := time.Now()
	go func() {
		out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 10})
		if err != nil {
			done <- nil
			return
		}
		done <- out.Messages
	}()
	time.Sleep(200 * time.Millisecond)
	send(t, c, url, "wake")
	select {
	case got := <-done:
		require.Equal(t, []string{"wake"}, bodies(got))
		require.Less(t, time.Since(start), 3*time.Second)
	case <-time.After(8 * time.Second):
		t.Fatal("long poll did not wake on send")
	}

	// Without messages it waits out WaitTimeSeconds and returns none.
	start = time.Now()
	require.Empty(t, receive(t, c, url, 1, func(in *sqs.ReceiveMessageInput) { in.WaitTimeSeconds = 1 }))
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)

	// A cancelled long poll delivers nothing.
	cctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.ReceiveMessage(cctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 20})
	require.Error(t, err)
	require.Eventually(t, func() bool { return srv.Waiting() == 0 }, 5*time.Second, 5*time.Millisecond, "the server noticed")
	send(t, c, url, "after")
	v, _, _ := counts(t, c, url)
	require.Equal(t, 1, v)
}

func TestFIFODeduplication(t *testing.T) {
	srv, c := newClient(t)
	url := createQueue(t, c, "dedup.fifo", map[string]string{"FifoQueue": "true"})
	in := func(body, dedup string) func(*sqs.SendMessageInput) {
		return func(m *sqs.SendMessageInput) {
			m.MessageGroupId = aws.String("g")
			m.MessageDeduplicationId = aws.String(dedup)
		}
	}
	a := send(t, c, url, "a", in("a", "d1"))
	require.NotEmpty(t, a.SequenceNumber)
	dup := send(t, c, url, "a again", in("a again", "d1"))
	require.Equal(t, aws.ToString(a.MessageId), aws.ToString(dup.MessageId), "a duplicate is accepted but not enqueued")
	v, _, _ := counts(t, c, url)
	require.Equal(t, 1, v)

	// Deleting the original does not end the window (roadrunner-server/sqs#864).
	m := receive(t, c, url, 1)[0]
	require.Equal(t, "d1", m.Attributes["MessageDeduplicationId"])
	require.Equal(t, "g", m.Attributes["MessageGroupId"])
	_, err := c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
	require.NoError(t, err)
	send(t, c, url, "copy", in("copy", "d1"))
	v, _, _ = counts(t, c, url)
	require.Equal(t, 0, v, "the copy with the same deduplication id was dropped")

	srv.Advance(5*time.Minute + time.Second)
	send(t, c, url, "copy", in("copy", "d1"))
	v, _, _ = counts(t, c, url)
	require.Equal(t, 1, v, "after 5 minutes the id is new again")

	// A FIFO message needs a group, and a deduplication id unless content-based deduplication is on.
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x"), MessageDeduplicationId: aws.String("x")})
	require.Equal(t, "MissingParameter", apiCode(err))
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x"), MessageGroupId: aws.String("g")})
	require.Equal(t, "InvalidParameterValue", apiCode(err))
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x"), MessageGroupId: aws.String("g"), MessageDeduplicationId: aws.String("y"), DelaySeconds: 5})
	require.Equal(t, "InvalidParameterValue", apiCode(err), "no per-message delay on FIFO")

	cb := createQueue(t, c, "cb.fifo", map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"})
	g := func(m *sqs.SendMessageInput) { m.MessageGroupId = aws.String("g") }
	first := send(t, c, cb, "same", g)
	require.Equal(t, aws.ToString(first.MessageId), aws.ToString(send(t, c, cb, "same", g).MessageId))
	send(t, c, cb, "other", g)
	v, _, _ = counts(t, c, cb)
	require.Equal(t, 2, v)
}

func TestFIFOGroupOrdering(t *testing.T) {
	srv, c := newClient(t)
	url := createQueue(t, c, "order.fifo", map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "30"})
	for _, m := range []struct{ body, group string }{{"a1", "A"}, {"b1", "B"}, {"a2", "A"}, {"a3", "A"}, {"b2", "B"}} {
		send(t, c, url, m.body, func(in *sqs.SendMessageInput) { in.MessageGroupId = aws.String(m.group) })
	}
	a1 := receive(t, c, url, 1)
	require.Equal(t, []string{"a1"}, bodies(a1))
	// Group A is blocked while a1 is in flight; B is not.
	b := receive(t, c, url, 1)
	require.Equal(t, []string{"b1"}, bodies(b))
	require.Empty(t, receive(t, c, url, 10), "both groups have a message in flight")

	_, err := c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: a1[0].ReceiptHandle})
	require.NoError(t, err)
	got := receive(t, c, url, 10)
	require.Equal(t, []string{"a2", "a3"}, bodies(got), "the rest of group A, in order, together")

	// b1's visibility expires: it comes back before b2.
	srv.Advance(31 * time.Second)
	got = receive(t, c, url, 1)
	require.Equal(t, "b1", aws.ToString(got[0].Body))
	require.Equal(t, "2", got[0].Attributes["ApproximateReceiveCount"])

	// On FIFO queues an expired receipt handle cannot delete.
	_, err = c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: b[0].ReceiptHandle})
	require.NoError(t, err, "a superseded handle succeeds without deleting")
	srv.Advance(31 * time.Second)
	_, err = c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: got[0].ReceiptHandle})
	require.Equal(t, "InvalidParameterValue", apiCode(err))
}

func TestPurgeAndRedrive(t *testing.T) {
	_, c := newClient(t)
	url := createQueue(t, c, "purge", nil)
	send(t, c, url, "a")
	send(t, c, url, "b")
	_, err := c.PurgeQueue(ctx(t), &sqs.PurgeQueueInput{QueueUrl: aws.String(url)})
	require.NoError(t, err)
	v, _, _ := counts(t, c, url)
	require.Equal(t, 0, v)
	_, err = c.PurgeQueue(ctx(t), &sqs.PurgeQueueInput{QueueUrl: aws.String(url)})
	var inProgress *types.PurgeQueueInProgress
	require.ErrorAs(t, err, &inProgress)

	dlq := createQueue(t, c, "dlq", nil)
	src := createQueue(t, c, "src", map[string]string{
		"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"2"}`,
	})
	send(t, c, src, "poison")
	for range 2 {
		m := receive(t, c, src, 1, func(in *sqs.ReceiveMessageInput) { in.VisibilityTimeout = 1; in.WaitTimeSeconds = 3 })
		require.Len(t, m, 1)
	}
	require.Empty(t, receive(t, c, src, 1, func(in *sqs.ReceiveMessageInput) { in.WaitTimeSeconds = 2 }), "moved after 2 receives")
	moved := receive(t, c, dlq, 1)
	require.Equal(t, []string{"poison"}, bodies(moved))
	require.Equal(t, "arn:aws:sqs:us-east-1:000000000000:src", moved[0].Attributes["DeadLetterQueueSourceArn"])
	srcs, err := c.ListDeadLetterSourceQueues(ctx(t), &sqs.ListDeadLetterSourceQueuesInput{QueueUrl: aws.String(dlq)})
	require.NoError(t, err)
	require.Equal(t, []string{src}, srcs.QueueUrls)
}

func TestOutageAndInjectedFailures(t *testing.T) {
	srv, c := newClient(t)
	url := createQueue(t, c, "outage", nil)

	srv.FailNext("SendMessage", 1)
	_, err := c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x")})
	require.Equal(t, "InternalError", apiCode(err))
	send(t, c, url, "x")
	require.Equal(t, 2, srv.Calls("SendMessage"))

	srv.SetUnavailable(true)
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("y")})
	require.Equal(t, "ServiceUnavailable", apiCode(err))
	srv.SetUnavailable(false)

	srv.Down()
	_, err = c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("z")})
	require.Error(t, err)
	require.NoError(t, srv.Up())
	send(t, c, url, "z")
	v, _, _ := counts(t, c, url)
	require.Equal(t, 2, v, "messages survive an outage")
}
