package sqs

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
)

// received builds the message SQS would deliver for what encode produced.
func received(body string, attrs map[string]types.MessageAttributeValue, sys map[string]string) types.Message {
	return types.Message{Body: aws.String(body), MessageAttributes: attrs, Attributes: sys, MessageId: aws.String("m"), ReceiptHandle: aws.String("r")}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for name, o := range map[string]outgoing{
		"text":     {id: "1", job: "app.job", payload: []byte(`{"a":1}`), headers: map[string][]string{"k": {"v", "w"}}, priority: 5, delay: 3},
		"binary":   {id: "2", job: "j", payload: []byte{0, 1, 0xff, 0xfe}, priority: 1},
		"empty":    {id: "3", job: "j", payload: nil, priority: 1, autoAck: true},
		"no name":  {id: "4", payload: []byte("x"), priority: 2},
		"control":  {id: "5", job: "j", payload: []byte("tab\tok but bell \a not"), priority: 2},
		"surrogat": {id: "6", job: "j", payload: []byte("\xed\xa0\x80"), priority: 2},
	} {
		t.Run(name, func(t *testing.T) {
			body, attrs, err := encode(o)
			require.NoError(t, err)
			require.True(t, validBody([]byte(body)), "the body is always acceptable to SQS")
			require.NotEmpty(t, body)
			for k, a := range attrs {
				if a.StringValue != nil {
					require.NotEmpty(t, *a.StringValue, "SQS rejects empty attribute %s", k)
				}
			}
			in := decode(received(body, attrs, map[string]string{"ApproximateReceiveCount": "1"}), 10)
			require.Empty(t, in.problems)
			require.False(t, in.foreign)
			require.Equal(t, o.id, in.id)
			require.Equal(t, o.job, in.job)
			require.True(t, bytes.Equal(o.payload, in.payload), "payload %q, got %q", o.payload, in.payload)
			require.Equal(t, o.priority, in.priority)
			require.Equal(t, o.autoAck, in.autoAck)
			for k, v := range o.headers {
				require.Equal(t, v, in.headers[k])
			}
			require.Equal(t, []string{"1"}, in.headers["ApproximateReceiveCount"])
			require.Equal(t, []string{"ApproximateReceiveCount"}, in.sysKeys)
		})
	}
}

