package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
)

const (
	batchSize   = 1000
	payloadSize = 100
	jobName     = "bench.job"
	// bigPrefetch lets every pushed job reach the priority queue on both sides, so no producer
	// blocks on a driver limit (stock's memory driver blocks pushes at its prefetch otherwise).
	bigPrefetch = 1_000_000
)

var payload100 = bytes.Repeat([]byte("x"), payloadSize)

// batchTemplate is a PushBatchRequest of batchSize jobs for pipeline, marshalled once.
func batchTemplate(pipeline string, body []byte) (*template, error) {
	return batchTemplateN(pipeline, body, batchSize)
}

// batchTemplateN is a PushBatchRequest of size jobs for pipeline, marshalled once.
func batchTemplateN(pipeline string, body []byte, size int) (*template, error) {
	jobs := make([]*jobsProto.Job, size)
	opts := &jobsProto.Options{Pipeline: pipeline}
	for i := range jobs {
		jobs[i] = &jobsProto.Job{Job: jobName, Payload: body, Options: opts}
	}
	return newTemplate(jobs, false)
}

// pushBatches pushes n jobs (a multiple of batchSize) over one connection.
func pushBatches(s side, addr string, n int, pipeline string) error {
	c, err := dialFast(addr)
	if err != nil {
		return err
	}
	defer c.close()
	t, err := batchTemplate(pipeline, payload100)
	if err != nil {
		return err
	}
	for i := 0; i < n; i += batchSize {
		if err := c.call("jobs.PushBatch", t.renew(), 2*time.Minute); err != nil {
			return fmt.Errorf("%s: batch %d: %w", s, i/batchSize, err)
		}
	}
	return nil
}

// e2eRun is one end-to-end measurement.
type e2eRun struct {
	accepted, e2e float64 // jobs/s
	cpuPerJob     float64 // server process CPU, microseconds per job
}

// runE2E pushes n jobs with PushBatch on one connection into a consuming pipeline and waits until
// rr_jobs_jobs_ok says all were acknowledged.
func (e *env) runE2E(s side, cfg serverCfg, n int) (e2eRun, error) {
	srv, err := e.startServer(s, cfg)
	if err != nil {
		return e2eRun{}, err
	}
	defer srv.kill()

	cpu0 := srv.cpuSeconds()
	t0 := time.Now()
	if err := pushBatches(s, srv.rpc, n, "bench"); err != nil {
		return e2eRun{}, err
	}
	pushed := time.Since(t0)
	done, err := srv.waitJobsOK(float64(n), 5*time.Minute)
	if err != nil {
		return e2eRun{}, err
	}
	total := done.Sub(t0)
	cpu := srv.cpuSeconds() - cpu0
	return e2eRun{
		accepted:  float64(n) / pushed.Seconds(),
		e2e:       float64(n) / total.Seconds(),
		cpuPerJob: cpu / float64(n) * 1e6,
	}, nil
}

