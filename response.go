package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// responseType is the `type` of a worker's reply (PHP Spiral\RoadRunner\Jobs\Task\Type).
type responseType int

const (
	// respComplete is the deprecated NO_ERROR (PHP complete()): acknowledge.
	respComplete responseType = 0
	// respError is the deprecated ERROR (PHP fail($e, $requeue)): requeue if asked, else acknowledge.
	respError responseType = 1
	// respAck is ACK (PHP ack()).
	respAck responseType = 2
	// respNack is NACK (PHP nack($msg, $requeue)).
	respNack responseType = 3
	// respRequeue is REQUEUE (PHP requeue($msg)).
	respRequeue responseType = 4
)

func (t responseType) String() string {
	switch t {
	case respComplete:
		return "complete"
	case respError:
		return "error"
	case respAck:
		return "ack"
	case respNack:
		return "nack"
	case respRequeue:
		return "requeue"
	}
	return fmt.Sprintf("unknown(%d)", int(t))
}

// response is a decoded worker reply.
type response struct {
	Type responseType
	// Message is the worker's reason for a failure, nack or requeue.
	Message string
	// Requeue asks for redelivery (types 1 and 3).
	Requeue bool
	// DelaySeconds delays the redelivery.
	DelaySeconds int
	// Headers are merged into the job on requeue.
	Headers map[string][]string
}

// wireResponse is the JSON shape `{"type":N,"data":{...}}`.
type wireResponse struct {
	Type *int            `json:"type"`
	Data json.RawMessage `json:"data"`
}

// wireData is `data` for types 1, 3 and 4. `redelivery` is what spiral/roadrunner-jobs 4.5.x sent for
// nack before it was renamed to `requeue` in 4.6; both are honoured.
type wireData struct {
	Message      string              `json:"message"`
	Requeue      *bool               `json:"requeue"`
	Redelivery   *bool               `json:"redelivery"`
	DelaySeconds int                 `json:"delay_seconds"`
	Headers      map[string][]string `json:"headers"`
}

// ackBody is what the official PHP client sends for ack(): the hot path skips JSON decoding for it.
var ackBody = []byte(`{"type":2,"data":[]}`)

// parseResponse decodes a worker reply body. An empty body means "acknowledge" (stock behaviour).
// Errors say what was wrong with the body so the operator can fix the worker.
func parseResponse(body []byte) (response, error) {
	if len(body) == 0 || bytes.Equal(body, ackBody) {
		return response{Type: respAck}, nil
	}
	var w wireResponse
	if err := json.Unmarshal(body, &w); err != nil {
		return response{}, fmt.Errorf("worker reply is not a JSON object {\"type\":N,\"data\":...}: %w (body: %.100q)", err, body)
	}
	if w.Type == nil {
		return response{}, fmt.Errorf("worker reply has no \"type\" field (body: %.100q)", body)
	}
	r := response{Type: responseType(*w.Type)}
	switch r.Type {
	case respError, respNack, respRequeue:
		if err := r.decodeData(w.Data); err != nil {
			return response{}, fmt.Errorf("worker reply of type %s has a bad \"data\" field: %w", r.Type, err)
		}
	}
	return r, nil
}

// decodeData fills the failure fields. PHP encodes an empty array as `[]`, so that and null are empty.
func (r *response) decodeData(data json.RawMessage) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) || bytes.Equal(trimmed, []byte("[]")) {
		return nil
	}
	var d wireData
	if err := json.Unmarshal(trimmed, &d); err != nil {
		return err
	}
	if d.DelaySeconds < 0 {
		return fmt.Errorf("delay_seconds must be >= 0, got %d", d.DelaySeconds)
	}
	r.Message = d.Message
	r.DelaySeconds = d.DelaySeconds
	r.Headers = d.Headers
	switch {
	case d.Requeue != nil:
		r.Requeue = *d.Requeue
	case d.Redelivery != nil:
		r.Requeue = *d.Redelivery
	}
	return nil
}
