package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// buildRR builds cmd/rr into a temporary directory.
func buildRR(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rr")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/rr")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// The rr binary serves a config, answers `rr jobs` commands with tables and stops on SIGTERM.
func TestRRBinary(t *testing.T) {
	helpers.RequirePHP(t)
	bin := buildRR(t)
	dir := t.TempDir()
	vars := helpers.Vars{RPC: helpers.FreeAddr(t), Metrics: helpers.FreeAddr(t), Status: helpers.FreeAddr(t), Dir: dir, PHP: helpers.PHPDir(), LogLevel: "warn"}
	cfg := filepath.Join(dir, ".rr.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(helpers.Render(t, twoPipelines, vars)), 0o600))

	serve := exec.Command(bin, "serve", "-c", cfg, "-o", "jobs.pool.num_workers=1")
	serve.Stdout, serve.Stderr = os.Stderr, os.Stderr
	require.NoError(t, serve.Start())
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	t.Cleanup(func() { _ = serve.Process.Kill() })
	helpers.WaitRPC(t, vars.RPC)

	rr := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append(args, "-c", cfg)...).CombinedOutput()
		require.NoError(t, err, "rr %v: %s", args, out)
		return string(out)
	}
	// RPC answers before the pipelines are created: wait for them.
	helpers.Eventually(t, 10*time.Second, func() error {
		out, err := exec.Command(bin, "jobs", "list", "-c", cfg).CombinedOutput()
		if err != nil || string(out) != "PIPELINE\np1\np2\n" {
			return fmt.Errorf("rr jobs list: %q %v", out, err)
		}
		return nil
	}, "pipelines listed")
	require.Contains(t, rr("jobs", "pause", "p1"), "p1        paused")
	stat := rr("jobs", "stat")
	require.Regexp(t, `(?m)^PIPELINE\s+DRIVER\s+QUEUE\s+PRIORITY\s+READY\s+ACTIVE\s+DELAYED\s+RESERVED$`, stat)
	require.Regexp(t, `(?m)^p1\s+memory\s+p1\s+10\s+false\s+0\s+0\s+0$`, stat)
	require.Contains(t, rr("jobs", "resume", "p1"), "resumed")
	require.Contains(t, rr("jobs", "destroy", "p2"), "p2        destroyed")
	require.Equal(t, "PIPELINE\np1\n", rr("jobs", "list"))

	c, err := helpers.Dial(vars.RPC)
	require.NoError(t, err)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "bin", Payload: helpers.Action("ack")}))
	_ = c.Close()
	helpers.Eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(dir, "jobs.log"))
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), `"event":"done","pid"`) {
			return os.ErrNotExist
		}
		return nil
	}, "job processed by the binary")

	out, err := exec.Command(bin, "jobs", "pause", "nope", "-c", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "no such pipeline, requested: nope")

	began := time.Now()
	require.NoError(t, serve.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "clean exit on SIGTERM")
		require.Less(t, time.Since(began), 3*time.Second)
	case <-time.After(15 * time.Second):
		t.Fatal("rr did not stop on SIGTERM")
	}
}

func TestRRBinaryRejectsABadConfig(t *testing.T) {
	bin := buildRR(t)
	cfg := filepath.Join(t.TempDir(), ".rr.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
version: "3"
rpc:
  listen: tcp://`+helpers.FreeAddr(t)+`
server:
  command: "php worker.php"
jobs:
  pipelines:
    broken:
      config:
        priority: 1
`), 0o600))
	out, err := exec.Command(bin, "serve", "-c", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "jobs.pipelines.broken.driver is required")
}