// scenarioPushBatch is scenario 1: 1M jobs (50k quick) pushed in batches of 1000 into a consuming
// pipeline with 2 Go echo workers. Every round also measures scenario 4, the physical limit (see
// runLimit), right before the two sides, so that each side's end-to-end rate is compared with a limit
// taken under the same machine load.
func (e *env) scenarioPushBatch(res *results) error {
	n := 1_000_000
	limitDur := 3 * time.Second
	if e.quick {
		n = 50_000
		limitDur = time.Second
	}
	cfg := serverCfg{workers: 2, pollers: e.pollers, pipelines: []pipeCfg{{name: "bench", priority: 10, prefetch: bigPrefetch, consume: true}}}
	acc, e2e, cpu, frac := map[side][]float64{}, map[side][]float64{}, map[side][]float64{}, map[side][]float64{}
	var limits, limitCPU []float64
	for r := range e.rounds {
		limit, cpuPerJob, err := e.runLimit(cfg.workers, limitDur)
		if err != nil {
			return err
		}
		e.logf("round %d: physical limit (bare pool loop) %.0f jobs/s, %.1f µs CPU/job in its process", r+1, limit, cpuPerJob)
		limits = append(limits, limit)
		limitCPU = append(limitCPU, cpuPerJob)
		for _, s := range order(r) {
			run, err := e.runE2E(s, cfg, n)
			if err != nil {
				return err
			}
			e.logf("round %d %s: accepted %.0f/s, end to end %.0f/s (%.2f of the limit), %.1f µs server CPU/job", r+1, s, run.accepted, run.e2e, run.e2e/limit, run.cpuPerJob)
			acc[s] = append(acc[s], run.accepted)
			e2e[s] = append(e2e[s], run.e2e)
			cpu[s] = append(cpu[s], run.cpuPerJob)
			frac[s] = append(frac[s], round(run.e2e/limit, 3))
		}
	}
	label := fmt.Sprintf("%dk", n/1000)
	res.add(&figure{ID: "pushbatch_accepted", Name: "1. PushBatch accepted (" + label + " jobs, batches of 1000)", Unit: "jobs/s", Better: "higher"}, acc[ours], acc[stock])
	res.add(&figure{ID: "e2e_echo", Name: "1. end to end, 2 Go echo workers", Unit: "jobs/s", Better: "higher"}, e2e[ours], e2e[stock])
	res.add(&figure{ID: "server_cpu_per_job", Name: "1. server CPU per job (push to ack)", Unit: "µs", Better: "lower",
		Note: "CPU time of the server process only (not the workers or the client) during scenario 1, divided by the job count"}, cpu[ours], cpu[stock])
	res.add(&figure{ID: "limit", Name: "4. physical limit: bare static_pool.Exec loop, 2 echo workers", Unit: "jobs/s", Better: "higher",
		Note: "measured once per round before the two sides, the same for both (shown under ours); no RPC, queue or driver, 4 goroutines like the 4 pollers"}, limits, nil)
	res.add(&figure{ID: "limit_cpu_per_job", Name: "4. bare loop CPU per job (its process)", Unit: "µs", Better: "lower",
		Note: "what the pool package itself costs per job, to compare with the servers' CPU per job of scenario 1 (shown under ours)"}, limitCPU, nil)
	res.add(&figure{ID: "e2e_fraction_of_limit", Name: "4. end to end / physical limit (same round)", Unit: "fraction", Better: "higher"}, frac[ours], frac[stock])
	return nil
}

// scenarioPHP is scenario 1 with the PHP worker of tests/php (it acks plain payloads): the realistic
// case, where PHP and not the engine is the bottleneck.
func (e *env) scenarioPHP(res *results) error {
	n := 50_000
	if e.quick {
		n = 5_000
	}
	cfg := serverCfg{workers: 2, php: true, pipelines: []pipeCfg{{name: "bench", priority: 10, prefetch: bigPrefetch, consume: true}}}
	e2e := map[side][]float64{}
	for r := range e.rounds {
		for _, s := range order(r) {
			run, err := e.runE2E(s, cfg, n)
			if err != nil {
				return err
			}
			e.logf("round %d %s: PHP end to end %.0f/s", r+1, s, run.e2e)
			e2e[s] = append(e2e[s], run.e2e)
		}
	}
	res.add(&figure{ID: "e2e_php", Name: fmt.Sprintf("1p. end to end, 2 PHP workers (%dk jobs)", n/1000), Unit: "jobs/s", Better: "higher"}, e2e[ours], e2e[stock])
	return nil
}

// scenarioPush is scenario 2: single jobs.Push calls on 1 and on 8 connections into a pipeline that
// is not consumed (the push path alone). Each measurement runs for a fixed time or 90k jobs (the
// stock memory driver blocks pushes beyond 100k jobs in a pipeline that is not consumed). On 8
// connections the same server also answers `bench.Noop` (internal/serve/floor.go), a method that
// takes the same PushRequest and does nothing: the floor set by the RPC transport, which both
// sides share. Each side's push rate is also reported as a fraction of its own floor.
func (e *env) scenarioPush(res *results) error {
	dur := 3 * time.Second
	if e.quick {
		dur = time.Second
	}
	const maxJobs = 90_000
	cfg := serverCfg{workers: 2, pipelines: []pipeCfg{{name: "bench", priority: 10, prefetch: bigPrefetch}}}
	for _, conns := range []int{1, 8} {
		rates, floors, fracs := map[side][]float64{}, map[side][]float64{}, map[side][]float64{}
		for r := range e.rounds {
			for _, s := range order(r) {
				rate, floor, err := e.runPush(s, cfg, conns, dur, maxJobs, conns == 8)
				if err != nil {
					return err
				}
				e.logf("round %d %s: %d connection(s) %.0f jobs/s (no-op floor %.0f calls/s)", r+1, s, conns, rate, floor)
				rates[s] = append(rates[s], rate)
				if floor > 0 {
					floors[s] = append(floors[s], floor)
					fracs[s] = append(fracs[s], round(rate/floor, 3))
				}
			}
		}
		res.add(&figure{ID: fmt.Sprintf("push_%dconn", conns), Name: fmt.Sprintf("2. single Push, %d connection(s)", conns), Unit: "jobs/s", Better: "higher"}, rates[ours], rates[stock])
		if conns == 8 {
			res.add(&figure{ID: "push_floor_8conn", Name: "2. RPC floor: no-op method, same request, 8 connections", Unit: "calls/s", Better: "higher",
				Note: "bench.Noop takes the PushRequest jobs.Push takes and does nothing: the stock rpc plugin's cost, the same code on both sides"}, floors[ours], floors[stock])
			res.add(&figure{ID: "push_fraction_of_floor", Name: "2. single Push / RPC floor, 8 connections", Unit: "fraction", Better: "higher",
				Note: "1.0 would be a jobs plugin that costs nothing; ours/stock cannot exceed 1 / stock's fraction"}, fracs[ours], fracs[stock])
		}
	}
	return nil
}

