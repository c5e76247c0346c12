package drivertest

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
)

// Message is a jobs.Message with exported fields, standing in for what the jobs plugin passes to
// Driver.Push. Use a pointer (*Message) as the jobs.Message.
type Message struct {
	// JobID is returned by ID().
	JobID string
	// Job is the job name, returned by Name().
	Job string
	// Pipeline is the pipeline name, returned by GroupID().
	Pipeline string
	// Prio is returned by Priority(); 0 means "inherit the pipeline priority".
	Prio int64
	// Body is returned by Payload().
	Body []byte
	// DelaySeconds is returned by Delay().
	DelaySeconds int64
	// AutoAckFlag is returned by AutoAck().
	AutoAckFlag bool
	// Hdrs is returned by Headers().
	Hdrs map[string][]string

	// Kafka-only options.
	KafkaTopic     string
	KafkaPartition int32
	KafkaOffset    int64
	KafkaMetadata  string
}

var _ jobs.Message = (*Message)(nil)

// NewMessage returns a Message with the given id, job name, pipeline and payload.
func NewMessage(id, job, pipeline string, payload []byte) *Message {
	return &Message{JobID: id, Job: job, Pipeline: pipeline, Body: payload}
}

// ID returns JobID.
func (m *Message) ID() string { return m.JobID }

// GroupID returns Pipeline.
func (m *Message) GroupID() string { return m.Pipeline }

// Priority returns Prio.
func (m *Message) Priority() int64 { return m.Prio }

// Name returns Job.
func (m *Message) Name() string { return m.Job }

// Payload returns Body.
func (m *Message) Payload() []byte { return m.Body }

// Delay returns DelaySeconds.
func (m *Message) Delay() int64 { return m.DelaySeconds }

// AutoAck returns AutoAckFlag.
func (m *Message) AutoAck() bool { return m.AutoAckFlag }

// UpdatePriority sets Prio.
func (m *Message) UpdatePriority(p int64) { m.Prio = p }

// Headers returns Hdrs.
func (m *Message) Headers() map[string][]string { return m.Hdrs }

// Offset returns KafkaOffset.
func (m *Message) Offset() int64 { return m.KafkaOffset }

// Partition returns KafkaPartition.
func (m *Message) Partition() int32 { return m.KafkaPartition }

// Topic returns KafkaTopic.
func (m *Message) Topic() string { return m.KafkaTopic }

// Metadata returns KafkaMetadata.
func (m *Message) Metadata() string { return m.KafkaMetadata }
