package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// pushAndAck pushes one job with a header to pipeline and checks what every driver must deliver:
// the PHP worker acked it once and saw the job name, driver, pipeline, queue, header and payload
// byte for byte. It returns the worker's start event for driver-specific checks.
func pushAndAck(t *testing.T, s *helpers.Server, c *helpers.Client, driver, pipeline, queue string) helpers.WorkerEvent {
	t.Helper()
	require.NoError(t, c.Push(helpers.Job{Pipeline: pipeline, ID: "job-1", Name: "app.email", Payload: helpers.Action("ack"),
		Headers: map[string][]string{"tenant": {"acme"}}}))

	done := s.WaitEvents(t, 10*time.Second, "done", "job-1", 1)
	require.Equal(t, float64(2), done[0].ReplyType)
	starts := s.Events(t, "start", "job-1")
	require.Len(t, starts, 1)
	got := starts[0]
	require.Equal(t, "app.email", got.Job)
	require.Equal(t, driver, got.Driver)
	require.Equal(t, pipeline, got.Pipeline)
	require.NotNil(t, got.Queue, "the context carries queue (stock memory left it out)")
	require.Equal(t, queue, *got.Queue)
	require.Equal(t, []string{"acme"}, got.Headers["tenant"])
	require.Equal(t, helpers.Action("ack"), got.Payload, "body reaches the worker byte for byte")
	waitStat(t, c, pipeline, func(st stat) bool { return st.Active == 0 && st.Reserved == 0 && st.Ready })
	return got
}