// runPush measures single pushes on one server and, with floor set, then the no-op RPC floor on the
// same server with as many connections.
func (e *env) runPush(s side, cfg serverCfg, conns int, dur time.Duration, maxJobs int64, floor bool) (rate, floorRate float64, err error) {
	srv, err := e.startServer(s, cfg)
	if err != nil {
		return 0, 0, err
	}
	defer srv.kill()
	n, elapsed, err := pushFlatOut(s, srv.rpc, "jobs.Push", conns, dur, maxJobs, payload100)
	if err != nil {
		return 0, 0, err
	}
	rate = float64(n) / elapsed.Seconds()
	if !floor {
		return rate, 0, nil
	}
	n, elapsed, err = pushFlatOut(s, srv.rpc, "bench.Noop", conns, dur, maxJobs, payload100)
	if err != nil {
		return 0, 0, err
	}
	return rate, float64(n) / elapsed.Seconds(), nil
}

// reporter collects the lines echo workers write in report mode ("<arrived ns> <body>").
type reporter struct {
	path  string
	ln    net.Listener
	mu    sync.Mutex
	lines []report
	count atomic.Int64
}

type report struct {
	arrived int64
	body    string
}

func (e *env) newReporter() (*reporter, error) {
	e.seq++
	path := filepath.Join(e.tmp, fmt.Sprintf("report-%d.sock", e.seq))
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	r := &reporter{path: path, ln: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go r.read(conn)
		}
	}()
	return r, nil
}

func (r *reporter) read(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 64*1024)
	var batch []report
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			r.flush(&batch)
			return
		}
		line = line[:len(line)-1]
		if sp := bytes.IndexByte(line, ' '); sp > 0 {
			if at, err := strconv.ParseInt(string(line[:sp]), 10, 64); err == nil {
				batch = append(batch, report{arrived: at, body: string(line[sp+1:])})
			}
		}
		if len(batch) >= 64 || br.Buffered() == 0 {
			r.flush(&batch)
		}
	}
}

func (r *reporter) flush(batch *[]report) {
	if len(*batch) == 0 {
		return
	}
	r.mu.Lock()
	r.lines = append(r.lines, *batch...)
	r.mu.Unlock()
	r.count.Add(int64(len(*batch)))
	*batch = (*batch)[:0]
}

