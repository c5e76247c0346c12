package helpers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RequirePHP skips the test (loudly) when php-cli is missing, unless RRJOBS_REQUIRE_BROKERS=1, where a
// missing php fails it: CI must run everything.
func RequirePHP(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("php"); err != nil {
		if os.Getenv("RRJOBS_REQUIRE_BROKERS") == "1" {
			t.Fatalf("php-cli is required (RRJOBS_REQUIRE_BROKERS=1): %v", err)
		}
		t.Skipf("SKIPPED: php-cli is not installed (apt-get install php-cli): %v", err)
	}
}

// WorkerEvent is one line of the PHP worker's jobs.log.
type WorkerEvent struct {
	Event     string              `json:"event"` // "start" or "done"
	PID       int                 `json:"pid"`
	ID        string              `json:"id"`
	Job       string              `json:"job"`
	Driver    string              `json:"driver"`
	Queue     *string             `json:"queue"`
	Pipeline  string              `json:"pipeline"`
	Headers   map[string][]string `json:"headers"`
	Payload   string              `json:"payload"`
	Action    string              `json:"action"`
	ReplyType any                 `json:"reply_type"`
	TS        float64             `json:"ts"`
}

// Time is when the worker wrote the line.
func (e WorkerEvent) Time() time.Time {
	return time.Unix(0, int64(e.TS*float64(time.Second)))
}

// WorkerLog reads everything the PHP workers of s logged so far.
func (s *Server) WorkerLog(t testing.TB) []WorkerEvent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "jobs.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("read worker log: %v", err)
	}
	// A worker may be appending right now: only lines that end in a newline are complete.
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	var out []WorkerEvent
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e WorkerEvent
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("worker log line %.200q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// Events returns the worker log lines of kind event ("start" or "done") for job id ("" = any).
func (s *Server) Events(t testing.TB, event, id string) []WorkerEvent {
	t.Helper()
	var out []WorkerEvent
	for _, e := range s.WorkerLog(t) {
		if e.Event == event && (id == "" || e.ID == id) {
			out = append(out, e)
		}
	}
	return out
}

// WaitEvents waits until the worker logged at least n lines of kind event for job id ("" = any) and
// returns them.
func (s *Server) WaitEvents(t testing.TB, within time.Duration, event, id string, n int) []WorkerEvent {
	t.Helper()
	var got []WorkerEvent
	Eventually(t, within, func() error {
		got = s.Events(t, event, id)
		if len(got) < n {
			return fmt.Errorf("%d of %d %q events for job %q", len(got), n, event, id)
		}
		return nil
	}, "worker events")
	return got
}

// Action builds a PHP worker job body, e.g. Action("requeue", "delay", 1).
func Action(name string, kv ...any) string {
	m := map[string]any{"action": name}
	for i := 0; i+1 < len(kv); i += 2 {
		m[fmt.Sprint(kv[i])] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// Producer runs tests/php/producer.php against addr and returns its JSON line.
func Producer(t testing.TB, addr, command string, args any) map[string]any {
	t.Helper()
	cmdArgs := []string{filepath.Join(PHPDir(), "producer.php"), addr, command}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			t.Fatalf("producer args: %v", err)
		}
		cmdArgs = append(cmdArgs, string(b))
	}
	out, _ := exec.Command("php", cmdArgs...).Output()
	var res map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		t.Fatalf("producer %s printed %q: %v", command, strings.TrimSpace(string(out)), err)
	}
	return res
}
