package tests

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beanstalkd/go-beanstalk"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/drivertest"
	"github.com/rrjobs/jobs/tests/helpers"
)

// End-to-end tests of the beanstalk driver against the local beanstalkd (RRJOBS_BEANSTALK_ADDR,
// default 127.0.0.1:11300). Every test works on its own tubes.

func beanstalkAddr() string {
	return drivertest.Env("RRJOBS_BEANSTALK_ADDR", "127.0.0.1:11300")
}

func requireBeanstalkd(t *testing.T) {
	t.Helper()
	drivertest.RequireTCP(t, "beanstalkd", beanstalkAddr())
}

// beanstalkTube returns a fresh tube name; the jobs left in it are deleted when the test ends.
func beanstalkTube(t *testing.T) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	tube := "rre2e_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		c, err := beanstalk.DialTimeout("tcp", beanstalkAddr(), 3*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		tb := beanstalk.NewTube(c, tube)
		for _, peek := range []func() (uint64, []byte, error){tb.PeekReady, tb.PeekDelayed, tb.PeekBuried} {
			for range 10_000 {
				id, _, err := peek()
				if err != nil || c.Delete(id) != nil {
					break
				}
			}
		}
	})
	return tube
}

// beanstalkGlobal is the `beanstalk:` section for addr (host:port).
func beanstalkGlobal(addr, timeout string) string {
	return "beanstalk:\n  addr: tcp://" + addr + "\n  timeout: " + timeout + "\n"
}

func TestBeanstalkConformance(t *testing.T) {
	runConformance(t, conformance{
		driver:   "beanstalk",
		require:  requireBeanstalkd,
		global:   func(*testing.T) string { return beanstalkGlobal(beanstalkAddr(), "10s") },
		newQueue: beanstalkTube,
		pipeline: func(tube string) string { return "tube: " + tube + "\nreserve_timeout: 1s\n" },
		declare:  func(tube string) map[string]string { return map[string]string{"tube": tube} },
		stat:     statCaps{active: true, delayed: true, reserved: true},
	})
}

// beanstalkPipelines renders a config with the named pipelines (name -> tube), all consumed.
func beanstalkPipelines(global string, workers int, pipes map[string]string) string {
	var b strings.Builder
	b.WriteString(memoryConfig)
	b.WriteString(global)
	fmt.Fprintf(&b, "jobs:\n  num_pollers: %d\n  pool:\n    num_workers: %d\n    allocate_timeout: 10s\n  consume: [", workers+2, workers)
	first := true
	for name := range pipes {
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(strconv.Quote(name))
	}
	b.WriteString("]\n  pipelines:\n")
	for name, tube := range pipes {
		fmt.Fprintf(&b, "    %s:\n      driver: beanstalk\n      config:\n        tube: %s\n        prefetch: 4\n", name, tube)
	}
	return b.String()
}

// TestBeanstalkConnectionCutMidLoad cuts the link to beanstalkd while jobs run: pushes fail with a
// clear error at once, the pipeline reports not ready, and after the link is back consumption
// resumes by itself and every accepted job runs.
func TestBeanstalkConnectionCutMidLoad(t *testing.T) {
	helpers.RequirePHP(t)
	requireBeanstalkd(t)
	p := helpers.StartProxy(t, beanstalkAddr())
	s, c := start(t, beanstalkPipelines(beanstalkGlobal(p.Addr, "5s"), 2, map[string]string{"bp": beanstalkTube(t)}))

	var accepted []string
	pushSome := func(prefix string, n int) {
		for i := range n {
			id := prefix + strconv.Itoa(i)
			require.NoError(t, c.Push(helpers.Job{Pipeline: "bp", ID: id, Payload: helpers.Action("sleep", "ms", 100)}))
			accepted = append(accepted, id)
		}
	}
	pushSome("a", 20)
	s.WaitEvents(t, 15*time.Second, "done", "", 3)

	p.Cut()
	start := time.Now()
	err := c.Push(helpers.Job{Pipeline: "bp", ID: "refused", Payload: helpers.Action("ack")})
	require.Error(t, err)
	require.Contains(t, err.Error(), `beanstalk pipeline "bp": push job "refused"`)
	require.Contains(t, err.Error(), "connect to beanstalkd at tcp://"+p.Addr)
	require.Less(t, time.Since(start), 5*time.Second)
	waitStat(t, c, "bp", func(st stat) bool { return !st.Ready })
	helpers.Eventually(t, 10*time.Second, func() error {
		return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusServiceUnavailable)
	}, "not ready while beanstalkd is unreachable")

	p.Restore(t)
	waitStat(t, c, "bp", func(st stat) bool { return st.Ready })
	pushSome("b", 10)
	helpers.Eventually(t, 40*time.Second, func() error {
		done := map[string]bool{}
		for _, e := range s.Events(t, "done", "") {
			done[e.ID] = true
		}
		for _, id := range accepted {
			if !done[id] {
				return fmt.Errorf("job %s not done yet (%d of %d done)", id, len(done), len(accepted))
			}
		}
		return nil
	}, "every accepted job ran")
	require.Empty(t, s.Events(t, "start", "refused"), "a refused push left nothing behind")
	waitStat(t, c, "bp", func(st stat) bool { return st.Active == 0 && st.Reserved == 0 && st.Ready })
	helpers.Eventually(t, 10*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready again")
}

