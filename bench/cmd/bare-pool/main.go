// Command bare-pool measures the physical limit of scenario 4: the echo workers driven by a bare
// loop over the pool package (static_pool.Exec), with no RPC, no queue and no driver. It runs as a
// process of its own, like the two servers, so that its figure is taken under the same conditions
// as theirs (its own heap and garbage collector, its own threads) and not inside the benchmark
// process, which holds the producer's buffers.
//
// Usage: bare-pool -worker PATH -workers N -loops N -duration D
// It prints one JSON line: {"jobs": N, "seconds": S, "cpu_us_per_job": C}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/rrjobs/jobs/bench/internal/barepool"
)

func main() {
	worker := flag.String("worker", "", "the echo worker binary")
	workers := flag.Int("workers", 2, "number of workers")
	loops := flag.Int("loops", 4, "goroutines calling Exec (the plugins run workers + 2 pollers)")
	dur := flag.Duration("duration", 3*time.Second, "how long to run")
	body := flag.Int("body", 100, "job body size in bytes")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the loop to this file")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bare-pool:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	res, err := barepool.Run(*worker, *workers, *loops, *dur, make([]byte, *body))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bare-pool:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}
