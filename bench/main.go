// Command bench measures this repository's jobs plugin side by side with the stock RoadRunner jobs
// plugin (jobs/v5 v5.1.9 + memory/v5 v5.2.9, boltdb/v5 v5.1.9 for scenario 8). Each side is a
// separate server process built from the same stock plugins (cmd/rr-ours, cmd/rr-stock); the
// scenarios run on both, alternating, and the
// results go to stdout (a table) and results/latest.json. See README.md for what each figure means.
//
//	go run .          # the full set, about 14 minutes
//	go run . -quick   # a smoke run, about a minute once the binaries are built
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// env is what every scenario needs: the built binaries, a scratch directory and the run settings.
type env struct {
	servers    map[side]string
	echoWorker string
	// barePool is the physical-limit loop of scenario 4 (cmd/bare-pool).
	barePool  string
	phpWorker string // "" when php is not installed
	tmp       string
	seq       int

	quick  bool
	rounds int
	// order gives the side that goes first in round r (A/B alternation).
	verbose bool
	// profileDir receives a CPU profile of every server (-cpuprofile).
	profileDir string
	// pollers is jobs.num_pollers for the throughput and latency scenarios (-pollers; 0 = default).
	pollers int
}

// order returns the two sides in the order round r runs them: stock first on even rounds.
func order(r int) []side {
	if r%2 == 0 {
		return []side{stock, ours}
	}
	return []side{ours, stock}
}

func main() {
	quick := flag.Bool("quick", false, "a short smoke run (about a minute): fewer jobs, 1 round, short durations")
	rounds := flag.Int("rounds", 3, "A/B rounds per scenario (the full run needs at least 3)")
	out := flag.String("out", "", "JSON results file (default results/latest.json next to this program; quick runs write results/quick.json)")
	only := flag.String("only", "", "comma-separated scenarios to run (pushbatch (with the limit of scenario 4),php,push,latency,memory,shutdown,priority,boltdb,amqp,nats); default all")
	noPHP := flag.Bool("no-php", false, "skip the PHP-worker scenario")
	waitLoad := flag.Float64("wait-load", 0, "before measuring, wait (up to 5 min) until the 1-minute load average is below this (0 = do not wait)")
	verbose := flag.Bool("v", false, "print every round as it finishes")
	latencyRate := flag.Float64("latency-rate", 0, "push rate of the latency scenario in jobs/s (default: 50% of each side's own single-push capacity, measured on the same server right before)")
	keep := flag.Bool("keep", false, "keep the scratch directory (server configs and logs) and print its path")
	pollers := flag.Int("pollers", 0, "jobs.num_pollers for scenarios 1 and 3 (0: the default, workers + 2; stock always uses workers + 2)")
	profileDir := flag.String("cpuprofile", "", "write a CPU profile of every server process into this directory (for finding what limits a figure)")
	flag.Parse()

	if *quick {
		*rounds = 1
	}
	if *rounds < 1 {
		fatal(fmt.Errorf("-rounds must be >= 1"))
	}
	root, err := repoRoot()
	if err != nil {
		fatal(err)
	}
	if *out == "" {
		name := "latest.json"
		if *quick {
			name = "quick.json"
		}
		*out = filepath.Join(root, "bench", "results", name)
	}

	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			fatal(fmt.Errorf("-cpuprofile: %w", err))
		}
	}
	tmp, err := os.MkdirTemp("", "rrjobs-bench-")
	if err != nil {
		fatal(err)
	}
	if *keep {
		defer fmt.Fprintln(os.Stderr, "scratch directory kept:", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	e := &env{servers: map[side]string{}, tmp: tmp, quick: *quick, rounds: *rounds, verbose: *verbose, profileDir: *profileDir, pollers: *pollers}
	fmt.Fprintln(os.Stderr, "building rr-ours, rr-stock and the echo worker...")
	if err := e.build(root); err != nil {
		fatal(err)
	}
	if !*noPHP {
		if _, err := exec.LookPath("php"); err == nil {
			e.phpWorker = filepath.Join(root, "tests", "php", "worker.php")
		} else {
			fmt.Fprintln(os.Stderr, "php not found: skipping the PHP-worker scenario")
		}
	}

	if *waitLoad > 0 {
		waitForLoad(*waitLoad, 5*time.Minute)
	}

	res := &results{
		Started:       time.Now().UTC().Format(time.RFC3339),
		Cores:         runtime.NumCPU(),
		GoVersion:     runtime.Version(),
		Quick:         *quick,
		Rounds:        *rounds,
		LoadAvgBefore: loadAvg(),
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	run := func(name string) bool { return len(want) == 0 || want[name] }

	started := time.Now()
	steps := []struct {
		name string
		f    func() error
	}{
		{"pushbatch", func() error { return e.scenarioPushBatch(res) }},
		{"php", func() error {
			if e.phpWorker == "" {
				return nil
			}
			return e.scenarioPHP(res)
		}},
		{"push", func() error { return e.scenarioPush(res) }},
		{"latency", func() error { return e.scenarioLatency(res, *latencyRate) }},
		{"memory", func() error { return e.scenarioMemory(res) }},
		{"shutdown", func() error { return e.scenarioShutdown(res) }},
		{"priority", func() error { return e.scenarioPriority(res) }},
		{"boltdb", func() error { return e.scenarioDurable(res, boltDBDriver) }},
		{"amqp", func() error { return e.scenarioDurable(res, amqpDriver) }},
		{"nats", func() error { return e.scenarioDurable(res, natsDriver) }},
	}
	for _, st := range steps {
		if !run(st.name) {
			continue
		}
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "== %s\n", st.name)
		if err := st.f(); err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", st.name, err))
			fmt.Fprintf(os.Stderr, "   %s failed: %v\n", st.name, err)
		}
		fmt.Fprintf(os.Stderr, "   (%s)\n", time.Since(t0).Round(100*time.Millisecond))
	}
	res.finish(started)

	fmt.Print(res.table())
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fatal(err)
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		fatal(err)
	}
	if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "results written to %s\n", *out)
	if len(res.Errors) > 0 {
		os.Exit(1)
	}
}