func TestDecodeIsLenient(t *testing.T) {
	str := func(v string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	in := decode(received("not base64!", map[string]types.MessageAttributeValue{
		jobs.RRID:         str("x"),
		jobs.RRHeaders:    {DataType: aws.String("Binary"), BinaryValue: []byte("not json")},
		jobs.RRPriority:   str("high"),
		attrBodyEncoding:  str(encodingBase64),
		jobs.RRAutoAck:    str("nope"),
		"some_other_attr": str("ignored for rr messages"),
	}, map[string]string{"MessageGroupId": "g"}), 7)
	require.Equal(t, "x", in.id)
	require.Equal(t, int64(7), in.priority)
	require.Equal(t, []byte("not base64!"), in.payload, "a body that is not base64 is kept")
	require.False(t, in.autoAck)
	require.Equal(t, "g", in.group)
	require.Len(t, in.problems, 3)
	require.NotContains(t, in.headers, "some_other_attr")

	// A message of another producer: a fresh UUID, "deduced_by_rr", its attributes as headers.
	in = decode(received("{}", map[string]types.MessageAttributeValue{"tenant": str("acme"), "n": {DataType: aws.String("Number.int"), StringValue: aws.String("5")}}, nil), 10)
	require.True(t, in.foreign)
	require.Len(t, in.id, 36)
	require.Equal(t, foreignJobName, in.job)
	require.Equal(t, map[string][]string{"tenant": {"acme"}, "n": {"5"}}, in.headers)

	// Nothing at all.
	in = decode(types.Message{}, 10)
	require.True(t, in.foreign)
	require.Empty(t, in.payload)
	require.Nil(t, in.headers)
}

func TestDedupID(t *testing.T) {
	require.Equal(t, "job-1", dedupID("job-1"))
	long := strings.Repeat("x", 200)
	require.Len(t, dedupID(long), 64)
	require.Len(t, dedupID("has space"), 64)
	require.NotEqual(t, dedupID("a b"), dedupID("a c"))
}

// FuzzDecode feeds arbitrary message contents to the decoder: it must never panic, always return
// an id, and never return headers it cannot hand to PHP.
func FuzzDecode(f *testing.F) {
	f.Add("payload", "id-1", "app.job", []byte(`{"k":["v"]}`), "10", "false", "")
	f.Add("", "", "", []byte(nil), "", "", "")
	f.Add("AAEC", "id", "j", []byte(`{}`), "-3", "true", "base64")
	f.Add("-", "id", "j", []byte(`null`), "x", "1", "empty")
	f.Add("!!", "id", "", []byte(`{"a":"b"}`), "99999999999999999999", "TRUE", "base64")
	f.Add("x", "", "", []byte(`[1,2]`), "", "", "gzip")
	f.Fuzz(func(t *testing.T, body, id, job string, headers []byte, priority, autoAck, encoding string) {
		attrs := map[string]types.MessageAttributeValue{}
		if id != "" {
			attrs[jobs.RRID] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(id)}
		}
		if job != "" {
			attrs[jobs.RRJob] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(job)}
		}
		if headers != nil {
			attrs[jobs.RRHeaders] = types.MessageAttributeValue{DataType: aws.String("Binary"), BinaryValue: headers}
		}
		if priority != "" {
			attrs[jobs.RRPriority] = types.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(priority)}
		}
		if autoAck != "" {
			attrs[jobs.RRAutoAck] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(autoAck)}
		}
		if encoding != "" {
			attrs[attrBodyEncoding] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(encoding)}
		}
		in := decode(received(body, attrs, map[string]string{"SentTimestamp": "1"}), 10)
		if in.id == "" {
			t.Fatal("empty id")
		}
		if in.priority <= 0 {
			t.Fatalf("priority %d", in.priority)
		}
		if in.payload == nil {
			t.Fatal("nil payload")
		}
		if got := in.headers["SentTimestamp"]; len(got) != 1 || got[0] != "1" {
			t.Fatalf("system attribute header %v", got)
		}
	})
}

// FuzzEncodeRoundTrip checks that whatever a producer pushes comes back unchanged.
func FuzzEncodeRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), "job", "key", "value", int64(5))
	f.Add([]byte{}, "", "", "", int64(0))
	f.Add([]byte{0xff, 0, 0x7f}, "Name\\Space", "k", "\x00", int64(-1))
	f.Fuzz(func(t *testing.T, payload []byte, job, key, value string, priority int64) {
		if !utf8.ValidString(job) || !utf8.ValidString(key) || !utf8.ValidString(value) || !validBody([]byte(job)) {
			t.Skip("SQS attribute values are XML text; job names and headers come from JSON (valid UTF-8)")
		}
		o := outgoing{id: "id", job: job, payload: payload, priority: max(priority, 1)}
		if key != "" {
			o.headers = map[string][]string{key: {value}}
		}
		body, attrs, err := encode(o)
		if err != nil {
			t.Fatal(err)
		}
		if !validBody([]byte(body)) || body == "" {
			t.Fatalf("body %q would be rejected by SQS", body)
		}
		in := decode(received(body, attrs, nil), 10)
		if !bytes.Equal(in.payload, payload) && !(len(payload) == 0 && len(in.payload) == 0) {
			t.Fatalf("payload %q came back as %q", payload, in.payload)
		}
		if in.job != job || in.id != "id" || in.priority != o.priority {
			t.Fatalf("got %+v", in)
		}
		if key != "" && (len(in.headers[key]) != 1 || in.headers[key][0] != value) {
			t.Fatalf("header %q: %v", key, in.headers[key])
		}
	})
}
