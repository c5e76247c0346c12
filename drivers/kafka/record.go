package kafka

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Record headers the driver writes besides the job's own headers. rr_job, rr_pipeline and
// rr_priority (8 bytes, little-endian) are the stock driver's; rr_auto_ack and rr_delay_until are
// this driver's.
const (
	hdrJob      = jobs.RRJob
	hdrPipeline = jobs.RRPipeline
	hdrPriority = jobs.RRPriority
	hdrAutoAck  = jobs.RRAutoAck
	// hdrDelayUntil holds the time (Unix milliseconds, decimal) before which the job must not run.
	hdrDelayUntil = "rr_delay_until"

	// deducedJob is the job name of a record without rr_job (a message from a foreign producer).
	deducedJob = "deduced_by_rr"
)

// internalHeaders are not shown to workers as job headers.
var internalHeaders = map[string]bool{
	hdrJob: true, hdrPipeline: true, hdrPriority: true, hdrAutoAck: true, hdrDelayUntil: true,
	jobs.RRID: true, jobs.RRHeaders: true, jobs.RRDelay: true,
}

// recordJob is a job as it travels in a record.
type recordJob struct {
	ID       string
	Job      string
	Pipeline string
	Priority int64
	AutoAck  bool
	// DelayUntil is zero when the job may run at once.
	DelayUntil time.Time
	Headers    map[string][]string
	Payload    []byte
}

// encodeRecord builds the record of a job: key = job id, value = payload, one record header per
// header value (Kafka allows repeated keys, so every value of a multi-valued header survives) and
// the rr_* headers.
func encodeRecord(topic string, j *recordJob) *kgo.Record {
	keys := make([]string, 0, len(j.Headers))
	n := 4
	for k, v := range j.Headers {
		if internalHeaders[k] {
			continue
		}
		keys = append(keys, k)
		n += len(v)
	}
	sort.Strings(keys)
	hdrs := make([]kgo.RecordHeader, 0, n)
	for _, k := range keys {
		for _, v := range j.Headers[k] {
			hdrs = append(hdrs, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	prio := make([]byte, 8)
	binary.LittleEndian.PutUint64(prio, uint64(j.Priority)) //nolint:gosec // round-trips through int64
	hdrs = append(hdrs,
		kgo.RecordHeader{Key: hdrJob, Value: []byte(j.Job)},
		kgo.RecordHeader{Key: hdrPipeline, Value: []byte(j.Pipeline)},
		kgo.RecordHeader{Key: hdrPriority, Value: prio},
	)
	if j.AutoAck {
		hdrs = append(hdrs, kgo.RecordHeader{Key: hdrAutoAck, Value: []byte("true")})
	}
	if !j.DelayUntil.IsZero() {
		hdrs = append(hdrs, kgo.RecordHeader{Key: hdrDelayUntil, Value: []byte(strconv.FormatInt(j.DelayUntil.UnixMilli(), 10))})
	}
	payload := j.Payload
	if payload == nil {
		payload = []byte{}
	}
	return &kgo.Record{Topic: topic, Key: []byte(j.ID), Value: payload, Headers: hdrs}
}

// decodeRecord reads a job from any record, including ones from foreign producers: a record
// without a key gets a fresh id, without rr_job the name deduced_by_rr, and malformed rr_* headers
// are ignored (never a panic).
func decodeRecord(r *kgo.Record) *recordJob {
	j := &recordJob{ID: string(r.Key), Payload: r.Value}
	for _, h := range r.Headers {
		switch h.Key {
		case hdrJob:
			j.Job = string(h.Value)
		case hdrPipeline:
			j.Pipeline = string(h.Value)
		case hdrPriority:
			j.Priority = decodePriority(h.Value)
		case hdrAutoAck:
			j.AutoAck = parseBool(string(h.Value))
		case hdrDelayUntil:
			if ms, err := strconv.ParseInt(strings.TrimSpace(string(h.Value)), 10, 64); err == nil && ms > 0 {
				j.DelayUntil = time.UnixMilli(ms)
			}
		default:
			if internalHeaders[h.Key] {
				continue
			}
			if j.Headers == nil {
				j.Headers = make(map[string][]string)
			}
			j.Headers[h.Key] = append(j.Headers[h.Key], string(h.Value))
		}
	}
	if j.ID == "" {
		j.ID = newUUID()
	}
	if j.Job == "" {
		j.Job = deducedJob
	}
	if j.Payload == nil {
		j.Payload = []byte{}
	}
	return j
}

// decodePriority reads rr_priority: 8 bytes little-endian (stock), or a decimal string (foreign
// producers). Anything else, and values below 1, mean "the pipeline's priority" (0).
func decodePriority(b []byte) int64 {
	var p int64
	if len(b) == 8 {
		p = int64(binary.LittleEndian.Uint64(b)) //nolint:gosec // round-trips through int64
	} else if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
		p = n
	}
	return max(p, 0)
}

func parseBool(s string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	return err == nil && b
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
