package amqp

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const (
	// deducedJobName is the job name of a message without rr_job (published by a non-RoadRunner
	// producer), as in the stock driver.
	deducedJobName = "deduced_by_rr"
	// headerRoutingKey in a pushed job's headers overrides the pipeline's routing key (stock).
	headerRoutingKey = "x-routing-key"
	contentType      = "application/octet-stream"
)

// Item is the amqp driver's jobs.Job: one delivery on a consumer channel.
type Item struct {
	drv      *Driver
	gen      *consumerGen // the channel it was delivered on
	tag      uint64       // its delivery tag there
	id       string
	job      string
	priority int64
	payload  []byte
	headers  map[string][]string // immutable
	autoAck  bool

	// Guarded by drv.mu.
	// settled: acked, nacked or requeued (or dropped with its dead channel).
	settled bool
	// implicit: acked by a multiple_ack of a later delivery; a requeue publishes a copy only.
	implicit bool
	// busy: a requeue is publishing the copy.
	busy bool
}

var _ jobs.Job = (*Item)(nil)

// ID returns the job id (the rr_id header).
func (i *Item) ID() string { return i.id }

// GroupID returns the pipeline name (used by Queue.Remove).
func (i *Item) GroupID() string { return i.drv.pipeline }

// Priority returns the job priority (rr_priority, else the pipeline priority).
func (i *Item) Priority() int64 { return i.priority }

// Body returns the message body.
func (i *Item) Body() []byte { return i.payload }

// Headers returns the job headers. Callers must not modify the map.
func (i *Item) Headers() map[string][]string { return i.headers }

// Context returns the job context JSON. It fails for a job whose channel was closed meanwhile:
// RabbitMQ delivers that job again, so it must not run here.
func (i *Item) Context() ([]byte, error) {
	d := i.drv
	if !i.autoAck {
		d.mu.Lock()
		dead := (i.gen.dead || i.gen.isClosed()) && !i.settled
		d.mu.Unlock()
		if dead {
			return nil, fmt.Errorf("amqp pipeline %q: job %q: %w", d.pipeline, i.id, errChannelGone)
		}
	}
	ctx := driverkit.JobContext{ID: i.id, Job: i.job, Driver: pluginName, Headers: i.headers, Queue: d.conf.Queue, Pipeline: d.pipeline}
	return ctx.Marshal()
}

// Ack acknowledges the delivery (basic.ack; with multiple_ack, every earlier delivery of the channel
// too). A no-op for auto_ack jobs.
func (i *Item) Ack() error {
	return i.drv.ack(i)
}

// Nack is the stock nack: basic.nack, requeued by RabbitMQ only with requeue_on_fail (otherwise the
// message is dropped, or dead-lettered if the queue has a dead-letter exchange).
func (i *Item) Nack() error {
	return i.drv.nack(i, i.drv.conf.RequeueOnFail)
}

// NackWithOptions: requeue without delay is a native basic.nack with requeue (the message keeps
// its place); with a delay it is Requeue(nil, delay); without requeue a basic.nack that drops (or
// dead-letters) the message.
func (i *Item) NackWithOptions(requeue bool, delay int) error {
	if requeue && delay > 0 {
		return i.drv.requeue(i, nil, delay)
	}
	return i.drv.nack(i, requeue)
}

// Requeue publishes a copy with headers merged in (given keys replace existing ones) to the
// pipeline's queue, after delay seconds, waits for the broker's confirm and only then acknowledges
// the original. If the copy cannot be published the original is nacked back to the queue.
func (i *Item) Requeue(headers map[string][]string, delay int) error {
	return i.drv.requeue(i, headers, delay)
}

// message is a decoded delivery.
type message struct {
	id       string
	job      string
	priority int64
	delay    int64
	autoAck  bool
	headers  map[string][]string
}

// reservedHeaders are table headers that carry job metadata or broker bookkeeping, not job headers.
var reservedHeaders = map[string]bool{
	jobs.RRID: true, jobs.RRJob: true, jobs.RRHeaders: true, jobs.RRPipeline: true,
	jobs.RRDelay: true, jobs.RRPriority: true, jobs.RRAutoAck: true,
	"x-death": true,
}

func isReservedHeader(k string) bool {
	return reservedHeaders[k] || strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-")
}

