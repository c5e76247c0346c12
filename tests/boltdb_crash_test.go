package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

const (
	crashJobs     = 10_000
	crashChunk    = 250
	crashWorkers  = 4
	crashPrefetch = 100
	// crashProducers push chunks concurrently.
	crashProducers = 4
)

// boltCrashConfig is served by the rr binary: PHP workers consuming one boltdb pipeline.
var boltCrashConfig = memoryConfig + `
jobs:
  num_pollers: 6
  pool:
    num_workers: ` + strconv.Itoa(crashWorkers) + `
    allocate_timeout: 20s
  consume: ["crash"]
  pipelines:
    crash:
      driver: boltdb
      config:
        file: "{{.Dir}}/crash.db"
        prefetch: ` + strconv.Itoa(crashPrefetch) + `
`

// rrProcess is a running `rr serve`.
type rrProcess struct {
	cmd    *exec.Cmd
	exited chan error
}

func startRRServe(t *testing.T, bin, cfg, rpcAddr string) *rrProcess {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-c", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	p := &rrProcess{cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// The RPC answers before the jobs plugin has created its pipelines: wait for them.
	helpers.Eventually(t, 20*time.Second, func() error {
		c, err := helpers.Dial(rpcAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		st, err := c.Stat()
		if err != nil {
			return err
		}
		if s := st["crash"]; s == nil || !s.GetReady() {
			return fmt.Errorf("pipeline crash not consuming yet: %v", s)
		}
		return nil
	}, "rr serving pipeline crash")
	return p
}

func (p *rrProcess) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-p.exited:
		return err
	case <-time.After(within):
		t.Fatalf("rr did not exit within %s", within)
		return nil
	}
}

// crashPayload: a 1 ms job, so the workers are a little slower than the producers and a backlog
// builds up (the kill then finds jobs ready, in the queue and at workers).
var crashPayload = helpers.Action("sleep", "ms", 1)

func crashJobID(i int) string { return "c" + strconv.Itoa(i) }

func crashChunkJobs(chunk int) []helpers.Job {
	jobs := make([]helpers.Job, 0, crashChunk)
	for i := chunk * crashChunk; i < (chunk+1)*crashChunk; i++ {
		jobs = append(jobs, helpers.Job{Pipeline: "crash", ID: crashJobID(i), Payload: crashPayload})
	}
	return jobs
}

// The durability test: rr is SIGKILLed while producers push and PHP workers consume. After a
// restart on the same file every pushed job is acknowledged at least once, nothing is left, and
// the jobs run twice are at most those that were in flight at the kill.
func TestBoltDBSurvivesKill9(t *testing.T) {
	helpers.RequirePHP(t)
	began := time.Now()
	bin := buildRR(t)
	t.Logf("rr built in %s", time.Since(began))
	dir := t.TempDir()
	vars := helpers.Vars{RPC: helpers.FreeAddr(t), Metrics: helpers.FreeAddr(t), Status: helpers.FreeAddr(t), Dir: dir, PHP: helpers.PHPDir(), LogLevel: "warn"}
	cfg := filepath.Join(dir, ".rr.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(helpers.Render(t, boltCrashConfig, vars)), 0o600))
	// Reads the same jobs.log as the rr processes' workers.
	logs := &helpers.Server{Dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "rr.log"))
			t.Logf("rr log (last 8 KiB): %s", b[max(0, len(b)-8<<10):])
		}
	})

	rr := startRRServe(t, bin, cfg, vars.RPC)

	const chunks = crashJobs / crashChunk
	var (
		mu        sync.Mutex
		confirmed = map[int]bool{} // chunks whose PushBatch returned nil
		failed    = map[int]bool{} // chunks whose PushBatch failed (some of their jobs may be stored)
	)
	// Several producers (as several PHP processes would), so a backlog builds up.
	var producers sync.WaitGroup
	for p := range crashProducers {
		producers.Add(1)
		go func() {
			defer producers.Done()
			c, err := helpers.Dial(vars.RPC)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer c.Close()
			for ch := p; ch < chunks; ch += crashProducers {
				err := c.PushBatch(crashChunkJobs(ch)...)
				mu.Lock()
				if err != nil {
					failed[ch] = true
					mu.Unlock()
					return
				}
				confirmed[ch] = true
				mu.Unlock()
			}
		}()
	}

	// Kill while jobs are being consumed (and, most likely, still pushed).
	logs.WaitEvents(t, 30*time.Second, "done", "", 2000)
	require.NoError(t, rr.cmd.Process.Signal(syscall.SIGKILL))
	_ = rr.wait(t, 10*time.Second)
	producers.Wait()
	doneAtKill := len(logs.Events(t, "done", ""))
	t.Logf("killed with %d of %d chunks confirmed, %d interrupted, %d done lines", len(confirmed), chunks, len(failed), doneAtKill)

	// Restart on the same file and push what was not confirmed (the failed chunk again: its jobs
	// may or may not have been stored, so they may run twice).
	restarted := time.Now()
	rr2 := startRRServe(t, bin, cfg, vars.RPC)
	t.Logf("restarted in %s", time.Since(restarted))
	c2, err := helpers.Dial(vars.RPC)
	require.NoError(t, err)
	defer c2.Close()
	for ch := range chunks {
		if !confirmed[ch] {
			require.NoError(t, c2.PushBatch(crashChunkJobs(ch)...))
		}
	}

	// Drain: the pipeline empties (cheap to poll), then every id has a done line (a worker writes
	// it right after its reply, so it may trail the ack by a moment).
	helpers.Eventually(t, 40*time.Second, func() error {
		st, err := c2.Stat()
		if err != nil {
			return err
		}
		if s := st["crash"]; s == nil || s.GetActive() != 0 || s.GetDelayed() != 0 || s.GetReserved() != 0 {
			return fmt.Errorf("not drained: %v", s)
		}
		return nil
	}, "pipeline drained")
	t.Logf("drained %s after the restart", time.Since(restarted))
	doneCount := map[string]int{}
	helpers.Eventually(t, 10*time.Second, func() error {
		clear(doneCount)
		for _, e := range logs.Events(t, "done", "") {
			doneCount[e.ID]++
		}
		for i := range crashJobs {
			if doneCount[crashJobID(i)] == 0 {
				return fmt.Errorf("job %s has no done line (%d distinct ids done)", crashJobID(i), len(doneCount))
			}
		}
		return nil
	}, "every job acknowledged")

	dups, ambiguousDups := 0, 0
	for i := range crashJobs {
		n := doneCount[crashJobID(i)]
		require.GreaterOrEqual(t, n, 1)
		if failed[i/crashChunk] {
			ambiguousDups += n - 1
			require.LessOrEqual(t, n, 3, "job %s of the chunk pushed twice", crashJobID(i))
			continue
		}
		dups += n - 1
	}
	require.Len(t, doneCount, crashJobs, "no unknown ids")
	t.Logf("duplicates: %d redelivered after the kill (bound %d), %d from re-pushing the interrupted chunk", dups, crashPrefetch+crashWorkers, ambiguousDups)
	require.LessOrEqual(t, dups, crashPrefetch+crashWorkers, "only jobs in flight at the kill run twice")

	stopping := time.Now()
	require.NoError(t, rr2.cmd.Process.Signal(syscall.SIGTERM))
	defer func() { t.Logf("stopped in %s", time.Since(stopping)) }()
	require.NoError(t, rr2.wait(t, 15*time.Second), "clean exit on SIGTERM")
}
