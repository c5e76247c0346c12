package helpers

import (
	"net"
	"net/rpc"

	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
	goridgeRPC "github.com/roadrunner-server/goridge/v3/pkg/rpc"
)

// Client is a producer speaking goridge RPC with protobuf bodies, as the PHP client does.
type Client struct {
	rpc *rpc.Client
}

// Dial connects to a jobs RPC address.
func Dial(addr string) (*Client, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Client{rpc: rpc.NewClientWithCodec(goridgeRPC.NewClientCodec(conn))}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.rpc.Close() }

// Job describes a job to push. Zero values mean the PHP client's defaults.
type Job struct {
	Pipeline string
	ID       string
	Name     string
	Payload  string
	Headers  map[string][]string
	Priority int64
	Delay    int64
	AutoAck  bool
}

// Proto converts j to the wire message.
func (j Job) Proto() *jobsProto.Job {
	name := j.Name
	if name == "" {
		name = "test.job"
	}
	h := make(map[string]*jobsProto.HeaderValue, len(j.Headers))
	for k, v := range j.Headers {
		h[k] = &jobsProto.HeaderValue{Value: v}
	}
	return &jobsProto.Job{
		Job: name, Id: j.ID, Payload: []byte(j.Payload), Headers: h,
		Options: &jobsProto.Options{Priority: j.Priority, Pipeline: j.Pipeline, Delay: j.Delay, AutoAck: j.AutoAck},
	}
}

// Push calls jobs.Push.
func (c *Client) Push(j Job) error {
	return c.rpc.Call("jobs.Push", &jobsProto.PushRequest{Job: j.Proto()}, &jobsProto.Empty{})
}

// PushBatch calls jobs.PushBatch.
func (c *Client) PushBatch(jobs ...Job) error {
	req := &jobsProto.PushBatchRequest{Jobs: make([]*jobsProto.Job, 0, len(jobs))}
	for _, j := range jobs {
		req.Jobs = append(req.Jobs, j.Proto())
	}
	return c.rpc.Call("jobs.PushBatch", req, &jobsProto.Empty{})
}

// Pause calls jobs.Pause.
func (c *Client) Pause(pipelines ...string) error {
	return c.rpc.Call("jobs.Pause", &jobsProto.Pipelines{Pipelines: pipelines}, &jobsProto.Empty{})
}

// Resume calls jobs.Resume.
func (c *Client) Resume(pipelines ...string) error {
	return c.rpc.Call("jobs.Resume", &jobsProto.Pipelines{Pipelines: pipelines}, &jobsProto.Empty{})
}

// List calls jobs.List.
func (c *Client) List() ([]string, error) {
	out := &jobsProto.Pipelines{}
	err := c.rpc.Call("jobs.List", &jobsProto.Empty{}, out)
	return out.GetPipelines(), err
}

// Declare calls jobs.Declare.
func (c *Client) Declare(pipeline map[string]string) error {
	return c.rpc.Call("jobs.Declare", &jobsProto.DeclareRequest{Pipeline: pipeline}, &jobsProto.Empty{})
}

// Destroy calls jobs.Destroy and returns the destroyed names.
func (c *Client) Destroy(pipelines ...string) ([]string, error) {
	out := &jobsProto.Pipelines{}
	err := c.rpc.Call("jobs.Destroy", &jobsProto.Pipelines{Pipelines: pipelines}, out)
	return out.GetPipelines(), err
}

// Stat calls jobs.Stat and indexes the result by pipeline.
func (c *Client) Stat() (map[string]*jobsProto.Stat, error) {
	out := &jobsProto.Stats{}
	if err := c.rpc.Call("jobs.Stat", &jobsProto.Empty{}, out); err != nil {
		return nil, err
	}
	m := make(map[string]*jobsProto.Stat, len(out.GetStats()))
	for _, s := range out.GetStats() {
		m[s.GetPipeline()] = s
	}
	return m, nil
}

// Raw is the underlying net/rpc client, for the informer and resetter services.
func (c *Client) Raw() *rpc.Client { return c.rpc }
