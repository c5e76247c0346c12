package tests

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

func TestIdleShutdownIsFast(t *testing.T) {
	s, c := start(t, twoPipelines)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "one", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "one", 1)

	began := time.Now()
	require.NoError(t, s.Stop())
	require.Less(t, time.Since(began), 2*time.Second, "idle pollers stop at once (stock waited the whole grace period)")
}

func TestShutdownLetsRunningJobsFinish(t *testing.T) {
	s, c := start(t, twoPipelines)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "long", Payload: helpers.Action("sleep", "ms", 1500)}))
	s.WaitEvents(t, 10*time.Second, "start", "long", 1)
	require.NoError(t, s.Stop())
	done := s.Events(t, "done", "long")
	require.Len(t, done, 1, "the running job finished before the workers were stopped")
}

func TestStatusHealthAndReady(t *testing.T) {
	s, _ := start(t, twoPipelines)
	helpers.Eventually(t, 10*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready")
	require.NoError(t, expectStatus(s.Status, "/health?plugin=jobs", http.StatusOK))
}

func TestTraceparentIsContinued(t *testing.T) {
	s, c := start(t, twoPipelines)
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "tr", Payload: helpers.Action("ack"),
		Headers: map[string][]string{"traceparent": {"00-" + traceID + "-b7ad6b7169203331-01"}}}))
	got := s.WaitEvents(t, 10*time.Second, "start", "tr", 1)[0]
	require.Len(t, got.Headers["Traceparent"], 1)
	require.True(t, strings.HasPrefix(got.Headers["Traceparent"][0], "00-"+traceID+"-"), "the producer's trace is continued: %v", got.Headers)

	// Without one, every job gets a fresh trace id.
	require.NoError(t, c.PushBatch(helpers.Job{Pipeline: "p1", ID: "tb", Payload: helpers.Action("ack")}))
	tb := s.WaitEvents(t, 10*time.Second, "start", "tb", 1)[0]
	require.Len(t, tb.Headers["Traceparent"], 1)
	require.False(t, strings.Contains(tb.Headers["Traceparent"][0], traceID))
}

func expectStatus(addr, path string, want int) error {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return &statusError{path: path, got: resp.StatusCode, want: want}
	}
	return nil
}

type statusError struct {
	path      string
	got, want int
}

func (e *statusError) Error() string {
	return e.path + ": got " + http.StatusText(e.got) + ", want " + http.StatusText(e.want)
}