// wait blocks until n lines arrived or limit passed, and returns a copy of the lines.
func (r *reporter) wait(n int64, limit time.Duration) ([]report, error) {
	deadline := time.Now().Add(limit)
	for r.count.Load() < n {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("workers reported %d of %d jobs within %s", r.count.Load(), n, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines), nil
}

func (r *reporter) close() {
	_ = r.ln.Close()
	_ = os.Remove(r.path)
}

// scenarioLatency is scenario 3: enqueue-to-worker-start latency at half load. On each server, the
// single-push capacity is measured first (8 connections pushing jobs.Push as fast as they can into
// the consumed pipeline, until every job is acked); then jobs are pushed on 8 connections at 50% of
// that rate on an open-loop schedule, each carrying its push time, and the echo worker reports when
// each job frame arrived. Single pushes cost the producer and the server far more than batched ones,
// so the capacity of scenario 1 (PushBatch) would overload the machine here.
func (e *env) scenarioLatency(res *results, fixedRate float64) error {
	capDur, dur, warm := 2*time.Second, 3*time.Second, 500*time.Millisecond
	if e.quick {
		capDur, dur, warm = time.Second, time.Second, 200*time.Millisecond
	}
	note := "enqueue = the client stamps the time right before jobs.Push; start = the echo worker read the job frame; 8 connections, open-loop schedule at 50% of the side's own single-push end-to-end capacity"
	if fixedRate > 0 {
		note = fmt.Sprintf("enqueue = the client stamps the time right before jobs.Push; start = the echo worker read the job frame; 8 connections, open-loop schedule at %.0f jobs/s (-latency-rate)", fixedRate)
	}
	p50, p99, p999, rates := map[side][]float64{}, map[side][]float64{}, map[side][]float64{}, map[side][]float64{}
	var stockCapacity []float64
	for r := range e.rounds {
		for _, s := range order(r) {
			lat, achieved, capacity, err := e.runLatency(s, fixedRate, capDur, dur, warm)
			if err != nil {
				return err
			}
			if s == stock {
				stockCapacity = append(stockCapacity, capacity)
			}
			slices.Sort(lat)
			a, b, c := percentile(lat, 50), percentile(lat, 99), percentile(lat, 99.9)
			e.logf("round %d %s: capacity %.0f jobs/s, at %.0f jobs/s: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms (%d samples)", r+1, s, capacity, achieved, a, b, c, len(lat))
			p50[s] = append(p50[s], a)
			p99[s] = append(p99[s], b)
			p999[s] = append(p999[s], c)
			rates[s] = append(rates[s], achieved)
		}
	}
	res.add(&figure{ID: "latency_rate", Name: "3. load for the latency test (50% of own single-push capacity)", Unit: "jobs/s", Better: "higher"}, rates[ours], rates[stock])
	res.add(&figure{ID: "latency_p50", Name: "3. enqueue-to-worker-start p50", Unit: "ms", Better: "lower"}, p50[ours], p50[stock])
	res.add(&figure{ID: "latency_p99", Name: "3. enqueue-to-worker-start p99", Unit: "ms", Better: "lower", Note: note}, p99[ours], p99[stock])
	res.add(&figure{ID: "latency_p999", Name: "3. enqueue-to-worker-start p99.9", Unit: "ms", Better: "lower"}, p999[ours], p999[stock])
	if fixedRate > 0 || len(stockCapacity) == 0 {
		return nil
	}
	// The same comparison at the same load: ours pushed at stock's rate (half of stock's capacity).
	same := median(stockCapacity) / 2
	var sameP99 []float64
	for r := range e.rounds {
		lat, achieved, _, err := e.runLatency(ours, same, capDur, dur, warm)
		if err != nil {
			return err
		}
		slices.Sort(lat)
		e.logf("round %d ours at stock's rate %.0f jobs/s: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms", r+1, achieved, percentile(lat, 50), percentile(lat, 99), percentile(lat, 99.9))
		sameP99 = append(sameP99, percentile(lat, 99))
	}
	res.add(&figure{ID: "latency_p99_same_rate", Name: fmt.Sprintf("3. p99 at the same rate for both (%.0f jobs/s)", same), Unit: "ms", Better: "lower",
		Note: "ours pushed at stock's rate (half of stock's median single-push capacity); stock's value is its p99 above"}, sameP99, p99[stock])
	// The light load runs twice as long: at its rate a p99 rests on few samples otherwise.
	return e.latencyLightLoad(res, 2*dur, warm)
}

// lightLoadRate is the push rate of the light-load latency run: a small fraction of either side's
// single-push capacity, so that the cores are mostly idle and the figure shows what a job's path
// through the engine costs rather than how long it waits for a core.
const lightLoadRate = 1000

// latencyLightLoad measures p99 enqueue-to-start of both sides at lightLoadRate.
func (e *env) latencyLightLoad(res *results, dur, warm time.Duration) error {
	p99 := map[side][]float64{}
	for r := range e.rounds {
		for _, s := range order(r) {
			lat, achieved, _, err := e.runLatency(s, lightLoadRate, 0, dur, warm)
			if err != nil {
				return err
			}
			slices.Sort(lat)
			e.logf("round %d %s at %.0f jobs/s: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms", r+1, s, achieved, percentile(lat, 50), percentile(lat, 99), percentile(lat, 99.9))
			p99[s] = append(p99[s], percentile(lat, 99))
		}
	}
	res.add(&figure{ID: "latency_p99_light", Name: fmt.Sprintf("3. p99 at a light load for both (%d jobs/s)", lightLoadRate), Unit: "ms", Better: "lower",
		Note: "the same measurement with the cores mostly idle: the engine's own path, without waiting for a core"}, p99[ours], p99[stock])
	return nil
}

// pushFlatOut pushes single jobs on conns connections for dur and returns how many were pushed.
func pushFlatOut(s side, addr, method string, conns int, dur time.Duration, maxJobs int64, body []byte) (int64, time.Duration, error) {
	clients := make([]*fastClient, conns)
	for i := range clients {
		c, err := dialFast(addr)
		if err != nil {
			return 0, 0, err
		}
		defer c.close()
		clients[i] = c
	}
	var issued, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	deadline := time.Now().Add(dur)
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, err := newTemplate([]*jobsProto.Job{{Job: jobName, Payload: body, Options: &jobsProto.Options{Pipeline: "bench"}}}, true)
			if err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			for time.Now().Before(deadline) && (maxJobs <= 0 || issued.Add(1) <= maxJobs) {
				if err := c.call(method, t.renew(), time.Minute); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("%s: %s: %w", s, method, err) })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	return done.Load(), time.Since(t0), nil
}

