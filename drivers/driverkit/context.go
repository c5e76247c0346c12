package driverkit

import (
	"encoding/json"
	"fmt"
)

// JobContext is the JSON a PHP worker receives with each job (spiral/roadrunner-jobs reads id, job,
// driver, headers, queue and pipeline; kafka adds partition and offset). Keys are written in this
// order.
type JobContext struct {
	ID       string              `json:"id"`
	Job      string              `json:"job"`
	Driver   string              `json:"driver"`
	Headers  map[string][]string `json:"headers"`
	Queue    string              `json:"queue"`
	Pipeline string              `json:"pipeline"`
	// Kafka only.
	Topic     string `json:"topic,omitempty"`
	Partition *int32 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
}

// emptyHeaders is marshalled instead of a nil map so the context has "headers":{} (PHP casts null
// too, but other clients may not). Read-only.
var emptyHeaders = map[string][]string{}

// Marshal encodes the context. Errors name the pipeline and job.
func (c *JobContext) Marshal() ([]byte, error) {
	if c.Headers == nil {
		c.Headers = emptyHeaders
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("%s pipeline %q: job %q: marshal context: %w", c.Driver, c.Pipeline, c.ID, err)
	}
	return b, nil
}
