package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// A job never gets lost because its worker failed: it comes back and runs to an ack.

func TestWorkerKilledMidJobIsRedelivered(t *testing.T) {
	s, c := start(t, twoPipelines)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "crashy", Payload: helpers.Action("crash_once")}))
	starts := s.WaitEvents(t, 15*time.Second, "start", "crashy", 2)
	require.NotEqual(t, starts[0].PID, starts[1].PID, "the crashed worker was replaced")
	s.WaitEvents(t, 15*time.Second, "done", "crashy", 1)
	waitMetric(t, s, "rr_jobs_jobs_err", 1)
}

func TestExecTTLKillIsRedelivered(t *testing.T) {
	s, c := start(t, memoryConfig+`
jobs:
  pool:
    num_workers: 1
    supervisor:
      exec_ttl: 1s
  consume: ["p1"]
  pipelines:
    p1:
      driver: memory
`)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "slow", Payload: helpers.Action("sleep_once", "ms", 5000)}))
	s.WaitEvents(t, 20*time.Second, "done", "slow", 1)
	require.Len(t, s.Events(t, "start", "slow"), 2, "killed by exec_ttl once, then run again")
}

func TestAllocateTimeoutLosesNothing(t *testing.T) {
	// One worker, jobs longer than allocate_timeout: stock dropped every job that waited too long.
	s, c := start(t, memoryConfig+`
jobs:
  num_pollers: 3
  pool:
    num_workers: 1
    allocate_timeout: 300ms
  consume: ["p1"]
  pipelines:
    p1:
      driver: memory
`)
	const n = 5
	for i := range n {
		require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "slow-" + string(rune('a'+i)), Payload: helpers.Action("sleep", "ms", 500)}))
	}
	done := s.WaitEvents(t, 60*time.Second, "done", "", n)
	ids := map[string]bool{}
	for _, e := range done {
		ids[e.ID] = true
	}
	require.Len(t, ids, n, "every job ran to the end")
	waitMetric(t, s, "rr_jobs_jobs_err", 1)
}

func TestErrorFrameIsRetried(t *testing.T) {
	s, c := start(t, twoPipelines)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "ef", Payload: helpers.Action("error_frame")}))
	starts := s.WaitEvents(t, 15*time.Second, "start", "ef", 2)
	require.GreaterOrEqual(t, starts[1].Time().Sub(starts[0].Time()), 900*time.Millisecond, "retried after a short delay, not in a tight loop")
	waitMetric(t, s, "rr_jobs_jobs_err", 2)
}

func TestGarbageReplyIsCountedAndServerKeepsServing(t *testing.T) {
	s, c := start(t, twoPipelines)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "g", Payload: helpers.Action("garbage")}))
	s.WaitEvents(t, 10*time.Second, "done", "g", 1)
	waitMetric(t, s, "rr_jobs_jobs_err", 1)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "next", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "next", 1)
	require.Len(t, s.Events(t, "start", "g"), 1, "an unreadable reply is acknowledged, not looped")
}

func TestWorkerExitBetweenJobs(t *testing.T) {
	s, c := start(t, twoPipelines)
	for i := range 6 {
		require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "e" + string(rune('a'+i)), Payload: helpers.Action("exit_after")}))
	}
	s.WaitEvents(t, 20*time.Second, "done", "", 6)
}
