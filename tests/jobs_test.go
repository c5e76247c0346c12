package tests

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

const twoPipelines = memoryConfig + `
jobs:
  num_pollers: 4
  pool:
    num_workers: 2
    allocate_timeout: 10s
  consume: ["p1", "p2"]
  pipelines:
    p1:
      driver: memory
      config:
        priority: 10
    p2:
      driver: memory
      config:
        priority: 1
`

func start(t *testing.T, cfg string) (*helpers.Server, *helpers.Client) {
	t.Helper()
	helpers.RequirePHP(t)
	s := helpers.Start(t, cfg)
	c, err := helpers.Dial(s.RPC)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return s, c
}

func TestPushAndAck(t *testing.T) {
	s, c := start(t, twoPipelines)
	got := pushAndAck(t, s, c, "memory", "p1", "p1")
	require.Len(t, got.Headers["Traceparent"], 1, "a trace context is injected for PHP")
}

func TestRequeueUntilCarriesHeaders(t *testing.T) {
	s, c := start(t, twoPipelines)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p2", ID: "h1", Payload: helpers.Action("requeue_until", "times", 3), Headers: map[string][]string{"keep": {"me"}}}))
	s.WaitEvents(t, 10*time.Second, "done", "h1", 4)
	starts := s.Events(t, "start", "h1")
	require.Len(t, starts, 4)
	for i, e := range starts {
		if i > 0 {
			require.Equal(t, []string{strconv.Itoa(i)}, e.Headers["attempts"])
		}
		require.Equal(t, []string{"me"}, e.Headers["keep"], "original headers survive requeues")
	}
	require.Equal(t, float64(2), s.Events(t, "done", "h1")[3].ReplyType)
}

func TestLegacyFailWithRequeue(t *testing.T) {
	s, c := start(t, twoPipelines)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "f1", Payload: helpers.Action("fail", "requeue", true, "delay", 1, "headers", map[string][]string{"attempts": {"9"}})}))
	starts := s.WaitEvents(t, 10*time.Second, "start", "f1", 2)
	require.Equal(t, []string{"9"}, starts[1].Headers["attempts"])
}

func TestDelayHonoured(t *testing.T) {
	s, c := start(t, twoPipelines)
	pushed := time.Now()
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "d1", Payload: helpers.Action("ack"), Delay: 2}))
	waitStat(t, c, "p1", func(st stat) bool { return st.Delayed == 1 })
	got := s.WaitEvents(t, 10*time.Second, "start", "d1", 1)
	require.GreaterOrEqual(t, got[0].Time().Sub(pushed), 1900*time.Millisecond)
}

func TestPriorityOrder(t *testing.T) {
	s, c := start(t, memoryConfig+`
jobs:
  num_pollers: 1
  pool:
    num_workers: 1
  consume: ["low", "high", "gate"]
  pipelines:
    low:
      driver: memory
      config:
        priority: 20
    high:
      driver: memory
      config:
        priority: 2
    gate:
      driver: memory
`)
	require.NoError(t, c.Pause("low", "high"))
	// Same-priority jobs keep their push order; a lower number runs first; 0 inherits the pipeline's.
	jobs := []helpers.Job{
		{Pipeline: "low", ID: "low-a", Payload: helpers.Action("ack")},
		{Pipeline: "low", ID: "low-b", Payload: helpers.Action("ack")},
		{Pipeline: "high", ID: "high-a", Payload: helpers.Action("ack")},
		{Pipeline: "low", ID: "urgent", Payload: helpers.Action("ack"), Priority: 1},
		{Pipeline: "high", ID: "high-b", Payload: helpers.Action("ack")},
		{Pipeline: "low", ID: "low-c", Payload: helpers.Action("ack")},
	}
	for _, j := range jobs {
		require.NoError(t, c.Push(j))
	}
	waitStat(t, c, "low", func(st stat) bool { return st.Active == 4 })
	// The only worker and poller are busy with a gate job while both pipelines hand their jobs to
	// the queue, so the order below is the queue's alone.
	require.NoError(t, c.Push(helpers.Job{Pipeline: "gate", ID: "gate", Payload: helpers.Action("sleep", "ms", 1000)}))
	s.WaitEvents(t, 10*time.Second, "start", "gate", 1)
	require.NoError(t, c.Resume("high", "low"))
	s.WaitEvents(t, 10*time.Second, "done", "", len(jobs)+1)
	var order []string
	for _, e := range s.Events(t, "start", "") {
		if e.ID != "gate" {
			order = append(order, e.ID)
		}
	}
	require.Equal(t, []string{"urgent", "high-a", "high-b", "low-a", "low-b", "low-c"}, order)
}

