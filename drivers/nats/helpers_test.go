package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

// TestMain runs the tests (which mostly wait on the broker) four at a time unless -parallel is
// given: with GOMAXPROCS 2 they would otherwise take twice as long for no CPU gain.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "4")
	}
	os.Exit(m.Run())
}

// natsURL is the NATS server the tests use (RRJOBS_NATS_ADDR overrides it).
func natsURL() string { return drivertest.Env("RRJOBS_NATS_ADDR", DefaultAddr) }

func natsHostPort(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(natsURL())
	require.NoError(t, err)
	return u.Host
}

// requireNATS skips (loudly) when the server is unreachable, unless RRJOBS_REQUIRE_BROKERS=1.
func requireNATS(t testing.TB) {
	t.Helper()
	drivertest.RequireTCP(t, "NATS JetStream", natsHostPort(t))
}

// testJS is a separate connection for inspecting and cleaning up what the driver created.
func testJS(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func randName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// newStreamName returns a unique stream name; the stream is deleted when the test ends (after the
// drivers were stopped: cleanups run last-in first-out).
func newStreamName(t testing.TB) string {
	t.Helper()
	name := randName("rrtest_")
	js := testJS(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Logf("delete stream %s: %v", name, err)
		}
	})
	return name
}

// testConf is a config for a fresh stream whose subject is the stream name.
func testConf(t testing.TB) Config {
	t.Helper()
	requireNATS(t)
	s := newStreamName(t)
	return Config{Addr: natsURL(), Stream: s, Subject: s, Prefetch: 10, AckWait: 30 * time.Second}
}

type harness struct {
	t     *testing.T
	d     *Driver
	q     *drivertest.Queue
	conf  Config
	name  string
	clean sync.Once
}

// newHarness builds a driver for pipeline name; it is stopped when the test ends.
func newHarness(t *testing.T, name string, conf Config) *harness {
	t.Helper()
	q := drivertest.NewQueue(0)
	d, err := NewDriver(drivertest.TestLogger(t).NamedLogger(pluginName), name, conf, q)
	require.NoError(t, err)
	h := &harness{t: t, d: d, q: q, conf: d.conf, name: name}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.clean.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(h.t, h.d.Stop(ctx))
	})
}

func (h *harness) run() *harness {
	h.t.Helper()
	require.NoError(h.t, h.d.Run(context.Background(), drivertest.NewPipeline(h.name, pluginName, nil)))
	return h
}

func (h *harness) push(id string, mut ...func(*drivertest.Message)) {
	h.t.Helper()
	m := drivertest.NewMessage(id, "job."+id, h.name, []byte("payload-"+id))
	for _, f := range mut {
		f(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(h.t, h.d.Push(ctx, m))
}

// take waits for the next job in the shared queue and "gives it to a worker" (Context).
func (h *harness) take(within time.Duration) *Item {
	h.t.Helper()
	j, ok := h.q.ExtractMinTimeout(within)
	require.True(h.t, ok, "no job within %s", within)
	it := j.(*Item)
	_, err := it.Context()
	require.NoError(h.t, err)
	return it
}

// none asserts that no job arrives within d.
func (h *harness) none(d time.Duration) {
	h.t.Helper()
	if j, ok := h.q.ExtractMinTimeout(d); ok {
		h.t.Fatalf("unexpected job %q", j.ID())
	}
}

func (h *harness) state() *jobs.State {
	h.t.Helper()
	st, err := h.d.State(context.Background())
	require.NoError(h.t, err)
	return st
}

// waitState polls State until ok accepts it.
func (h *harness) waitState(within time.Duration, ok func(*jobs.State) bool) *jobs.State {
	h.t.Helper()
	deadline := time.Now().Add(within)
	var st *jobs.State
	for {
		st = h.state()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("state not reached within %s: %+v", within, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func contextOf(t *testing.T, it *Item) driverContext {
	t.Helper()
	b, err := it.Context()
	require.NoError(t, err)
	var c driverContext
	require.NoError(t, json.Unmarshal(b, &c))
	return c
}

type driverContext struct {
	ID       string              `json:"id"`
	Job      string              `json:"job"`
	Driver   string              `json:"driver"`
	Headers  map[string][]string `json:"headers"`
	Queue    string              `json:"queue"`
	Pipeline string              `json:"pipeline"`
}