// build compiles both servers, the bare pool loop and the echo worker into the scratch directory.
func (e *env) build(root string) error {
	benchDir := filepath.Join(root, "bench")
	e.barePool = filepath.Join(e.tmp, "bare-pool")
	if err := goBuild(benchDir, e.barePool, "./cmd/bare-pool"); err != nil {
		return err
	}
	for s, pkg := range map[side]string{ours: "./cmd/rr-ours", stock: "./cmd/rr-stock"} {
		bin := filepath.Join(e.tmp, "rr-"+string(s))
		if err := goBuild(benchDir, bin, pkg); err != nil {
			return err
		}
		e.servers[s] = bin
	}
	e.echoWorker = filepath.Join(e.tmp, "echoworker")
	// tests/ is its own module: build the worker from there.
	return goBuild(filepath.Join(root, "tests"), e.echoWorker, "./echoworker")
}

func goBuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (in %s): %v\n%s", pkg, dir, err, b)
	}
	return nil
}

// repoRoot finds the repository root (the directory holding bench/ and tests/echoworker).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if fileExists(filepath.Join(d, "tests", "echoworker", "main.go")) && fileExists(filepath.Join(d, "bench", "go.mod")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("run from inside the repository (no tests/echoworker above %s)", dir)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() []float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	var a, b, c float64
	if _, err := fmt.Sscanf(string(data), "%f %f %f", &a, &b, &c); err != nil {
		return nil
	}
	return []float64{a, b, c}
}

// waitForLoad polls the 1-minute load average until it is below max or limit passes.
func waitForLoad(maxLoad float64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		la := loadAvg()
		if len(la) == 0 || la[0] < maxLoad {
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "load average still %.2f after %s; measuring anyway\n", la[0], limit)
			return
		}
		fmt.Fprintf(os.Stderr, "load average %.2f >= %.2f, waiting...\n", la[0], maxLoad)
		time.Sleep(15 * time.Second)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func (e *env) logf(format string, args ...any) {
	if e.verbose {
		fmt.Fprintf(os.Stderr, "   "+format+"\n", args...)
	}
}