// decodeMessage reads the job metadata of a delivery: the stock header names (rr_id, rr_job,
// rr_headers as JSON, rr_priority, rr_delay, rr_auto_ack). A message from another producer gets
// its message_id (or a new UUID) as id and deduced_by_rr as job name; its table headers become job
// headers. It never fails: unreadable fields fall back to defaults and are reported in warnings.
func decodeMessage(table amqp.Table, messageID string, defaultPriority int64) (message, []string) {
	m := message{priority: defaultPriority}
	var warnings []string
	warn := func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }

	if s, ok := stringValue(table[jobs.RRID]); ok && s != "" {
		m.id = s
	} else if messageID != "" {
		m.id = messageID
	} else {
		m.id = newUUID()
	}
	if s, ok := stringValue(table[jobs.RRJob]); ok && s != "" {
		m.job = s
	} else {
		m.job = deducedJobName
	}
	if v, ok := table[jobs.RRPriority]; ok {
		if n, ok := intValue(v); ok && n > 0 {
			m.priority = n
		} else if !ok {
			warn("%s: not an integer: %v", jobs.RRPriority, v)
		}
	}
	if v, ok := table[jobs.RRDelay]; ok {
		if n, ok := intValue(v); ok && n >= 0 {
			m.delay = n
		}
	}
	if v, ok := table[jobs.RRAutoAck]; ok {
		m.autoAck = boolValue(v)
	}

	headers := make(map[string][]string)
	for k, v := range table {
		if isReservedHeader(k) {
			continue
		}
		if vals := headerValues(v, 0); len(vals) > 0 {
			headers[k] = vals
		}
	}
	if raw, ok := table[jobs.RRHeaders]; ok {
		var b []byte
		switch t := raw.(type) {
		case []byte:
			b = t
		case string:
			b = []byte(t)
		}
		if len(b) > 0 {
			h, err := driverkit.DecodeHeadersJSON(b)
			if err != nil {
				warn("%s: %v", jobs.RRHeaders, err)
			}
			for k, v := range h {
				headers[k] = v
			}
		}
	}
	if len(headers) > 0 {
		m.headers = headers
	}
	return m, warnings
}

// headerValues renders an AMQP table value as header strings.
func headerValues(v any, depth int) []string {
	switch t := v.(type) {
	case nil:
		return nil
	case string:
		return []string{t}
	case []byte:
		return []string{string(t)}
	case bool:
		return []string{strconv.FormatBool(t)}
	case int8, int16, int32, int64, int, uint8, uint16, uint32, uint64, uint:
		return []string{fmt.Sprint(t)}
	case float32:
		return []string{strconv.FormatFloat(float64(t), 'f', -1, 32)}
	case float64:
		return []string{strconv.FormatFloat(t, 'f', -1, 64)}
	case amqp.Decimal:
		return []string{formatDecimal(t)}
	case time.Time:
		return []string{t.UTC().Format(time.RFC3339)}
	case []any:
		if depth > 8 {
			return nil
		}
		var out []string
		for _, e := range t {
			out = append(out, headerValues(e, depth+1)...)
		}
		return out
	case amqp.Table:
		b, err := json.Marshal(tableJSON(t, depth))
		if err != nil {
			return nil
		}
		return []string{string(b)}
	default:
		return []string{fmt.Sprint(t)}
	}
}

// tableJSON makes a nested table JSON-encodable ([]byte as strings, decimals formatted).
func tableJSON(t amqp.Table, depth int) map[string]any {
	out := make(map[string]any, len(t))
	for k, v := range t {
		switch x := v.(type) {
		case amqp.Table:
			if depth < 8 {
				out[k] = tableJSON(x, depth+1)
			}
		case []any:
			out[k] = headerValues(x, depth+1)
		case []byte:
			out[k] = string(x)
		case amqp.Decimal:
			out[k] = formatDecimal(x)
		case float32:
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				out[k] = fmt.Sprint(x)
			} else {
				out[k] = x
			}
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				out[k] = fmt.Sprint(x)
			} else {
				out[k] = x
			}
		default:
			out[k] = x
		}
	}
	return out
}

func formatDecimal(d amqp.Decimal) string {
	s := strconv.FormatInt(int64(d.Value), 10)
	if d.Scale == 0 {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	scale := int(d.Scale)
	for len(s) <= scale {
		s = "0" + s
	}
	s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	if neg {
		s = "-" + s
	}
	return s
}

func stringValue(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case []byte:
		return string(t), true
	}
	return "", false
}

func intValue(v any) (int64, bool) {
	switch t := v.(type) {
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
		return n, err == nil
	case []byte:
		n, err := strconv.ParseInt(strings.TrimSpace(string(t)), 10, 64)
		return n, err == nil
	case float32, float64:
		f, _ := t.(float64)
		if f32, ok := t.(float32); ok {
			f = float64(f32)
		}
		if f != math.Trunc(f) || math.IsNaN(f) || math.Abs(f) >= math.MaxInt64 {
			return 0, false
		}
		return int64(f), true
	}
	n, err := driverkit.ToInt64(v)
	return n, err == nil
}

func boolValue(v any) bool {
	switch t := v.(type) {
	case bool:
		return t
	case string:
		b, _ := strconv.ParseBool(strings.TrimSpace(t))
		return b
	}
	n, ok := intValue(v)
	return ok && n != 0
}

// encodeTable builds the headers table of a published job, with the stock names and value types
// (rr_delay int32, rr_priority int64, rr_headers JSON bytes), so stock drivers read it too.
func encodeTable(id, job, pipeline string, headers map[string][]string, delay, priority int64, autoAck bool) (amqp.Table, error) {
	if headers == nil {
		headers = map[string][]string{}
	}
	h, err := json.Marshal(headers)
	if err != nil {
		return nil, fmt.Errorf("encode headers: %w", err)
	}
	return amqp.Table{
		jobs.RRID:       id,
		jobs.RRJob:      job,
		jobs.RRPipeline: pipeline,
		jobs.RRHeaders:  h,
		jobs.RRDelay:    int32(min(delay, math.MaxInt32)), //nolint:gosec // bounded
		jobs.RRPriority: priority,
		jobs.RRAutoAck:  autoAck,
	}, nil
}
