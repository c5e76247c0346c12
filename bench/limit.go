package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"github.com/rrjobs/jobs/bench/internal/barepool"
)

// runLimit measures scenario 4, the physical limit of the machine for this job shape: the same echo
// workers, the same pool package and as many goroutines as the jobs plugins' pollers (num_workers +
// 2), driven by a bare loop calling static_pool.Exec with a job-sized context and body: no RPC, no
// queue, no driver (cmd/bare-pool, a process of its own like the servers). Scenario 1 reports its
// end-to-end rates as a fraction of it. It returns jobs/s and the loop process's CPU per job in µs.
func (e *env) runLimit(workers int, dur time.Duration) (rate, cpuPerJob float64, err error) {
	cmd := exec.Command(e.barePool, "-worker", e.echoWorker, "-workers", strconv.Itoa(workers),
		"-loops", strconv.Itoa(workers+2), "-duration", dur.String(), "-body", strconv.Itoa(len(payload100)))
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return 0, 0, fmt.Errorf("bare pool: %v: %s", err, ee.Stderr)
		}
		return 0, 0, fmt.Errorf("bare pool: %w", err)
	}
	var res barepool.Result
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, 0, fmt.Errorf("bare pool: reading %q: %w", out, err)
	}
	return float64(res.Jobs) / res.Seconds, res.CPUMicrosPJ, nil
}