// runLatency returns the latencies in milliseconds of the jobs pushed after the warm-up, the push
// rate achieved and the single-push capacity it was derived from.
func (e *env) runLatency(s side, fixedRate float64, capDur, dur, warm time.Duration) (lat []float64, achieved, capacity float64, err error) {
	rep, err := e.newReporter()
	if err != nil {
		return nil, 0, 0, err
	}
	defer rep.close()
	cfg := serverCfg{workers: 2, pollers: e.pollers, report: rep.path, pipelines: []pipeCfg{{name: "bench", priority: 10, prefetch: bigPrefetch, consume: true}}}
	srv, err := e.startServer(s, cfg)
	if err != nil {
		return nil, 0, 0, err
	}
	defer srv.kill()

	const conns = 8
	// Capacity: push flat out, then wait until every job was acked (capDur 0: not measured, the
	// caller gave the rate).
	var capJobs int64
	if capDur > 0 {
		t0 := time.Now()
		capJobs, _, err = pushFlatOut(s, srv.rpc, "jobs.Push", conns, capDur, 0, []byte("capacity"))
		if err != nil {
			return nil, 0, 0, err
		}
		acked, err := srv.waitJobsOK(float64(capJobs), 2*time.Minute)
		if err != nil {
			return nil, 0, 0, err
		}
		capacity = float64(capJobs) / acked.Sub(t0).Seconds()
	}
	rate := capacity / 2
	if fixedRate > 0 {
		rate = fixedRate
	}

	total := int64(rate * (warm + dur).Seconds())
	warmJobs := int64(rate * warm.Seconds())
	period := float64(time.Second) / rate
	var slot atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now().Add(20 * time.Millisecond)
	var wg sync.WaitGroup
	for range conns {
		c, err := dialFast(srv.rpc)
		if err != nil {
			return nil, 0, 0, err
		}
		defer c.close()
		measured, err := newTemplate([]*jobsProto.Job{{Job: jobName, Payload: stampPayload(), Options: &jobsProto.Options{Pipeline: "bench"}}}, true)
		if err != nil {
			return nil, 0, 0, err
		}
		warmup, err := newTemplate([]*jobsProto.Job{{Job: jobName, Payload: []byte("warm-up"), Options: &jobsProto.Options{Pipeline: "bench"}}}, true)
		if err != nil {
			return nil, 0, 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := slot.Add(1) - 1
				if i >= total {
					return
				}
				if wait := time.Until(start.Add(time.Duration(float64(i) * period))); wait > 0 {
					time.Sleep(wait)
				}
				t := measured
				if i < warmJobs {
					t = warmup
				}
				body := t.renew()
				t.stamp(time.Now().UnixNano())
				if err := c.call("jobs.Push", body, time.Minute); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("%s: Push: %w", s, err) })
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return nil, 0, 0, firstErr
	}
	lines, err := rep.wait(capJobs+total, time.Minute)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", s, err)
	}
	lat = make([]float64, 0, total-warmJobs)
	for _, l := range lines {
		v, ok := strings.CutPrefix(l.body, "t:")
		if !ok {
			continue
		}
		sent, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		lat = append(lat, float64(l.arrived-sent)/1e6)
	}
	return lat, float64(total) / elapsed.Seconds(), capacity, nil
}

