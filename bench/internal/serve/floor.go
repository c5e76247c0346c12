package serve

import (
	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
)

// floorPlugin registers the RPC method `bench.Noop`, which takes the same request as `jobs.Push`
// and does nothing with it. Both servers have it, so scenario 2 can measure the floor of a single
// push: what the stock rpc plugin (net/rpc with the goridge codec, decoding the PushRequest) costs
// before any jobs plugin runs.
type floorPlugin struct{}

func (*floorPlugin) Init() error  { return nil }
func (*floorPlugin) Name() string { return "bench" }

// RPC is found by the rpc plugin (it collects every plugin with Name and RPC).
func (*floorPlugin) RPC() any { return &floorRPC{} }

type floorRPC struct{}

// Noop decodes a PushRequest (the rpc codec does, before the call) and answers with an Empty.
func (*floorRPC) Noop(_ *jobsProto.PushRequest, _ *jobsProto.Empty) error { return nil }
