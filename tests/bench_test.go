package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// echoConfig runs the memory driver with Go echo workers, so the benchmark measures the jobs engine.
// echoServer is the part every benchmark config shares: Go echo workers (ECHO_WORKER) over pipes,
// quiet logs.
const echoServer = `
version: "3"
rpc:
  listen: tcp://{{.RPC}}
server:
  command: "ECHO_WORKER"
  relay: pipes
logs:
  mode: production
  level: error
`

const echoConfig = echoServer + `jobs:
  pool:
    num_workers: 2
  consume: ["bench"]
  pipelines:
    bench:
      driver: memory
`

// echoBoltConfig runs one boltdb pipeline with Go echo workers, so the benchmark measures the
// driver's durable throughput, not PHP.
const echoBoltConfig = echoServer + `jobs:
  num_pollers: NUM_POLLERS
  pool:
    num_workers: 2
  consume: ["bench"]
  pipelines:
    bench:
      driver: boltdb
      config:
        file: "{{.Dir}}/bench.db"
`

// echoPostgresConfig is echoBoltConfig on the postgres driver (@DSN@ and @TABLE@ filled by pgConfig).
const echoPostgresConfig = echoServer + `postgres:
  dsn: "@DSN@"
  max_conns: 8
jobs:
  num_pollers: NUM_POLLERS
  pool:
    num_workers: 2
  consume: ["bench"]
  pipelines:
    bench:
      driver: postgres
      config:
        table: "@TABLE@"
        prefetch: 100
`

// BenchmarkEndToEnd pushes b.N batches of 1000 jobs and waits until every job is acknowledged.
// It reports accepted jobs/s (push side) and processed jobs/s (push until the last ack).
func BenchmarkEndToEnd(b *testing.B) {
	const batch = 1000
	s := helpers.Start(b, strings.ReplaceAll(echoConfig, "ECHO_WORKER", buildEchoWorker(b)))
	c, err := helpers.Dial(s.RPC)
	require.NoError(b, err)
	defer c.Close()

	jobs := make([]helpers.Job, batch)
	b.ResetTimer()
	start := time.Now()
	var pushTime time.Duration
	for i := 0; i < b.N; i++ {
		for j := range jobs {
			jobs[j] = helpers.Job{Pipeline: "bench", ID: strconv.Itoa(i) + "-" + strconv.Itoa(j), Payload: "x"}
		}
		t0 := time.Now()
		require.NoError(b, c.PushBatch(jobs...))
		pushTime += time.Since(t0)
	}
	total := float64(b.N * batch)
	helpers.Eventually(b, 5*time.Minute, func() error {
		st, err := c.Stat()
		if err != nil {
			return err
		}
		if st["bench"].GetActive() != 0 || st["bench"].GetReserved() != 0 {
			return errNotDrained
		}
		return nil
	}, "all jobs processed")
	elapsed := time.Since(start)
	b.ReportMetric(total/pushTime.Seconds(), "accepted-jobs/s")
	b.ReportMetric(total/elapsed.Seconds(), "processed-jobs/s")
}

// BenchmarkBoltDBEndToEnd measures durable push+consume on boltdb.
func BenchmarkBoltDBEndToEnd(b *testing.B) {
	benchmarkDurableEndToEnd(b, echoBoltConfig)
}

// BenchmarkPostgresEndToEnd measures durable push+consume on PostgreSQL (the local server).
func BenchmarkPostgresEndToEnd(b *testing.B) {
	dsn := pgTestDSN()
	requirePostgres(b, dsn)
	benchmarkDurableEndToEnd(b, pgConfig(echoPostgresConfig, dsn, pgTable(b, dsn)))
}

// benchmarkDurableEndToEnd: 8 producers push b.N batches of 500 jobs each over their own
// connections while 2 Go echo workers consume; it reports jobs/s accepted (push side) and
// processed (first push to the drain). The jobs plugin pushes a batch's jobs one by one, each
// waiting for its commit, and each poller waits for its ack's commit, so throughput comes from
// concurrent producers and pollers sharing commits. BENCH_POLLERS sets jobs.num_pollers (default
// 4, the plugin's num_workers+2). cfg has ECHO_WORKER and NUM_POLLERS placeholders.
func benchmarkDurableEndToEnd(b *testing.B, cfg string) {
	const (
		producers = 8
		batch     = 500
	)
	worker := buildEchoWorker(b)
	pollers := os.Getenv("BENCH_POLLERS")
	if pollers == "" {
		pollers = "4" // the default: num_workers + 2
	}
	s := helpers.Start(b, strings.NewReplacer("ECHO_WORKER", worker, "NUM_POLLERS", pollers).Replace(cfg))
	clients := make([]*helpers.Client, producers)
	for i := range clients {
		var err error
		clients[i], err = helpers.Dial(s.RPC)
		require.NoError(b, err)
		defer clients[i].Close()
	}

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jobs := make([]helpers.Job, batch)
			for i := p; i < b.N; i += producers {
				for j := range jobs {
					jobs[j] = helpers.Job{Pipeline: "bench", ID: strconv.Itoa(i) + "-" + strconv.Itoa(j), Payload: "x"}
				}
				if err := clients[p].PushBatch(jobs...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	pushed := time.Since(start)
	helpers.Eventually(b, 5*time.Minute, func() error {
		st, err := clients[0].Stat()
		if err != nil {
			return err
		}
		if st["bench"].GetActive() != 0 || st["bench"].GetReserved() != 0 {
			return errNotDrained
		}
		return nil
	}, "all jobs processed")
	elapsed := time.Since(start)
	total := float64(b.N * batch)
	b.ReportMetric(total/pushed.Seconds(), "accepted-jobs/s")
	b.ReportMetric(total/elapsed.Seconds(), "processed-jobs/s")
}

// buildEchoWorker builds tests/echoworker and returns the binary's path.
func buildEchoWorker(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "echoworker")
	out, err := exec.Command("go", "build", "-o", bin, "./echoworker").CombinedOutput()
	require.NoError(b, err, "%s", out)
	return bin
}

var errNotDrained = errorString("jobs still queued")

type errorString string

func (e errorString) Error() string { return string(e) }
