package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// boltRun is one measurement of scenario 8.
type boltRun struct {
	accepted, e2e float64 // jobs/s
	pushed, acked int
	// bounded: the run hit its time limit before every job was pushed and acked; the rates are
	// what was achieved until then.
	bounded bool
}

// scenarioBoltDB is scenario 8: durable push and consume on the boltdb driver (ours against the
// stock boltdb/v5 driver). A pipeline on a fresh database file, 2 Go echo workers, consumed; 8
// producer connections push n jobs with PushBatch in batches of 100. The stock driver may be very
// slow, so each run is bounded: after the limit the producers stop and the rates achieved until then
// are reported, with a note.
func (e *env) scenarioBoltDB(res *results) error {
	n, limit := 20_000, 60*time.Second
	if e.quick {
		n, limit = 4_000, 20*time.Second
	}
	acc, e2e := map[side][]float64{}, map[side][]float64{}
	var bounded []string
	for r := range e.rounds {
		for _, s := range order(r) {
			run, err := e.runBoltDB(s, n, limit)
			if err != nil {
				return err
			}
			e.logf("round %d %s: boltdb accepted %.0f/s, end to end %.0f/s (%d pushed, %d acked, bounded %v)", r+1, s, run.accepted, run.e2e, run.pushed, run.acked, run.bounded)
			if run.bounded {
				bounded = append(bounded, fmt.Sprintf("round %d %s: %d of %d jobs accepted, %d acked when stopped after %s", r+1, s, run.pushed, n, run.acked, limit))
			}
			acc[s] = append(acc[s], run.accepted)
			e2e[s] = append(e2e[s], run.e2e)
		}
	}
	note := fmt.Sprintf("fresh database file per run, prefetch 1000, 8 producer connections, PushBatch of 100 jobs; end to end = until rr_jobs_jobs_ok reached the job count; each run is stopped after %s", limit)
	if len(bounded) > 0 {
		note += "; runs that hit that limit report the rate achieved until then (jobs acked / time limit): "
		for i, b := range bounded {
			if i > 0 {
				note += "; "
			}
			note += b
		}
	}
	res.add(&figure{ID: "boltdb_accepted", Name: fmt.Sprintf("8. boltdb PushBatch accepted (%dk jobs, batches of 100, 8 conns)", n/1000), Unit: "jobs/s", Better: "higher"}, acc[ours], acc[stock])
	res.add(&figure{ID: "boltdb_e2e", Name: "8. boltdb end to end, 2 Go echo workers", Unit: "jobs/s", Better: "higher", Note: note}, e2e[ours], e2e[stock])
	return nil
}

// runBoltDB pushes n jobs (a multiple of 100) on 8 connections into a consumed boltdb pipeline and
// waits until rr_jobs_jobs_ok says all were acknowledged, or until limit passed since the first push.
func (e *env) runBoltDB(s side, n int, limit time.Duration) (boltRun, error) {
	const conns, size = 8, 100
	dir, err := os.MkdirTemp(e.tmp, "boltdb-"+string(s)+"-")
	if err != nil {
		return boltRun{}, err
	}
	defer os.RemoveAll(dir)
	cfg := serverCfg{workers: 2, pipelines: []pipeCfg{{
		name: "bench", driver: "boltdb", file: filepath.Join(dir, "jobs.db"), priority: 10, prefetch: 1000, consume: true,
	}}}
	srv, err := e.startServer(s, cfg)
	if err != nil {
		return boltRun{}, err
	}
	defer srv.kill()

	clients := make([]*fastClient, conns)
	for i := range clients {
		c, err := dialFast(srv.rpc)
		if err != nil {
			return boltRun{}, err
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
		return boltRun{}, firstErr
	}
	run := boltRun{pushed: int(accepted.Load()), bounded: cut.Load()}
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
			return boltRun{}, fmt.Errorf("%s server exited: %s", s, tail(srv.logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