// TestBeanstalkLongJobPastTTRRunsOnce: a job that runs 5 s with a TTR of 2 s is touched while it
// runs: its reservation never times out (checked on the job's own stats, since beanstalkd 1.12
// may expire a TTR late while other connections are busy), and neither this instance nor a
// second one on the same tube runs it again.
func TestBeanstalkLongJobPastTTRRunsOnce(t *testing.T) {
	helpers.RequirePHP(t)
	requireBeanstalkd(t)
	tube := beanstalkTube(t)
	cfg := beanstalkPipelines(beanstalkGlobal(beanstalkAddr(), "2s"), 2, map[string]string{"long": tube})
	a, ca := start(t, cfg)
	b, _ := start(t, cfg)

	bc, err := beanstalk.DialTimeout("tcp", beanstalkAddr(), 3*time.Second)
	require.NoError(t, err)
	defer bc.Close()
	// beanstalkd numbers jobs in sequence, across tubes: a probe put to a tube nobody watches tells
	// where the pushed job's id starts.
	probe, err := beanstalk.NewTube(bc, tube+"_probe").Put([]byte("probe"), 0, 0, time.Second)
	require.NoError(t, err)
	require.NoError(t, bc.Delete(probe))

	require.NoError(t, ca.Push(helpers.Job{Pipeline: "long", ID: "slow", Payload: helpers.Action("sleep", "ms", 5000)}))
	helpers.Eventually(t, 10*time.Second, func() error {
		if len(a.Events(t, "start", "slow"))+len(b.Events(t, "start", "slow")) == 0 {
			return fmt.Errorf("not started yet")
		}
		return nil
	}, "the long job started")
	var bid uint64
	for id := probe + 1; id < probe+1000 && bid == 0; id++ {
		if st, err := bc.StatsJob(id); err == nil && st["tube"] == tube {
			bid = id
		}
	}
	require.NotZero(t, bid, "the pushed job's beanstalkd id")
	for len(a.Events(t, "done", "slow"))+len(b.Events(t, "done", "slow")) == 0 {
		st, err := bc.StatsJob(bid)
		if err != nil {
			break // deleted: done
		}
		left, err := strconv.Atoi(st["time-left"])
		require.NoError(t, err)
		require.Equal(t, "0", st["timeouts"], "stats %v", st)
		require.GreaterOrEqual(t, left, 0, "stats %v", st)
		time.Sleep(200 * time.Millisecond)
	}
	waitStat(t, ca, "long", func(st stat) bool { return st.Active == 0 && st.Reserved == 0 && st.Delayed == 0 })
	require.Len(t, append(a.Events(t, "start", "slow"), b.Events(t, "start", "slow")...), 1, "the long job ran once")
}

// TestBeanstalkStatIsPerTube: each pipeline reports its own tube's counts while another tube holds
// jobs (the stock v5 driver reported the server-wide counts for every pipeline, beanstalk#223).
func TestBeanstalkStatIsPerTube(t *testing.T) {
	helpers.RequirePHP(t)
	requireBeanstalkd(t)
	tubeA, tubeB := beanstalkTube(t), beanstalkTube(t)
	s, c := start(t, beanstalkPipelines(beanstalkGlobal(beanstalkAddr(), "10s"), 2, map[string]string{"pa": tubeA, "pb": tubeB}))
	require.NoError(t, c.Pause("pa"))
	waitStat(t, c, "pa", func(st stat) bool { return !st.Ready })
	for i := range 3 {
		require.NoError(t, c.Push(helpers.Job{Pipeline: "pa", ID: "a" + strconv.Itoa(i), Payload: helpers.Action("ack")}))
	}
	require.NoError(t, c.Push(helpers.Job{Pipeline: "pa", ID: "later", Payload: helpers.Action("ack"), Delay: 60}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "pb", ID: "busy", Payload: helpers.Action("sleep", "ms", 2000)}))
	s.WaitEvents(t, 15*time.Second, "start", "busy", 1)

	all := map[string]stat{}
	helpers.Eventually(t, 10*time.Second, func() error {
		got, err := c.Stat()
		if err != nil {
			return err
		}
		a, b := got["pa"], got["pb"]
		if a == nil || b == nil {
			return fmt.Errorf("missing pipelines in %v", got)
		}
		if a.Active != 3 || a.Delayed != 1 || a.Reserved != 0 || b.Active != 0 || b.Delayed != 0 || b.Reserved != 1 {
			return fmt.Errorf("pa %v, pb %v", a, b)
		}
		all = got
		return nil
	}, "per-tube counts")
	require.Equal(t, tubeA, all["pa"].Queue)
	require.Equal(t, tubeB, all["pb"].Queue)
	s.WaitEvents(t, 15*time.Second, "done", "busy", 1)
	waitStat(t, c, "pb", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 })
	waitStat(t, c, "pa", func(st stat) bool { return st.Active == 3 && st.Delayed == 1 })
}
