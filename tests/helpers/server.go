// Package helpers boots the rr container in-process for end-to-end tests and talks to it the way
// users do: goridge RPC for producers, PHP workers for consumers.
package helpers

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/roadrunner-server/endure/v2"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/cmd/rr/app"
)

// Server is a running rr container with its addresses and the directory its PHP workers write to.
type Server struct {
	// RPC is the goridge RPC address (host:port).
	RPC string
	// Metrics and Status are the HTTP addresses of the metrics and status plugins.
	Metrics string
	Status  string
	// Dir is RRJOBS_TEST_DIR for the PHP workers: jobs.log and crash markers live there.
	Dir string

	cont     *endure.Endure
	stopOnce sync.Once
	stopErr  error
	// Stopped is closed when the container has stopped.
	Stopped chan struct{}
}

// Vars are the values a config template can use: {{.RPC}}, {{.Metrics}}, {{.Status}}, {{.Dir}},
// {{.PHP}} (the tests/php folder) and {{.LogLevel}}.
type Vars struct {
	RPC, Metrics, Status, Dir, PHP, LogLevel string
}

// Option changes how Start boots the server.
type Option func(*startOptions)

type startOptions struct {
	plugins []any
}

// WithPlugins replaces the plugins registered besides config (default: app.Plugins()).
func WithPlugins(plugins ...any) Option {
	return func(o *startOptions) { o.plugins = plugins }
}

// Start renders the config template, boots the container and waits until its RPC answers.
// The server is stopped when the test ends.
func Start(t testing.TB, configTemplate string, opts ...Option) *Server {
	t.Helper()
	s, err := TryStart(t, configTemplate, opts...)
	require.NoError(t, err, "container init")
	return s
}

// TryStart is Start for a config expected to be refused: it returns the init error instead of
// failing the test.
func TryStart(t testing.TB, configTemplate string, opts ...Option) (*Server, error) {
	t.Helper()
	o := &startOptions{plugins: app.Plugins()}
	for _, opt := range opts {
		opt(o)
	}
	s := &Server{
		RPC:     FreeAddr(t),
		Metrics: FreeAddr(t),
		Status:  FreeAddr(t),
		Dir:     t.TempDir(),
		Stopped: make(chan struct{}),
	}
	cfgPath := filepath.Join(s.Dir, ".rr.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(Render(t, configTemplate, s.Vars())), 0o600))

	cont, err := app.NewContainer(cfgPath, nil, o.plugins)
	if err != nil {
		return nil, err
	}
	s.cont = cont
	results, err := cont.Serve()
	require.NoError(t, err, "container serve")
	go func() {
		for r := range results {
			if r != nil && r.Error != nil {
				t.Errorf("plugin %s failed: %v", r.VertexID, r.Error)
			}
		}
	}()
	t.Cleanup(func() {
		_ = s.Stop()
		if t.Failed() {
			s.dumpLog(t)
		}
	})
	WaitRPC(t, s.RPC)
	return s, nil
}

// Vars returns this server's template values.
func (s *Server) Vars() Vars {
	level := "warn"
	if os.Getenv("RRJOBS_TEST_DEBUG") != "" {
		level = "debug"
	}
	return Vars{RPC: s.RPC, Metrics: s.Metrics, Status: s.Status, Dir: s.Dir, PHP: PHPDir(), LogLevel: level}
}

// dumpLog prints the end of the server log (logs.output {{.Dir}}/rr.log) to help read a failure.
func (s *Server) dumpLog(t testing.TB) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "rr.log"))
	if err != nil {
		return
	}
	const keep = 16 << 10
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	t.Logf("server log (last %d bytes):\n%s", len(b), b)
}

// Stop stops the container once (graceful: running jobs finish within the grace period).
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.cont.Stop()
		close(s.Stopped)
	})
	return s.stopErr
}

// Render fills a config template with v.
func Render(t testing.TB, tmpl string, v Vars) string {
	t.Helper()
	tp, err := template.New("rr").Parse(tmpl)
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, tp.Execute(&b, v))
	return b.String()
}

// PHPDir is the absolute path of tests/php.
func PHPDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "php")
}

// WaitRPC waits until the jobs RPC answers on addr.
func WaitRPC(t testing.TB, addr string) {
	t.Helper()
	Eventually(t, 20*time.Second, func() error {
		c, err := Dial(addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.List()
		return err
	}, "jobs RPC at %s", addr)
}

// Eventually polls fn every 20 ms until it returns nil or the deadline passes, then fails the test
// with fn's last error.
func Eventually(t testing.TB, within time.Duration, fn func() error, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for {
		if last = fn(); last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", within, fmt.Sprintf(what, args...), last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
