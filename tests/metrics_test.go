package tests

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// scrape returns the metrics endpoint's text.
func scrape(t *testing.T, s *helpers.Server) (string, error) {
	t.Helper()
	resp, err := http.Get("http://" + s.Metrics + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// metricValue finds `name{labels} value` (labels exactly as exposed, "" for none).
func metricValue(text, series string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+]+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// waitMetric waits until series reaches at least min.
func waitMetric(t *testing.T, s *helpers.Server, series string, minimum float64) float64 {
	t.Helper()
	var v float64
	helpers.Eventually(t, 15*time.Second, func() error {
		text, err := scrape(t, s)
		if err != nil {
			return err
		}
		var ok bool
		v, ok = metricValue(text, series)
		if !ok || v < minimum {
			return fmt.Errorf("%s = %v (present %v), want >= %v", series, v, ok, minimum)
		}
		return nil
	}, "metric %s", series)
	return v
}

func TestMetricsEndpoint(t *testing.T) {
	s, c := start(t, twoPipelines)
	for i := range 3 {
		require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "m" + strconv.Itoa(i), Payload: helpers.Action("ack")}))
	}
	require.NoError(t, c.PushBatch(helpers.Job{Pipeline: "p2", ID: "mb", Payload: helpers.Action("ack")}))
	require.Error(t, c.Push(helpers.Job{Pipeline: "nope", ID: "x", Payload: "x"}))
	s.WaitEvents(t, 10*time.Second, "done", "", 4)

	require.Equal(t, 4.0, waitMetric(t, s, "rr_jobs_jobs_ok", 4))
	require.Equal(t, 4.0, waitMetric(t, s, "rr_jobs_push_ok", 4))
	require.Equal(t, 1.0, waitMetric(t, s, "rr_jobs_push_err", 1))
	require.Equal(t, 3.0, waitMetric(t, s, `rr_jobs_requests_total{driver="memory",job="p1",source="single"}`, 3))
	require.Equal(t, 1.0, waitMetric(t, s, `rr_jobs_requests_total{driver="memory",job="p2",source="batch"}`, 1))
	waitMetric(t, s, `rr_jobs_push_latency_count{driver="memory",job="p1",source="single"}`, 3)
	require.Equal(t, 2.0, waitMetric(t, s, "rr_jobs_total_workers", 2))
	waitMetric(t, s, "rr_jobs_workers_ready", 1)
	text, err := scrape(t, s)
	require.NoError(t, err)
	require.Regexp(t, `rr_jobs_worker_memory_bytes\{pid="\d+"\} \d+`, text)
}
