package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/rpc"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
	goridgeRPC "github.com/roadrunner-server/goridge/v3/pkg/rpc"
)

// side is one of the two servers under test.
type side string

const (
	ours  side = "ours"
	stock side = "stock"
)

// pipeCfg is one pipeline of a server config.
type pipeCfg struct {
	name     string
	priority int
	prefetch int
	consume  bool
	driver   string // "" = memory
	// config holds driver keys of the pipeline's config section, values as YAML scalars.
	config map[string]string
}

// serverCfg is what differs between runs; everything else is the same for both sides.
type serverCfg struct {
	workers   int
	php       bool   // PHP workers (tests/php/worker.php) instead of the Go echo worker
	report    string // ECHOWORKER_REPORT socket for the echo workers ("" = off)
	pollers   int    // jobs.num_pollers (0 = default; stock ignores the key and uses workers+2)
	grace     string // the graceful shutdown timeout (endure.grace_period; "" = RoadRunner's default, 30s)
	pipelines []pipeCfg
	// global is top-level YAML for the drivers (for example an amqp section), the same on both sides.
	global string
}

// server is one running benchmark server process.
type server struct {
	side    side
	cmd     *exec.Cmd
	rpc     string
	metrics string
	done    chan struct{}
	waitErr error
	logPath string
	// profiling: the server writes a CPU profile on SIGUSR1 (-cpuprofile).
	profiling bool
}

// yaml renders the .rr.yaml of cfg. Both sides get exactly the same text.
func (e *env) yaml(cfg serverCfg, rpcAddr, metricsAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: \"3\"\nrpc:\n  listen: tcp://%s\n", rpcAddr)
	if cfg.php {
		fmt.Fprintf(&b, "server:\n  command: \"php %s\"\n  relay: pipes\n", e.phpWorker)
	} else {
		fmt.Fprintf(&b, "server:\n  command: \"%s\"\n  relay: pipes\n", e.echoWorker)
	}
	if cfg.report != "" {
		fmt.Fprintf(&b, "  env:\n    ECHOWORKER_REPORT: %s\n", cfg.report)
	}
	b.WriteString("logs:\n  mode: production\n  level: error\n")
	fmt.Fprintf(&b, "metrics:\n  address: %s\n", metricsAddr)
	b.WriteString(cfg.global)
	b.WriteString("jobs:\n")
	if cfg.pollers > 0 {
		fmt.Fprintf(&b, "  num_pollers: %d\n", cfg.pollers)
	}
	fmt.Fprintf(&b, "  pool:\n    num_workers: %d\n    allocate_timeout: 60s\n    destroy_timeout: 60s\n", cfg.workers)
	var consume []string
	for _, p := range cfg.pipelines {
		if p.consume {
			consume = append(consume, strconv.Quote(p.name))
		}
	}
	fmt.Fprintf(&b, "  consume: [%s]\n  pipelines:\n", strings.Join(consume, ", "))
	for _, p := range cfg.pipelines {
		driver := p.driver
		if driver == "" {
			driver = "memory"
		}
		fmt.Fprintf(&b, "    %s:\n      driver: %s\n      config:\n", p.name, driver)
		keys := make([]string, 0, len(p.config))
		for k := range p.config {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "        %s: %s\n", k, p.config[k])
		}
		fmt.Fprintf(&b, "        priority: %d\n        prefetch: %d\n", p.priority, p.prefetch)
	}
	return b.String()
}

