package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// durableRun is one measurement of a durable push+consume scenario.
type durableRun struct {
	accepted, e2e float64 // jobs/s
	pushed, acked int
	// bounded: the run hit its time limit before every job was pushed and acked; the rates are
	// what was achieved until then.
	bounded bool
}

// durableDriver is one driver measured by a durable push+consume scenario: how its pipeline is
// configured on both sides (the same text for ours and the stock driver).
type durableDriver struct {
	number int    // the scenario number in the table
	name   string // the driver name, `driver:` and the -only selector
	// pipeline returns the pipeline of a run; dir is a fresh directory removed after the run.
	pipeline func(dir string) pipeCfg
	// global is the driver's top-level config section ("" = none).
	global func() string
	// require reports why the driver cannot be measured on this machine (nil: it can).
	require func() error
	// cleanup removes what a run left on the broker (the servers are killed, not stopped).
	cleanup func(dir string)
	note    string
}

// scenarioDurable measures durable push and consume on d, ours against the stock driver: a
// consumed pipeline, 2 Go echo workers, 8 producer connections pushing n jobs with PushBatch in
// batches of 100. The stock driver may be very slow, so each run is bounded: after the limit the
// producers stop and the rates achieved until then are reported, with a note.
func (e *env) scenarioDurable(res *results, d durableDriver) error {
	if d.require != nil {
		if err := d.require(); err != nil {
			return fmt.Errorf("%s: cannot be measured here: %w", d.name, err)
		}
	}
	n, limit := 20_000, 60*time.Second
	if e.quick {
		// Stock boltdb stalls until the limit, so the limit is most of the quick run's time here.
		n, limit = 4_000, 8*time.Second
	}
	acc, e2e := map[side][]float64{}, map[side][]float64{}
	var bounded []string
	for r := range e.rounds {
		for _, s := range order(r) {
			run, err := e.runDurable(s, d, n, limit)
			if err != nil {
				return err
			}
			e.logf("round %d %s: %s accepted %.0f/s, end to end %.0f/s (%d pushed, %d acked, bounded %v)", r+1, s, d.name, run.accepted, run.e2e, run.pushed, run.acked, run.bounded)
			if run.bounded {
				bounded = append(bounded, fmt.Sprintf("round %d %s: %d of %d jobs accepted, %d acked when stopped after %s", r+1, s, run.pushed, n, run.acked, limit))
			}
			acc[s] = append(acc[s], run.accepted)
			e2e[s] = append(e2e[s], run.e2e)
		}
	}
	note := fmt.Sprintf("%s, 8 producer connections, PushBatch of 100 jobs; end to end = until rr_jobs_jobs_ok reached the job count; each run is stopped after %s", d.note, limit)
	if len(bounded) > 0 {
		note += "; runs that hit that limit report the rate achieved until then (jobs acked / time limit): " + strings.Join(bounded, "; ")
	}
	res.add(&figure{ID: d.name + "_accepted", Name: fmt.Sprintf("%d. %s PushBatch accepted (%dk jobs, batches of 100, 8 conns)", d.number, d.name, n/1000), Unit: "jobs/s", Better: "higher"}, acc[ours], acc[stock])
	res.add(&figure{ID: d.name + "_e2e", Name: fmt.Sprintf("%d. %s end to end, 2 Go echo workers", d.number, d.name), Unit: "jobs/s", Better: "higher", Note: note}, e2e[ours], e2e[stock])
	return nil
}

// boltDBDriver is scenario 8: ours (drivers/boltdb) against the stock boltdb/v5 driver.
var boltDBDriver = durableDriver{
	number: 8, name: "boltdb", note: "fresh database file per run, prefetch 1000",
	pipeline: func(dir string) pipeCfg {
		return pipeCfg{name: "bench", driver: "boltdb", config: map[string]string{"file": strconv.Quote(filepath.Join(dir, "jobs.db"))}, priority: 10, prefetch: 1000, consume: true}
	},
}

// runDurable pushes n jobs (a multiple of 100) on 8 connections into a consumed pipeline of d and
// waits until rr_jobs_jobs_ok says all were acknowledged, or until limit passed since the first push.
func (e *env) runDurable(s side, d durableDriver, n int, limit time.Duration) (durableRun, error) {
	const conns, size = 8, 100
	dir, err := os.MkdirTemp(e.tmp, d.name+"-"+string(s)+"-")
	if err != nil {
		return durableRun{}, err
	}
	defer os.RemoveAll(dir)
	if d.cleanup != nil {
		defer d.cleanup(dir)
	}
	cfg := serverCfg{workers: 2, pipelines: []pipeCfg{d.pipeline(dir)}}
	if d.global != nil {
		cfg.global = d.global()
	}
	srv, err := e.startServer(s, cfg)
	if err != nil {
		return durableRun{}, err
	}
	defer srv.kill()

	clients := make([]*fastClient, conns)
	for i := range clients {
		c, err := dialFast(srv.rpc)
		if err != nil {
			return durableRun{}, err
		}
		defer c.close()
		clients[i] = c
	}
	batches := int64(n / size)
	var claimed, accepted, lastPush atomic.Int64
	var cut atomic.Bool
	var firstErr error
	var errOnce sync.Once
	t0 := time.Now()
	deadline := t0.Add(limit)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, err := batchTemplateN("bench", payload100, size)
			if err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			for claimed.Add(1) <= batches {
				if time.Now().After(deadline) {
					cut.Store(true)
					return
				}
				if err := c.call("jobs.PushBatch", t.renew(), max(time.Until(deadline), time.Second)); err != nil {
					if time.Now().After(deadline) {
						// The time limit cut this batch short (its call timed out).
						cut.Store(true)
						return
					}
					errOnce.Do(func() { firstErr = fmt.Errorf("%s: PushBatch: %w", s, err) })
					return
				}
				accepted.Add(size)
				lastPush.Store(int64(time.Since(t0)))
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return durableRun{}, firstErr
	}
	run := durableRun{pushed: int(accepted.Load()), bounded: cut.Load()}
	pushDur := time.Duration(lastPush.Load())
	if run.bounded {
		pushDur = time.Since(t0)
	}
	if pushDur > 0 {
		run.accepted = float64(run.pushed) / pushDur.Seconds()
	}

	// Wait until every job is acked, or the limit passed.
	for {
		v, err := srv.metric("rr_jobs_jobs_ok")
		now := time.Now()
		if err == nil {
			run.acked = int(v)
			if run.acked >= n {
				run.e2e = float64(n) / now.Sub(t0).Seconds()
				return run, nil
			}
		}
		if now.After(deadline) {
			run.bounded = true
			run.e2e = float64(run.acked) / now.Sub(t0).Seconds()
			return run, nil
		}
		select {
		case <-srv.done:
			return durableRun{}, fmt.Errorf("%s server exited: %s", s, tail(srv.logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
