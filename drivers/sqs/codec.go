package sqs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
)

// The message layout is the stock driver's, so stock producers and consumers interoperate: the body
// is the payload, and message attributes carry rr_id, rr_job, rr_delay (String), rr_headers (Binary,
// JSON of the headers), rr_priority (Number) and rr_auto_ack (String "true"/"false").
const (
	typeString = "String"
	typeNumber = "Number"
	typeBinary = "Binary"

	// attrBodyEncoding marks a body that is not the payload itself (our addition; stock could not send
	// such payloads at all): "base64" for a payload SQS would reject (invalid UTF-8 or characters
	// outside its allowed set) and "empty" for an empty payload (SQS bodies cannot be empty; the body
	// is then a single placeholder character).
	attrBodyEncoding = "rr_body_encoding"
	encodingBase64   = "base64"
	encodingEmpty    = "empty"
	emptyBody        = "-"

	// foreignJobName is the job name of a message without rr_job (stock's "deduced_by_rr").
	foreignJobName = "deduced_by_rr"
)

// rrAttributes are the message attributes this driver owns; the others of a foreign message become
// headers.
var rrAttributes = map[string]bool{
	jobs.RRID: true, jobs.RRJob: true, jobs.RRDelay: true, jobs.RRHeaders: true, jobs.RRPriority: true,
	jobs.RRAutoAck: true, jobs.RRPipeline: true, attrBodyEncoding: true,
}

// outgoing is what a push or a requeue sends.
type outgoing struct {
	id       string
	job      string
	payload  []byte
	headers  map[string][]string
	priority int64
	delay    int64
	autoAck  bool
}

// encodeBody returns the message body for a payload and the rr_body_encoding it needs ("" for none).
func encodeBody(p []byte) (string, string) {
	if len(p) == 0 {
		return emptyBody, encodingEmpty
	}
	if validBody(p) {
		return string(p), ""
	}
	return base64.StdEncoding.EncodeToString(p), encodingBase64
}

// validBody reports whether SQS accepts p as a body: valid UTF-8 of #x9 | #xA | #xD | #x20 to
// #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
func validBody(p []byte) bool {
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size <= 1 {
			return false
		}
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
		i += size
	}
	return true
}

func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String(typeString), StringValue: aws.String(v)}
}

// encode builds the body and message attributes of a job.
func encode(o outgoing) (string, map[string]types.MessageAttributeValue, error) {
	hdr := o.headers
	if hdr == nil {
		hdr = map[string][]string{}
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		return "", nil, err
	}
	body, enc := encodeBody(o.payload)
	attrs := map[string]types.MessageAttributeValue{
		jobs.RRID:       stringAttr(o.id),
		jobs.RRDelay:    stringAttr(strconv.FormatInt(o.delay, 10)),
		jobs.RRHeaders:  {DataType: aws.String(typeBinary), BinaryValue: h},
		jobs.RRPriority: {DataType: aws.String(typeNumber), StringValue: aws.String(strconv.FormatInt(o.priority, 10))},
		jobs.RRAutoAck:  stringAttr(strconv.FormatBool(o.autoAck)),
	}
	// SQS rejects empty attribute values: an empty job name is left out.
	if o.job != "" {
		attrs[jobs.RRJob] = stringAttr(o.job)
	}
	if enc != "" {
		attrs[attrBodyEncoding] = stringAttr(enc)
	}
	return body, attrs, nil
}

// incoming is a received message decoded into a job.
type incoming struct {
	id       string
	job      string
	payload  []byte
	headers  map[string][]string
	priority int64
	autoAck  bool
	foreign  bool
	// sysKeys are the header keys that came from SQS system attributes (ApproximateReceiveCount
	// ...): they describe this delivery and are not sent on with a requeued copy.
	sysKeys []string
	// group is the message's MessageGroupId (FIFO).
	group string
	// problems lists what could not be decoded (logged by the caller); the job is still usable.
	problems []string
}

// decode turns a received message into a job. It never fails: what cannot be read is reported in
// problems and replaced by a default (a foreign message gets a fresh id and the job name
// "deduced_by_rr"; a missing or bad priority is defPriority).
func decode(m types.Message, defPriority int64) incoming {
	in := incoming{priority: defPriority}
	attrs := m.MessageAttributes
	str := func(name string) (string, bool) {
		a, ok := attrs[name]
		if !ok || a.StringValue == nil {
			return "", false
		}
		return *a.StringValue, true
	}

	body := aws.ToString(m.Body)
	switch enc, _ := str(attrBodyEncoding); enc {
	case encodingEmpty:
		in.payload = []byte{}
	case encodingBase64:
		p, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			in.problems = append(in.problems, "rr_body_encoding is base64 but the body is not: kept as it is")
			p = []byte(body)
		}
		in.payload = p
	default:
		in.payload = []byte(body)
	}

	in.headers = map[string][]string{}
	if a, ok := attrs[jobs.RRHeaders]; ok {
		raw := a.BinaryValue
		if len(raw) == 0 && a.StringValue != nil {
			raw = []byte(*a.StringValue)
		}
		if len(raw) > 0 {
			var h map[string][]string
			if err := json.Unmarshal(raw, &h); err != nil {
				in.problems = append(in.problems, "rr_headers is not a JSON object of string lists: headers dropped")
			} else {
				for k, v := range h {
					in.headers[k] = v
				}
			}
		}
	}

	if id, ok := str(jobs.RRID); ok && id != "" {
		in.id = id
		in.job, _ = str(jobs.RRJob)
	} else {
		in.foreign = true
		in.id = newUUID()
		in.job = foreignJobName
		if j, ok := str(jobs.RRJob); ok && j != "" {
			in.job = j
		}
		foreignHeaders(attrs, in.headers)
	}
	if p, ok := str(jobs.RRPriority); ok {
		n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 64)
		switch {
		case err != nil:
			in.problems = append(in.problems, "rr_priority is not an integer: the pipeline priority is used")
		case n > 0:
			in.priority = n
		}
	}
	if a, ok := str(jobs.RRAutoAck); ok {
		in.autoAck, _ = strconv.ParseBool(strings.TrimSpace(a))
	}

	// System attributes (ApproximateReceiveCount, SentTimestamp, MessageGroupId...) are headers too,
	// as with stock, over any stored header of the same name.
	for k, v := range m.Attributes {
		in.headers[k] = []string{v}
		in.sysKeys = append(in.sysKeys, k)
	}
	in.group = m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]
	if len(in.headers) == 0 {
		in.headers = nil
	}
	return in
}

// foreignHeaders copies the attributes of a message not sent by RoadRunner into headers.
func foreignHeaders(attrs map[string]types.MessageAttributeValue, h map[string][]string) {
	for k, v := range attrs {
		if rrAttributes[k] || v.DataType == nil {
			continue
		}
		switch {
		case strings.HasPrefix(*v.DataType, typeBinary):
			if len(v.BinaryValue) > 0 {
				h[k] = []string{string(v.BinaryValue)}
			}
		case v.StringValue != nil:
			h[k] = []string{*v.StringValue}
		case len(v.BinaryValue) > 0:
			h[k] = []string{string(v.BinaryValue)}
		}
	}
}

// dedupID is the MessageDeduplicationId of a push to a FIFO queue: the job id (stock behaviour, so
// pushing the same job twice within 5 minutes enqueues it once), hashed when SQS would reject it.
func dedupID(jobID string) string {
	if groupIDRe.MatchString(jobID) {
		return jobID
	}
	sum := sha256.Sum256([]byte(jobID))
	return hex.EncodeToString(sum[:])
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
