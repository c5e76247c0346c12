package tests

import (
	"net/rpc"
	"testing"
	"time"

	"github.com/roadrunner-server/informer/v5"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

func TestNamedPoolsIsolateSlowPipelines(t *testing.T) {
	s, c := start(t, memoryConfig+`
jobs:
  pools:
    fast:
      num_workers: 1
    slow:
      num_workers: 1
  consume: ["quick", "batch"]
  pipelines:
    quick:
      driver: memory
      pool: fast
    batch:
      driver: memory
      pool: slow
`)
	for _, id := range []string{"s1", "s2", "s3"} {
		require.NoError(t, c.Push(helpers.Job{Pipeline: "batch", ID: id, Payload: helpers.Action("sleep", "ms", 1500)}))
	}
	s.WaitEvents(t, 10*time.Second, "start", "s1", 1)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "quick", ID: "q", Payload: helpers.Action("ack")}))
	q := s.WaitEvents(t, 10*time.Second, "done", "q", 1)[0]
	s.WaitEvents(t, 20*time.Second, "done", "s3", 1)
	s3 := s.Events(t, "done", "s3")[0]
	require.True(t, q.Time().Before(s3.Time()), "the fast pool did not wait for the slow pool's backlog")

	workers := informerWorkers(t, s.RPC)
	require.Len(t, workers.Workers, 2, "one worker per named pool")
}

func TestInformerAndResetter(t *testing.T) {
	s, c := start(t, twoPipelines)
	before := informerWorkers(t, s.RPC)
	require.Len(t, before.Workers, 2)

	cl := dialRaw(t, s.RPC)
	var ok bool
	require.NoError(t, cl.Call("informer.AddWorker", "jobs", &ok))
	require.Len(t, informerWorkers(t, s.RPC).Workers, 3)
	require.NoError(t, cl.Call("informer.RemoveWorker", "jobs", &ok))
	require.Len(t, informerWorkers(t, s.RPC).Workers, 2)

	require.NoError(t, cl.Call("resetter.Reset", "jobs", &ok))
	after := informerWorkers(t, s.RPC)
	for _, a := range after.Workers {
		for _, b := range before.Workers {
			require.NotEqual(t, a.Pid, b.Pid, "every worker was replaced")
		}
	}
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "after-reset", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "after-reset", 1)
}

func dialRaw(t *testing.T, addr string) *rpc.Client {
	t.Helper()
	c, err := helpers.Dial(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c.Raw()
}

func informerWorkers(t *testing.T, addr string) *informer.WorkerList {
	t.Helper()
	list := &informer.WorkerList{}
	require.NoError(t, dialRaw(t, addr).Call("informer.Workers", "jobs", list))
	return list
}
