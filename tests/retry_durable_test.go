package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// boltRetryConfig is retryConfig on the durable boltdb driver; DATA is the directory of its files,
// so a second server can open the same files.
const boltRetryConfig = memoryConfig + `
jobs:
  pool:
    num_workers: 2
  consume: ["work"]
  pipelines:
    work:
      driver: boltdb
      config:
        file: "DATA/work.db"
        retry:
          max_attempts: 3
          backoff: fixed
          initial: 1s
          jitter: 0
        dead_letter: failed
    failed:
      driver: boltdb
      config:
        file: "DATA/failed.db"
`

// The retry policy works the same on a durable driver: a poison job runs max_attempts times and is
// dead-lettered, and its attempt number survives a restart of the server.
func TestRetryPolicyOnBoltDB(t *testing.T) {
	data := t.TempDir()
	cfg := strings.ReplaceAll(boltRetryConfig, "DATA", data)

	s, c := start(t, cfg)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "work", ID: "poison", Payload: helpers.Action("crash")}))
	waitStat(t, c, "failed", func(st stat) bool { return st.Active == 1 })
	starts := s.Events(t, "start", "poison")
	require.Len(t, starts, 3, "exactly max_attempts runs")
	for i, e := range starts {
		require.Equal(t, []string{string(rune('1' + i))}, e.Headers["rr-attempt"])
	}

	// A job that failed once waits in its delay with attempt 2 recorded on disk; after a restart
	// it runs as attempt 2.
	require.NoError(t, c.Push(helpers.Job{Pipeline: "work", ID: "once", Payload: helpers.Action("crash", "unless_header", "rr-attempt=2")}))
	s.WaitEvents(t, 10*time.Second, "start", "once", 1)
	waitStat(t, c, "work", func(st stat) bool { return st.Delayed == 1 })
	require.NoError(t, s.Stop())

	s2, c2 := start(t, cfg)
	got := s2.WaitEvents(t, 15*time.Second, "done", "once", 1)
	require.Len(t, got, 1)
	require.Equal(t, []string{"2"}, s2.Events(t, "start", "once")[0].Headers["rr-attempt"], "the attempt number survived the restart")
	waitStat(t, c2, "failed", func(st stat) bool { return st.Active == 1 })
}
