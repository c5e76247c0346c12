package googlepubsub

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Message attributes. The first six are the stock driver's layout (the api/v4 constants), so
// messages published by either driver are read by the other.
const (
	attrID       = jobs.RRID       // job id
	attrJob      = jobs.RRJob      // job name
	attrDelay    = jobs.RRDelay    // delay in seconds, counted from the message's publish time
	attrHeaders  = jobs.RRHeaders  // headers as a JSON object of string lists
	attrPriority = jobs.RRPriority // job priority
	attrAutoAck  = jobs.RRAutoAck  // "true" / "false"
	// attrHeadersParts is written only when the headers JSON does not fit in one attribute value
	// (Pub/Sub allows 1024 bytes): rr_headers then holds the first part, rr_headers_1 ... the
	// next ones, and rr_headers_parts how many parts there are.
	attrHeadersParts = "rr_headers_parts"

	// maxAttrValue is Pub/Sub's limit on an attribute value, in bytes.
	maxAttrValue = 1024
	// maxHeaderParts keeps a message within Pub/Sub's 100 attributes.
	maxHeaderParts = 90
	// foreignJobName is the job name of a message published without rr_job (stock).
	foreignJobName = "deduced_by_rr"
	// maxDelaySeconds caps a delay (about 68 years; Pub/Sub's retention is far shorter anyway).
	maxDelaySeconds = 1 << 31
)

// wireJob is what a message carries.
type wireJob struct {
	ID       string
	Job      string
	Payload  []byte
	Headers  map[string][]string
	Priority int64
	Delay    int64
	AutoAck  bool
}

// encode renders the job as a Pub/Sub message.
func (w *wireJob) encode() (*pb.PubsubMessage, error) {
	attrs := map[string]string{
		attrID:       w.ID,
		attrJob:      w.Job,
		attrDelay:    strconv.FormatInt(w.Delay, 10),
		attrPriority: strconv.FormatInt(w.Priority, 10),
		attrAutoAck:  strconv.FormatBool(w.AutoAck),
	}
	h := w.Headers
	if h == nil {
		h = map[string][]string{}
	}
	raw, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode headers: %w", err)
	}
	parts := splitUTF8(string(raw), maxAttrValue)
	if len(parts) > maxHeaderParts {
		return nil, fmt.Errorf("headers are %d bytes of JSON, more than the %d Pub/Sub attributes can carry", len(raw), maxHeaderParts*maxAttrValue)
	}
	attrs[attrHeaders] = parts[0]
	if len(parts) > 1 {
		attrs[attrHeadersParts] = strconv.Itoa(len(parts))
		for i := 1; i < len(parts); i++ {
			attrs[attrHeaders+"_"+strconv.Itoa(i)] = parts[i]
		}
	}
	payload := w.Payload
	if payload == nil {
		payload = []byte{}
	}
	return &pb.PubsubMessage{Data: payload, Attributes: attrs}, nil
}

// splitUTF8 cuts s into pieces of at most n bytes without splitting a UTF-8 sequence (attribute
// values must be valid UTF-8). It returns at least one piece.
func splitUTF8(s string, n int) []string {
	if len(s) <= n {
		return []string{s}
	}
	var out []string
	for len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		if cut == 0 {
			cut = n
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return append(out, s)
}

// decoded is a received message read back.
type decoded struct {
	wireJob
	// Warnings lists what could not be read (the job is delivered with defaults instead).
	Warnings []string
}

// decodeMessage reads a received message. It never fails: a message from another producer (no rr_*
// attributes) becomes a job named "deduced_by_rr" whose id is the Pub/Sub message id and whose
// headers are the message attributes; malformed rr_* values fall back to defaults with a warning.
// defPriority replaces a missing, invalid or non-positive priority.
func decodeMessage(m *pb.PubsubMessage, defPriority int64) decoded {
	var d decoded
	if m == nil {
		d.Priority = defPriority
		d.Job = foreignJobName
		d.Warnings = append(d.Warnings, "empty message")
		return d
	}
	attrs := m.GetAttributes()
	d.Payload = m.GetData()
	d.ID = attrs[attrID]
	if d.ID == "" {
		d.ID = m.GetMessageId()
	}
	d.Job = attrs[attrJob]
	if d.Job == "" {
		d.Job = foreignJobName
	}

	d.Priority = defPriority
	if v, ok := attrs[attrPriority]; ok {
		p, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch {
		case err != nil:
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s %q is not a number", attrPriority, v))
		case p > 0:
			d.Priority = p
		}
	}
	if v, ok := attrs[attrDelay]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s %q is not a number", attrDelay, v))
		} else {
			d.Delay = min(max(n, 0), maxDelaySeconds)
		}
	}
	if v, ok := attrs[attrAutoAck]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s %q is not a bool", attrAutoAck, v))
		}
		d.AutoAck = b
	}

	raw, hasHeaders, err := joinHeaders(attrs)
	switch {
	case err != nil:
		d.Warnings = append(d.Warnings, err.Error())
	case hasHeaders:
		h, err := driverkit.DecodeHeadersJSON([]byte(raw))
		if err != nil {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s is %v", attrHeaders, err))
		}
		d.Headers = h
	case attrs[attrID] == "" && attrs[attrJob] == "":
		// A foreign message: its attributes are its headers.
		d.Headers = foreignHeaders(attrs)
	}
	return d
}

// joinHeaders returns the headers JSON, reassembled when it was split.
func joinHeaders(attrs map[string]string) (string, bool, error) {
	first, ok := attrs[attrHeaders]
	if !ok {
		return "", false, nil
	}
	v, split := attrs[attrHeadersParts]
	if !split {
		return first, true, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 || n > maxHeaderParts {
		return "", true, fmt.Errorf("%s %q is not a part count between 1 and %d", attrHeadersParts, v, maxHeaderParts)
	}
	var b strings.Builder
	b.WriteString(first)
	for i := 1; i < n; i++ {
		part, ok := attrs[attrHeaders+"_"+strconv.Itoa(i)]
		if !ok {
			return "", true, fmt.Errorf("headers part %s_%d of %d is missing", attrHeaders, i, n)
		}
		b.WriteString(part)
	}
	return b.String(), true, nil
}

// foreignHeaders turns the attributes of a message from another producer into headers.
func foreignHeaders(attrs map[string]string) map[string][]string {
	if len(attrs) == 0 {
		return nil
	}
	out := make(map[string][]string, len(attrs))
	for k, v := range attrs {
		out[k] = []string{v}
	}
	return out
}

// dueAt is when a received job may run: its publish time plus its delay (the stock layout carries
// the delay, not a due time). A message without a publish time counts from its receipt.
func dueAt(m *pb.PubsubMessage, delay int64, received time.Time) time.Time {
	if delay <= 0 {
		return time.Time{}
	}
	base := received
	if pt := m.GetPublishTime(); pt != nil && pt.IsValid() {
		base = pt.AsTime()
	}
	return base.Add(time.Duration(delay) * time.Second)
}
