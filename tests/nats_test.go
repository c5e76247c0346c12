package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/drivertest"
	"github.com/rrjobs/jobs/tests/helpers"
)

// End-to-end tests of the nats driver against the local NATS JetStream server (RRJOBS_NATS_ADDR,
// default nats://127.0.0.1:4222). Every test works on its own stream (its subject is the stream
// name) and deletes it at the end. The shared server is never stopped: faults go through a proxy.

func natsTestURL() string { return drivertest.Env("RRJOBS_NATS_ADDR", "nats://127.0.0.1:4222") }

func natsTestHostPort(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(natsTestURL())
	require.NoError(t, err)
	return u.Host
}

func requireNATS(t *testing.T) {
	t.Helper()
	drivertest.RequireTCP(t, "NATS JetStream", natsTestHostPort(t))
}

// natsGlobal is the `nats:` section for addr.
func natsGlobal(addr string) string { return "nats:\n  addr: \"" + addr + "\"\n" }

// natsStream returns a fresh stream name, deleted (with the consumers the driver made on it) when
// the test ends.
func natsStream(t *testing.T) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	name := "rre2e_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		nc, err := nats.Connect(natsTestURL())
		if err != nil {
			t.Logf("cleanup of stream %s: %v", name, err)
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Logf("cleanup of stream %s: %v", name, err)
		}
	})
	return name
}

// natsPipeline is a pipeline on stream, whose subject is the stream name too (so the job context's
// queue, the stream, and Stat's Queue, the subject, are the same).
func natsPipeline(stream string) string { return "stream: " + stream + "\nsubject: " + stream + "\n" }

func natsIndent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

func TestNATSConformance(t *testing.T) {
	runConformance(t, conformance{
		driver:   "nats",
		require:  requireNATS,
		global:   func(*testing.T) string { return natsGlobal(natsTestURL()) },
		newQueue: natsStream,
		pipeline: natsPipeline,
		declare: func(stream string) map[string]string {
			return map[string]string{"stream": stream, "subject": stream, "prefetch": "20", "deliver_new": "false"}
		},
		// Active is the consumer's undelivered count, Reserved its delivered and unacknowledged
		// count, Delayed the messages on the delayed subject.
		stat: statCaps{active: true, delayed: true, reserved: true},
	})
}

// natsOnePipeline is one consuming pipeline "q" on stream through addr, with extra config lines.
func natsOnePipeline(addr, stream, extra string) string {
	return memoryConfig + natsGlobal(addr) + `
jobs:
  num_pollers: 6
  timeout: 10
  pool:
    num_workers: 4
    allocate_timeout: 10s
  consume: ["q"]
  pipelines:
    q:
      driver: nats
      config:
        prefetch: 20
` + natsIndent(natsPipeline(stream)+extra, "        ")
}

// The connection is cut while jobs are pushed and processed: pushes fail at once with a clear
// error, the pipeline reports not ready (Stat and /ready), and once the connection is back the
// pipeline consumes again by itself. Every push that was acknowledged is processed.
func TestNATSConnectionCutMidLoad(t *testing.T) {
	requireNATS(t)
	helpers.RequirePHP(t)
	p := helpers.StartProxy(t, natsTestHostPort(t))
	stream := natsStream(t)
	// An ack lost with the connection leaves its message pending until ack_wait, when the server
	// delivers it again; a short ack_wait keeps the test short.
	s, c := start(t, natsOnePipeline("nats://"+p.Addr, stream, "ack_wait: 3s\n"))
	connectionCutMidLoad(t, s, c, p, "q", "nats pipeline", "not connected to the NATS server", `push job "while-cut"`, "the job was not stored")
}

// A job that runs four times longer than ack_wait is not delivered a second time: the driver
// sends progress signals while it runs.
func TestNATSLongJobIsNotDeliveredTwice(t *testing.T) {
	requireNATS(t)
	stream := natsStream(t)
	s, c := start(t, natsOnePipeline(natsTestURL(), stream, "ack_wait: 1s\n"))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "long", Payload: helpers.Action("sleep", "ms", 4000)}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "short", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 15*time.Second, "done", "long", 1)
	waitStat(t, c, "q", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 })
	time.Sleep(1500 * time.Millisecond) // longer than ack_wait: a redelivery would have happened by now
	require.Len(t, s.Events(t, "start", "long"), 1, "the long job ran once")
	require.Len(t, s.Events(t, "start", "short"), 1)
}

// A restart of rr continues with the same durable consumer: acknowledged jobs are not replayed
// (the stock driver created a new consumer on every start and replayed the stream), unfinished
// ones are delivered.
func TestNATSRestartDoesNotReplayAckedJobs(t *testing.T) {
	requireNATS(t)
	stream := natsStream(t)
	cfg := natsOnePipeline(natsTestURL(), stream, "")
	s1, c1 := start(t, cfg)
	for i := range 5 {
		require.NoError(t, c1.Push(helpers.Job{Pipeline: "q", ID: "old-" + strconv.Itoa(i), Payload: helpers.Action("ack")}))
	}
	s1.WaitEvents(t, 15*time.Second, "done", "", 5)
	waitStat(t, c1, "q", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 })
	require.NoError(t, c1.Pause("q"))
	require.NoError(t, c1.Push(helpers.Job{Pipeline: "q", ID: "pending", Payload: helpers.Action("ack")}))
	require.NoError(t, c1.Push(helpers.Job{Pipeline: "q", ID: "delayed", Payload: helpers.Action("ack"), Delay: 2}))
	require.NoError(t, s1.Stop())

	s2, c2 := start(t, cfg)
	require.NoError(t, c2.Push(helpers.Job{Pipeline: "q", ID: "new", Payload: helpers.Action("ack")}))
	s2.WaitEvents(t, 15*time.Second, "done", "new", 1)
	s2.WaitEvents(t, 15*time.Second, "done", "pending", 1)
	s2.WaitEvents(t, 15*time.Second, "done", "delayed", 1)
	waitStat(t, c2, "q", func(st stat) bool { return st.Reserved == 0 && st.Active == 0 && st.Delayed == 0 })
	for _, e := range s2.Events(t, "start", "") {
		require.False(t, strings.HasPrefix(e.ID, "old-"), "acknowledged job %s was replayed", e.ID)
	}
	require.Len(t, s2.Events(t, "start", ""), 3)
}