// scenarioMemory is scenario 5: the server's RSS with jobs of 100-byte payloads queued in a
// pipeline that is not consumed. Both sides hold 100k (the stock memory driver cannot hold more: its
// pipeline buffer is a channel of 100,000 and further pushes block); ours is also measured at 1M.
func (e *env) scenarioMemory(res *results) error {
	cfg := serverCfg{workers: 2, pipelines: []pipeCfg{{name: "bench", priority: 10, prefetch: bigPrefetch}}}
	per, rss := map[side][]float64{}, map[side][]float64{}
	for r := range e.rounds {
		for _, s := range order(r) {
			b, total, err := e.runMemory(s, cfg, 100_000)
			if err != nil {
				return err
			}
			e.logf("round %d %s: 100k jobs: %.0f bytes/job beyond the payload, RSS %.1f MiB", r+1, s, b, total/(1<<20))
			per[s] = append(per[s], b)
			rss[s] = append(rss[s], total/(1<<20))
		}
	}
	res.add(&figure{ID: "memory_rss_100k", Name: "5. server RSS with 100k jobs queued", Unit: "MiB", Better: "lower"}, rss[ours], rss[stock])
	res.add(&figure{ID: "memory_bytes_per_job", Name: "5. bytes per queued job beyond payload (100k)", Unit: "B", Better: "lower",
		Note: "(RSS with the jobs queued - RSS before the push) / jobs - 100-byte payload; server process only, pipeline not consumed"}, per[ours], per[stock])
	if e.quick {
		return nil
	}
	per1m, rss1m := []float64{}, []float64{}
	for r := range e.rounds {
		b, total, err := e.runMemory(ours, cfg, 1_000_000)
		if err != nil {
			return err
		}
		e.logf("round %d ours: 1M jobs: %.0f bytes/job beyond the payload, RSS %.1f MiB", r+1, b, total/(1<<20))
		per1m = append(per1m, b)
		rss1m = append(rss1m, total/(1<<20))
	}
	res.add(&figure{ID: "memory_rss_1m", Name: "5. server RSS with 1M jobs queued (stock cannot)", Unit: "MiB", Better: "lower"}, rss1m, nil)
	res.add(&figure{ID: "memory_bytes_per_job_1m", Name: "5. bytes per queued job beyond payload (1M)", Unit: "B", Better: "lower",
		Note: "stock refuses the 100,001st job of a pipeline that is not consumed (the push blocks until jobs.timeout)"}, per1m, nil)
	return nil
}

func (e *env) runMemory(s side, cfg serverCfg, n int) (perJob, rss float64, err error) {
	srv, err := e.startServer(s, cfg)
	if err != nil {
		return 0, 0, err
	}
	defer srv.kill()
	time.Sleep(500 * time.Millisecond)
	before, err := srv.rssBytes()
	if err != nil {
		return 0, 0, err
	}
	if err := pushBatches(s, srv.rpc, n, "bench"); err != nil {
		return 0, 0, err
	}
	// Let the garbage of the push be collected and returned the way the runtime does when idle.
	time.Sleep(2 * time.Second)
	after, err := srv.rssBytes()
	if err != nil {
		return 0, 0, err
	}
	return float64(after-before)/float64(n) - payloadSize, float64(after), nil
}

// scenarioShutdown is scenario 6: SIGTERM to an idle server (its pipeline consumed, its jobs done),
// timed until the process exits.
func (e *env) scenarioShutdown(res *results) error {
	cfg := serverCfg{workers: 2, pipelines: []pipeCfg{{name: "bench", priority: 10, prefetch: bigPrefetch, consume: true}}}
	note := "RoadRunner's default endure.grace_period (30 s) on both sides"
	if e.quick {
		cfg.grace = "2s"
		note = "quick run: endure.grace_period is 2s on both sides, so stock's figure is capped near 2-3 s (with the default 30 s it takes about 31.5 s)"
	}
	took := map[side][]float64{}
	for r := range e.rounds {
		for _, s := range order(r) {
			d, err := e.runShutdown(s, cfg)
			if err != nil {
				return err
			}
			e.logf("round %d %s: idle shutdown %.3f s", r+1, s, d)
			took[s] = append(took[s], d)
		}
	}
	res.add(&figure{ID: "shutdown_idle", Name: "6. idle shutdown after SIGTERM", Unit: "s", Better: "lower", Note: note}, took[ours], took[stock])
	return nil
}

