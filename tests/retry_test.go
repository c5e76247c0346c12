package tests

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

const retryConfig = memoryConfig + `
jobs:
  pool:
    num_workers: 2
  consume: ["work"]
  pipelines:
    work:
      driver: memory
      config:
        retry:
          max_attempts: 3
          backoff: exponential
          initial: 1s
          multiplier: 2
          jitter: 0
        dead_letter: failed
    failed:
      driver: memory
    plain:
      driver: memory
      config:
        retry:
          max_attempts: 2
          backoff: fixed
          initial: 1s
          jitter: 0
`

// A poison job that kills its worker runs exactly max_attempts times, with the backoff between
// runs, then lands in the dead-letter pipeline with its history.
func TestPoisonJobEndsInDeadLetterPipeline(t *testing.T) {
	s, c := start(t, retryConfig)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "work", ID: "poison", Name: "app.poison",
		Payload: helpers.Action("crash", "unless_header", "rr-dead-letter-from")}))

	waitStat(t, c, "failed", func(st stat) bool { return st.Active == 1 })
	starts := s.Events(t, "start", "poison")
	require.Len(t, starts, 3, "exactly max_attempts runs")
	for i, e := range starts {
		require.Equal(t, []string{strconv.Itoa(i + 1)}, e.Headers["rr-attempt"], "PHP sees the attempt number")
		require.Equal(t, "work", e.Pipeline)
	}
	// Backoff 1 s then 2 s (whole seconds, no jitter), within tolerance.
	gap1 := starts[1].Time().Sub(starts[0].Time())
	gap2 := starts[2].Time().Sub(starts[1].Time())
	require.InDelta(t, 1.0, gap1.Seconds(), 0.6)
	require.InDelta(t, 2.0, gap2.Seconds(), 0.6)
	waitMetric(t, s, `rr_jobs_retries_total{pipeline="work"}`, 2)
	waitMetric(t, s, `rr_jobs_dead_lettered_total{pipeline="work"}`, 1)
	waitStat(t, c, "work", func(st stat) bool { return st.Active == 0 && st.Delayed == 0 && st.Reserved == 0 })

	// Re-run it by consuming the dead-letter pipeline.
	require.NoError(t, c.Resume("failed"))
	s.WaitEvents(t, 10*time.Second, "done", "poison", 1)
	dl := s.Events(t, "start", "poison")[3]
	require.Equal(t, "failed", dl.Pipeline)
	require.Equal(t, "app.poison", dl.Job)
	require.Equal(t, []string{"work"}, dl.Headers["rr-dead-letter-from"])
	require.Equal(t, []string{"3"}, dl.Headers["rr-dead-letter-attempts"])
	require.NotEmpty(t, dl.Headers["rr-dead-letter-error"])
	require.Equal(t, []string{"1"}, dl.Headers["rr-attempt"])
}

func TestFinalNackIsNotRetried(t *testing.T) {
	s, c := start(t, retryConfig)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "work", ID: "final", Payload: helpers.Action("nack", "requeue", false)}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "work", ID: "again", Payload: helpers.Action("nack", "requeue", true, "unless_header", "rr-dead-letter-from")}))
	waitStat(t, c, "failed", func(st stat) bool { return st.Active == 1 })
	require.Len(t, s.Events(t, "start", "final"), 1, "nack without requeue is final")
	require.Len(t, s.Events(t, "start", "again"), 3, "nack with requeue is retried under the policy")
}

func TestExhaustedWithoutDeadLetterIsDroppedAndCounted(t *testing.T) {
	s, c := start(t, retryConfig)
	require.NoError(t, c.Resume("plain"))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "plain", ID: "ef", Payload: helpers.Action("error_frame")}))
	waitMetric(t, s, `rr_jobs_discarded_total{pipeline="plain"}`, 1)
	require.Len(t, s.Events(t, "start", "ef"), 2)
	waitStat(t, c, "plain", func(st stat) bool { return st.Active == 0 && st.Delayed == 0 && st.Reserved == 0 })
}

func TestExplicitRequeueKeepsWorkerDelayAndCounts(t *testing.T) {
	s, c := start(t, retryConfig)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "work", ID: "rq", Payload: helpers.Action("requeue", "delay", 2, "headers", map[string][]string{"note": {"x"}}, "unless_header", "rr-dead-letter-from")}))
	waitStat(t, c, "failed", func(st stat) bool { return st.Active == 1 })
	starts := s.Events(t, "start", "rq")
	require.Len(t, starts, 3)
	require.GreaterOrEqual(t, starts[1].Time().Sub(starts[0].Time()), 1900*time.Millisecond, "the worker's 2 s delay, not the policy's 1 s")
	require.Equal(t, []string{"x"}, starts[1].Headers["note"], "requeue headers merged")
}

func TestDeclareWithRetryOptions(t *testing.T) {
	s, c := start(t, retryConfig)
	require.NoError(t, c.Declare(map[string]string{"name": "dlq2", "driver": "memory"}))
	require.NoError(t, c.Declare(map[string]string{"name": "dyn", "driver": "memory",
		"retry.max_attempts": "2", "retry.backoff": "fixed", "retry.initial": "1s", "dead_letter": "dlq2"}))
	require.NoError(t, c.Resume("dyn"))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "d1", Payload: helpers.Action("crash")}))
	waitStat(t, c, "dlq2", func(st stat) bool { return st.Active == 1 })
	require.Len(t, s.Events(t, "start", "d1"), 2)

	err := c.Declare(map[string]string{"name": "bad", "driver": "memory", "retry.max_attempts": "-1"})
	require.ErrorContains(t, err, "retry.max_attempts: must be an integer >= 1, got -1")
	err = c.Declare(map[string]string{"name": "bad", "driver": "memory", "retry.max_attempts": "2", "dead_letter": "nowhere"})
	require.ErrorContains(t, err, `dead_letter: no such pipeline "nowhere"`)
}

func TestBadRetryConfigFailsStartup(t *testing.T) {
	_, err := helpers.TryStart(t, memoryConfig+`
jobs:
  pipelines:
    p:
      driver: memory
      config:
        retry:
          max_attempts: 3
          backoff: sideways
`)
	require.ErrorContains(t, err, `jobs.pipelines.p.config.retry.backoff: must be "exponential" or "fixed", got "sideways"`)
}