func TestPauseUnknownPipeline(t *testing.T) {
	_, c := start(t, twoPipelines)
	require.ErrorContains(t, c.Pause("nope"), "no such pipeline, requested: nope")
	require.ErrorContains(t, c.Resume("nope"), "no such pipeline, requested: nope")
}

func TestDeclareListAndDestroy(t *testing.T) {
	s, c := start(t, twoPipelines)
	require.NoError(t, c.Declare(map[string]string{"name": "dyn", "driver": "memory", "priority": "3", "prefetch": "10"}))
	names, err := c.List()
	require.NoError(t, err)
	require.Equal(t, []string{"dyn", "p1", "p2"}, names)

	st := waitStat(t, c, "dyn", func(st stat) bool { return !st.Ready })
	require.Equal(t, uint64(3), st.Priority)
	require.Equal(t, "memory", st.Driver)

	require.NoError(t, c.Resume("dyn"))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "dj", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "dj", 1)

	err = c.Declare(map[string]string{"name": "dyn", "driver": "memory"})
	require.ErrorContains(t, err, "pipeline already exists, name: dyn, driver: memory")
	require.ErrorContains(t, c.Declare(map[string]string{"name": "x", "driver": "nosuch"}), `no driver named "nosuch"`)
	require.ErrorContains(t, c.Declare(map[string]string{"name": "x"}), "driver")
	require.NoError(t, c.Declare(map[string]string{"name": "badprio", "driver": "memory", "priority": "high"}))
	st = waitStat(t, c, "badprio", func(stat) bool { return true })
	require.Equal(t, uint64(10), st.Priority, "a bad priority falls back to 10")

	destroyed, err := c.Destroy("dyn", "badprio")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"dyn", "badprio"}, destroyed)
	names, err = c.List()
	require.NoError(t, err)
	require.Equal(t, []string{"p1", "p2"}, names)
	require.ErrorContains(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "late", Payload: "x"}), "no such pipeline, requested: dyn")
	_, err = c.Destroy("dyn")
	require.ErrorContains(t, err, "no such pipeline")
}

func TestPushBatch(t *testing.T) {
	s, c := start(t, twoPipelines)
	var batch []helpers.Job
	for i := range 200 {
		batch = append(batch, helpers.Job{Pipeline: []string{"p1", "p2"}[i%2], ID: "b-" + strconv.Itoa(i), Payload: helpers.Action("ack")})
	}
	require.NoError(t, c.PushBatch(batch...))
	s.WaitEvents(t, 20*time.Second, "done", "", 200)

	// One bad job refuses the whole batch before anything is pushed.
	err := c.PushBatch(helpers.Job{Pipeline: "p1", ID: "ok-1", Payload: "x"}, helpers.Job{Pipeline: "p1", ID: "", Payload: "x"})
	require.ErrorContains(t, err, "empty ID field not allowed")
	err = c.PushBatch(helpers.Job{Pipeline: "p1", ID: "ok-2", Payload: "x"}, helpers.Job{Pipeline: "nope", ID: "y", Payload: "x"})
	require.ErrorContains(t, err, "no such pipeline, requested: nope")
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "after", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "after", 1)
	require.Empty(t, s.Events(t, "start", "ok-1"))
	require.Empty(t, s.Events(t, "start", "ok-2"))
}
