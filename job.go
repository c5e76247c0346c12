package jobs

import (
	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
)

var _ jobs.Message = (*Message)(nil)

// Message is a job as pushed over RPC, handed to Driver.Push. It carries everything a driver needs to
// store the job and to rebuild it for a worker.
type Message struct {
	// Job is the job name (the PHP task name).
	Job string
	// Ident is the job id; the PHP client generates a UUIDv4.
	Ident string
	// Pipeline names the target pipeline.
	Pipeline string
	// Body is the payload, passed to the worker untouched.
	Body []byte
	// Hdr holds the user's headers plus injected tracing headers.
	Hdr map[string][]string
	// sharedHdr marks a Hdr map shared by several jobs of one PushBatch (their common trace
	// headers); push copies it before anything may write to it.
	sharedHdr bool
	// Prio is the job priority; lower runs first. 0 on the wire means "inherit the pipeline's".
	Prio int64
	// DelaySec delays the first run, in seconds.
	DelaySec int64
	// AutoAckOn asks the driver to acknowledge the job as soon as a worker receives it.
	AutoAckOn bool

	// Kafka-only options.
	KafkaTopic     string
	KafkaMetadata  string
	KafkaOffset    int64
	KafkaPartition int32
}

// messageFromProto converts a jobs.v1 Job. It keeps the payload slice as decoded (no copy).
func messageFromProto(j *jobsProto.Job) *Message {
	m := &Message{}
	m.fromProto(j)
	return m
}

// fromProto fills m from a jobs.v1 Job (PushBatch converts into one slice of Messages).
func (m *Message) fromProto(j *jobsProto.Job) {
	m.Job = j.GetJob()
	m.Ident = j.GetId()
	m.Body = j.GetPayload()
	m.Hdr = headersFromProto(j.GetHeaders())
	if o := j.GetOptions(); o != nil {
		m.Pipeline = o.GetPipeline()
		m.Prio = o.GetPriority()
		m.DelaySec = o.GetDelay()
		m.AutoAckOn = o.GetAutoAck()
		m.KafkaTopic = o.GetTopic()
		m.KafkaMetadata = o.GetMetadata()
		m.KafkaOffset = o.GetOffset()
		m.KafkaPartition = o.GetPartition()
	}
}

// headersFromProto flattens the wire headers; headers without values are dropped, as the PHP client
// does. It returns nil when no header is left (the RPC handlers add the trace headers).
func headersFromProto(in map[string]*jobsProto.HeaderValue) map[string][]string {
	var out map[string][]string
	for k, v := range in {
		if v == nil || len(v.GetValue()) == 0 {
			continue
		}
		if out == nil {
			out = make(map[string][]string, len(in)+2)
		}
		out[k] = v.GetValue()
	}
	return out
}

func (m *Message) ID() string                   { return m.Ident }
func (m *Message) GroupID() string              { return m.Pipeline }
func (m *Message) Priority() int64              { return m.Prio }
func (m *Message) Name() string                 { return m.Job }
func (m *Message) Payload() []byte              { return m.Body }
func (m *Message) Delay() int64                 { return m.DelaySec }
func (m *Message) AutoAck() bool                { return m.AutoAckOn }
func (m *Message) UpdatePriority(p int64)       { m.Prio = p }
func (m *Message) Headers() map[string][]string { return m.Hdr }
func (m *Message) Topic() string                { return m.KafkaTopic }
func (m *Message) Metadata() string             { return m.KafkaMetadata }
func (m *Message) Offset() int64                { return m.KafkaOffset }
func (m *Message) Partition() int32             { return m.KafkaPartition }
