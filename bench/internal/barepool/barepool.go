// Package barepool is the physical-limit loop of scenario 4 (run by cmd/bare-pool): the echo
// workers driven by a bare loop over the pool package (static_pool.Exec), with no RPC, no queue and
// no driver.
package barepool

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/roadrunner-server/pool/ipc/pipe"
	"github.com/roadrunner-server/pool/payload"
	"github.com/roadrunner-server/pool/pool"
	staticPool "github.com/roadrunner-server/pool/pool/static_pool"
	"go.uber.org/zap"
)

// jobContext is a job context as the memory drivers build it: id, name, driver, tracing headers,
// pipeline.
var jobContext = []byte(`{"id":"0190f0b8-7d4e-7c2a-9b1e-5f3a2c4d6e8f","job":"bench.job","driver":"memory",` +
	`"headers":{"Traceparent":["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],` +
	`"Uber-Trace-Id":["4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1"]},"queue":"bench","pipeline":"bench"}`)

// Result is what bare-pool prints as one JSON line and the benchmark reads.
type Result struct {
	Jobs        int64   `json:"jobs"`
	Seconds     float64 `json:"seconds"`
	CPUMicrosPJ float64 `json:"cpu_us_per_job"`
}

// Run drives workers echo workers (the binary at worker) with loops goroutines calling Exec for dur,
// each job carrying a job-sized context and body.
func Run(worker string, workers, loops int, dur time.Duration, body []byte) (*Result, error) {
	cfg := &pool.Config{NumWorkers: uint64(workers), AllocateTimeout: time.Minute, DestroyTimeout: time.Minute} //nolint:gosec
	command := func([]string) *exec.Cmd {
		cmd := exec.Command(worker)
		cmd.Env = append(os.Environ(), "RR_RELAY=pipes", "RR_MODE=jobs")
		return cmd
	}
	log := zap.NewNop()
	p, err := staticPool.NewPool(context.Background(), command, pipe.NewPipeFactory(log), cfg, log)
	if err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	defer p.Destroy(context.Background())

	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	var done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	deadline := time.Now().Add(dur)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range loops {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := execOne(p, body); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return nil, firstErr
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	n := done.Load()
	return &Result{Jobs: n, Seconds: elapsed.Seconds(), CPUMicrosPJ: float64(cpu.Microseconds()) / float64(n)}, nil
}

// execOne runs one job through the pool and checks that a reply came back.
func execOne(p *staticPool.Pool, body []byte) error {
	ch, err := p.Exec(context.Background(), &payload.Payload{Context: jobContext, Body: body, Codec: frame.CodecRaw}, nil)
	if err != nil {
		return err
	}
	if r := <-ch; r == nil || r.Error() != nil {
		return fmt.Errorf("bad reply from the worker")
	}
	return nil
}
