package main

import (
	"context"
	"encoding/json"
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

// runLimit measures scenario 4, the physical limit of the machine for this job shape: the same echo
// workers, the same pool package and as many goroutines as the jobs plugins' pollers (num_workers +
// 2), driven by a bare loop calling static_pool.Exec with a job-sized context and body: no RPC, no
// queue, no driver. Scenario 1 reports its end-to-end rates as a fraction of it.
func (e *env) runLimit(workers int, dur time.Duration) (float64, error) {
	cfg := &pool.Config{NumWorkers: uint64(workers), AllocateTimeout: time.Minute, DestroyTimeout: time.Minute} //nolint:gosec
	command := func([]string) *exec.Cmd {
		cmd := exec.Command(e.echoWorker)
		cmd.Env = append(os.Environ(), "RR_RELAY=pipes", "RR_MODE=jobs")
		return cmd
	}
	log := zap.NewNop()
	p, err := staticPool.NewPool(context.Background(), command, pipe.NewPipeFactory(log), cfg, log)
	if err != nil {
		return 0, fmt.Errorf("bare pool: %w", err)
	}
	defer p.Destroy(context.Background())

	// A job context as the memory drivers build it: id, name, driver, tracing headers, pipeline.
	jobCtx, err := json.Marshal(map[string]any{
		"id": newIDs().next(), "job": jobName, "driver": "memory", "queue": "bench", "pipeline": "bench",
		"headers": map[string][]string{
			"Traceparent":   {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			"Uber-Trace-Id": {"4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1"},
		},
	})
	if err != nil {
		return 0, err
	}

	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	var done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	deadline := time.Now().Add(dur)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range workers + 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				ch, err := p.Exec(context.Background(), &payload.Payload{Context: jobCtx, Body: payload100, Codec: frame.CodecRaw}, nil)
				if err == nil {
					if r := <-ch; r == nil || r.Error() != nil {
						err = fmt.Errorf("bad reply")
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return 0, fmt.Errorf("bare pool: %w", firstErr)
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	e.logf("bare pool loop: %.1f µs CPU per job in the loop's process", float64(cpu.Microseconds())/float64(done.Load()))
	return float64(done.Load()) / elapsed.Seconds(), nil
}