func (e *env) runShutdown(s side, cfg serverCfg) (float64, error) {
	srv, err := e.startServer(s, cfg)
	if err != nil {
		return 0, err
	}
	defer srv.kill()
	if err := pushBatches(s, srv.rpc, batchSize, "bench"); err != nil {
		return 0, err
	}
	if _, err := srv.waitJobsOK(batchSize, time.Minute); err != nil {
		return 0, err
	}
	time.Sleep(300 * time.Millisecond)
	d, err := srv.terminate(2 * time.Minute)
	if err != nil {
		return 0, err
	}
	return d.Seconds(), nil
}

// scenarioPriority is scenario 7: 10 pipelines with priorities 1..10, all consumed by one echo
// worker, saturated by PushBatch (every batch interleaves the pipelines). The worker reports the
// order jobs start in; a violation is a job that starts after a later-pushed job of its own pipeline
// (all jobs of a pipeline have the same priority, so they must start first-in, first-out).
func (e *env) scenarioPriority(res *results) error {
	perPipe := 5_000
	if e.quick {
		perPipe = 1_000
	}
	viol := map[side][]float64{}
	for r := range e.rounds {
		for _, s := range order(r) {
			v, err := e.runPriority(s, perPipe)
			if err != nil {
				return err
			}
			e.logf("round %d %s: %d FIFO violations", r+1, s, v)
			viol[s] = append(viol[s], float64(v))
		}
	}
	res.add(&figure{ID: "priority_violations", Name: fmt.Sprintf("7. FIFO violations within a pipeline (10x%dk jobs)", perPipe/1000), Unit: "jobs", Better: "lower",
		Note: "10 pipelines, priorities 1..10, one echo worker, jobs.num_pollers: 1 (stock ignores the key and runs workers+2 = 3 pollers); a violation is a job that started after a later-pushed job of the same pipeline"}, viol[ours], viol[stock])
	return nil
}

func (e *env) runPriority(s side, perPipe int) (violations int, err error) {
	rep, err := e.newReporter()
	if err != nil {
		return 0, err
	}
	defer rep.close()
	const pipes = 10
	cfg := serverCfg{workers: 1, pollers: 1, report: rep.path}
	for i := range pipes {
		cfg.pipelines = append(cfg.pipelines, pipeCfg{name: fmt.Sprintf("prio-%d", i), priority: i + 1, prefetch: bigPrefetch, consume: true})
	}
	srv, err := e.startServer(s, cfg)
	if err != nil {
		return 0, err
	}
	defer srv.kill()
	c, err := dial(srv.rpc)
	if err != nil {
		return 0, err
	}
	defer c.close()

	// Every batch holds batchSize/pipes jobs of each pipeline, round robin.
	g := newIDs()
	req := &jobsProto.PushBatchRequest{Jobs: make([]*jobsProto.Job, batchSize)}
	opts := make([]*jobsProto.Options, pipes)
	for i := range opts {
		opts[i] = &jobsProto.Options{Pipeline: fmt.Sprintf("prio-%d", i)}
	}
	seq := make([]int, pipes)
	total := perPipe * pipes
	for pushed := 0; pushed < total; pushed += batchSize {
		for k := range req.Jobs {
			p := k % pipes
			req.Jobs[k] = &jobsProto.Job{Job: jobName, Id: g.next(), Options: opts[p], Payload: []byte(fmt.Sprintf("o:%d:%d", p, seq[p]))}
			seq[p]++
		}
		if err := c.callTimeout(time.Minute, func() error { return c.pushBatch(req) }); err != nil {
			return 0, fmt.Errorf("%s: PushBatch: %w", s, err)
		}
	}
	lines, err := rep.wait(int64(total), 2*time.Minute)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", s, err)
	}
	slices.SortStableFunc(lines, func(a, b report) int { return int(a.arrived - b.arrived) })

	maxSeen := make([]int, pipes)
	for i := range maxSeen {
		maxSeen[i] = -1
	}
	for _, l := range lines {
		var p, n int
		if _, err := fmt.Sscanf(l.body, "o:%d:%d", &p, &n); err != nil || p < 0 || p >= pipes {
			continue
		}
		if n < maxSeen[p] {
			violations++
		} else {
			maxSeen[p] = n
		}
	}
	return violations, nil
}
