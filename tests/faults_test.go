package tests

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// connectionCutMidLoad cuts the broker connection of pipeline (its driver talks to the broker
// through p) while jobs are pushed and processed, and checks what every broker driver promises:
// pushes fail at once with a clear error (containing each of wantErr), the pipeline reports not
// ready (Stat and /ready), and once the connection is back the pipeline consumes again by itself;
// every push that was acknowledged is processed. driver must appear in every failed push's error.
func connectionCutMidLoad(t *testing.T, s *helpers.Server, c *helpers.Client, p *helpers.Proxy, pipeline, driver string, wantErr ...string) {
	t.Helper()
	helpers.Eventually(t, 15*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready")
	load := startLoad(t, c, pipeline)
	helpers.Eventually(t, 15*time.Second, func() error {
		if n := len(s.Events(t, "done", "")); n < 20 {
			return fmt.Errorf("%d jobs done", n)
		}
		return nil
	}, "jobs flow before the cut")

	p.Cut()
	waitStat(t, c, pipeline, func(st stat) bool { return !st.Ready })
	helpers.Eventually(t, 10*time.Second, func() error {
		return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusServiceUnavailable)
	}, "not ready while the broker is unreachable")
	begin := time.Now()
	err := c.Push(helpers.Job{Pipeline: pipeline, ID: "while-cut", Payload: helpers.Action("ack")})
	require.Error(t, err)
	for _, want := range wantErr {
		require.Contains(t, err.Error(), want)
	}
	require.Less(t, time.Since(begin), 2*time.Second, "a push fails at once, it does not wait for the timeout")

	p.Restore(t)
	waitStat(t, c, pipeline, func(st stat) bool { return st.Ready })
	helpers.Eventually(t, 15*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready again")
	accepted, pushErrs := load.stopAfter(t, 20)

	require.NotEmpty(t, pushErrs, "pushes failed while the connection was cut")
	for _, err := range pushErrs {
		require.Contains(t, err.Error(), driver, "the error names the driver: %v", err)
	}
	helpers.Eventually(t, 30*time.Second, func() error {
		done := map[string]bool{}
		for _, e := range s.Events(t, "done", "") {
			done[e.ID] = true
		}
		var missing []string
		for _, id := range accepted {
			if !done[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d accepted jobs not processed, e.g. %v", len(missing), len(accepted), missing[:min(5, len(missing))])
		}
		return nil
	}, "every accepted push is processed")
	require.Empty(t, s.Events(t, "start", "while-cut"))
	waitStat(t, c, pipeline, func(st stat) bool { return st.Active == 0 && st.Reserved == 0 && st.Ready })
}

// load pushes short jobs to a pipeline one after another until stopped, recording which pushes
// were accepted and which failed.
type load struct {
	mu       sync.Mutex
	accepted []string
	errs     []error
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(t *testing.T, c *helpers.Client, pipeline string) *load {
	l := &load{stop: make(chan struct{})}
	l.wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			id := "load-" + strconv.Itoa(i)
			err := c.Push(helpers.Job{Pipeline: pipeline, ID: id, Payload: helpers.Action("sleep", "ms", 20)})
			l.mu.Lock()
			if err == nil {
				l.accepted = append(l.accepted, id)
			} else {
				l.errs = append(l.errs, err)
			}
			l.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Cleanup(func() { l.halt() })
	return l
}

// stopAfter waits until n more pushes were accepted, stops the load and returns what it recorded.
func (l *load) stopAfter(t *testing.T, n int) ([]string, []error) {
	l.mu.Lock()
	before := len(l.accepted)
	l.mu.Unlock()
	helpers.Eventually(t, 15*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if got := len(l.accepted) - before; got < n {
			return fmt.Errorf("%d pushes accepted after the restore", got)
		}
		return nil
	}, "pushes succeed again")
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted, l.errs
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}