// startServer writes the config, starts the side's binary and waits until its workers are up and
// its RPC answers.
func (e *env) startServer(s side, cfg serverCfg) (*server, error) {
	rpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	e.seq++
	dir := filepath.Join(e.tmp, fmt.Sprintf("%03d-%s", e.seq, s))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, ".rr.yaml")
	if err := os.WriteFile(cfgPath, []byte(e.yaml(cfg, rpcAddr, metricsAddr)), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"-c", cfgPath}
	if cfg.grace != "" {
		args = append(args, "-grace", cfg.grace)
	}
	cmd := exec.Command(e.servers[s], args...)
	cmd.Dir = dir
	if e.profileDir != "" {
		cmd.Env = append(os.Environ(), "RRBENCH_CPUPROFILE="+filepath.Join(e.profileDir, fmt.Sprintf("%03d-%s.pprof", e.seq, s)))
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Own process group: a failed run can take the workers down with the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s server: %w", s, err)
	}
	srv := &server{side: s, cmd: cmd, rpc: rpcAddr, metrics: metricsAddr, done: make(chan struct{}), logPath: logPath, profiling: e.profileDir != ""}
	go func() {
		srv.waitErr = cmd.Wait()
		logFile.Close()
		close(srv.done)
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-srv.done:
			return nil, fmt.Errorf("%s server exited during start (%v): %s", s, srv.waitErr, tail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			srv.kill()
			return nil, fmt.Errorf("%s server did not get ready in 60 s: %s", s, tail(logPath))
		}
		if n, err := srv.metric("rr_jobs_total_workers"); err == nil && int(n) == cfg.workers {
			if c, err := dial(rpcAddr); err == nil {
				_, lerr := c.list()
				c.close()
				if lerr == nil {
					return srv, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the server and its workers at once (measurements that do not time the shutdown).
func (s *server) kill() {
	if s.profiling && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGUSR1)
		time.Sleep(300 * time.Millisecond)
	}
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// terminate sends SIGTERM and returns how long the server took to exit.
func (s *server) terminate(limit time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-s.done:
		took := time.Since(start)
		// Workers normally exit with the server; make sure none is left behind.
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		if s.waitErr != nil {
			return took, fmt.Errorf("%s server exited with %v: %s", s.side, s.waitErr, tail(s.logPath))
		}
		return took, nil
	case <-time.After(limit):
		s.kill()
		return 0, fmt.Errorf("%s server did not exit within %s of SIGTERM", s.side, limit)
	}
}

// rssBytes reads VmRSS of the server process (its workers are separate processes, not counted).
func (s *server) rssBytes() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS line")
}

// cpuSeconds is the user+system CPU time the server process has used so far.
func (s *server) cpuSeconds() float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

var metricsClient = &http.Client{Timeout: 5 * time.Second}

// metric scrapes one unlabelled sample from the server's /metrics.
func (s *server) metric(name string) (float64, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+s.metrics+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	// Uncompressed: gzip would cost the server more CPU than the scrape itself.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := metricsClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	prefix := name + " "
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// waitJobsOK polls rr_jobs_jobs_ok until it reaches n and returns when it did.
func (s *server) waitJobsOK(n float64, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	var last float64
	for {
		v, err := s.metric("rr_jobs_jobs_ok")
		now := time.Now()
		if err == nil {
			last = v
			if v >= n {
				return now, nil
			}
		}
		if now.After(deadline) {
			return now, fmt.Errorf("%s: only %.0f of %.0f jobs acked after %s", s.side, last, n, limit)
		}
		select {
		case <-s.done:
			return now, fmt.Errorf("%s server exited: %s", s.side, tail(s.logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// tail returns the end of a log file for error messages.
func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return strings.TrimSpace(string(data))
}

// client speaks goridge RPC with protobuf bodies, as the PHP client does.
type client struct {
	c *rpc.Client
}

func dial(addr string) (*client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &client{c: rpc.NewClientWithCodec(goridgeRPC.NewClientCodec(conn))}, nil
}

func (c *client) close() { _ = c.c.Close() }

func (c *client) pushBatch(req *jobsProto.PushBatchRequest) error {
	return c.c.Call("jobs.PushBatch", req, &jobsProto.Empty{})
}

func (c *client) list() ([]string, error) {
	out := &jobsProto.Pipelines{}
	err := c.c.Call("jobs.List", &jobsProto.Empty{}, out)
	return out.GetPipelines(), err
}

// callTimeout runs f, giving up (and closing the client) after limit so a blocked push cannot hang
// the benchmark.
func (c *client) callTimeout(limit time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		c.close()
		<-done
		return fmt.Errorf("RPC call did not return within %s", limit)
	}
}

// ids makes unique 36-character ids shaped like the PHP client's UUIDs.
type ids struct {
	prefix uint32
	n      uint64
}

func newIDs() *ids { return &ids{prefix: uint32(time.Now().UnixNano())} } //nolint:gosec

func (g *ids) next() string {
	g.n++
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", g.prefix, g.n)
}
