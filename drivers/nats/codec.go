package nats

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"
)

const (
	// subjectHeader is added to the headers a worker sees: the subject the message came from (as
	// the stock driver does). It is never stored.
	subjectHeader = "x-nats-subject"
	// foreignJobName is the job name of a message that was not published by a RoadRunner driver.
	foreignJobName = "deduced_by_rr"
	// natsHeaderPrefix starts the headers JetStream reads (Nats-Msg-Id, Nats-Expected-Stream...):
	// a job header must never be sent as one of those.
	natsHeaderPrefix = "nats-"
)

// wireJob is a message body: the stock driver's JSON item ({"job","id","payload" base64,
// "options":{...}}), so stock RoadRunner and this driver can share a stream, plus the exact job
// headers (NATS headers cannot carry every key and trim values).
type wireJob struct {
	Job     string              `json:"job"`
	ID      string              `json:"id"`
	Payload json.RawMessage     `json:"payload,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	Options *wireOptions        `json:"options,omitempty"`
}

type wireOptions struct {
	Priority int64  `json:"priority"`
	Pipeline string `json:"pipeline,omitempty"`
	Delay    int64  `json:"delay,omitempty"`
	AutoAck  bool   `json:"auto_ack"`
	// NotBefore is when a delayed job is due (Unix milliseconds, publisher's clock).
	NotBefore int64 `json:"rr_not_before,omitempty"`
}

// job is a decoded message body.
type job struct {
	id        string
	name      string
	payload   []byte
	headers   map[string][]string
	priority  int64
	autoAck   bool
	delay     int64
	notBefore int64
	// foreign is set for a message that is not a RoadRunner job: its whole body is the payload.
	foreign bool
}

// encode renders the body and the NATS headers of j (headers that NATS cannot carry, and the
// reserved Nats-* ones, are only in the body).
func (j *job) encode(pipeline string) ([]byte, nats.Header, error) {
	payload, err := json.Marshal(j.payload) // []byte → base64 string, as the stock driver writes it
	if err != nil {
		return nil, nil, err
	}
	w := wireJob{
		Job:     j.name,
		ID:      j.id,
		Payload: payload,
		Headers: storableHeaders(j.headers),
		Options: &wireOptions{
			Priority:  j.priority,
			Pipeline:  pipeline,
			Delay:     j.delay,
			AutoAck:   j.autoAck,
			NotBefore: j.notBefore,
		},
	}
	body, err := json.Marshal(&w)
	if err != nil {
		return nil, nil, err
	}
	return body, natsHeaders(w.Headers), nil
}

// decodeJob reads a message. It never fails: a body that is not a RoadRunner job (no JSON object
// with an id or a job name) is a foreign message whose body is the payload, named deduced_by_rr,
// with the Nats-Msg-Id header (or a new UUID) as its id and the NATS headers as its headers.
func decodeJob(data []byte, hdr nats.Header) job {
	var w wireJob
	if err := json.Unmarshal(data, &w); err == nil && (w.ID != "" || w.Job != "") {
		j := job{id: w.ID, name: w.Job, payload: decodePayload(w.Payload), headers: w.Headers}
		if j.headers == nil {
			// Published by the stock driver: its job headers are the NATS headers.
			j.headers = jobHeaders(hdr)
		}
		delete(j.headers, subjectHeader)
		if len(j.headers) == 0 {
			j.headers = nil
		}
		if w.Options != nil {
			j.priority = w.Options.Priority
			j.autoAck = w.Options.AutoAck
			j.delay = w.Options.Delay
			j.notBefore = w.Options.NotBefore
		}
		if j.id == "" {
			j.id = foreignID(hdr)
		}
		return j
	}
	return job{
		id:      foreignID(hdr),
		name:    foreignJobName,
		payload: data,
		headers: jobHeaders(hdr),
		foreign: true,
	}
}

// decodePayload reads the payload field: a base64 string (stock and this driver), a plain string
// (older producers), null, or any other JSON value (kept as its JSON text).
func decodePayload(raw json.RawMessage) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return []byte{}
	}
	if raw[0] != '"' {
		return append([]byte(nil), raw...)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return append([]byte(nil), raw...)
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b
	}
	return []byte(s)
}

// jobHeaders copies the NATS headers of a message, without JetStream's own (Nats-*) and the
// subject header.
func jobHeaders(hdr nats.Header) map[string][]string {
	if len(hdr) == 0 {
		return nil
	}
	out := make(map[string][]string, len(hdr))
	for k, v := range hdr {
		if isReservedHeader(k) {
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// storableHeaders are the job headers kept in the body: all but the subject header.
func storableHeaders(h map[string][]string) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	if _, ok := h[subjectHeader]; !ok {
		return h
	}
	out := make(map[string][]string, len(h))
	for k, v := range h {
		if k != subjectHeader {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// natsHeaders are the job headers NATS can carry as message headers (for tracing and other
// tools): keys of printable ASCII without separators, and never a reserved Nats-* key.
func natsHeaders(h map[string][]string) nats.Header {
	if len(h) == 0 {
		return nil
	}
	out := make(nats.Header, len(h))
	for k, v := range h {
		if isReservedHeader(k) || !validHeaderKey(k) || len(v) == 0 {
			continue
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func isReservedHeader(k string) bool {
	return strings.EqualFold(k, subjectHeader) ||
		(len(k) >= len(natsHeaderPrefix) && strings.EqualFold(k[:len(natsHeaderPrefix)], natsHeaderPrefix))
}

// validHeaderKey mirrors nats.go's rule: printable ASCII without separators.
func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c < 33 || c > 126 || strings.IndexByte("\"()/,:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// foreignID is the id of a message without one: its Nats-Msg-Id (as valid UTF-8, so it survives
// JSON), or a new UUID.
func foreignID(hdr nats.Header) string {
	if hdr != nil {
		if id := hdr.Get(nats.MsgIdHdr); id != "" {
			return strings.ToValidUTF8(id, "\uFFFD")
		}
	}
	return newUUID()
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
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
