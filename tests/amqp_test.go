package tests

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	amqpdriver "github.com/rrjobs/jobs/drivers/amqp"
	"github.com/rrjobs/jobs/drivers/drivertest"
	"github.com/rrjobs/jobs/tests/helpers"
)

// End-to-end tests of the amqp driver against the local RabbitMQ (RRJOBS_AMQP_ADDR, default
// amqp://guest:guest@127.0.0.1:5672/). Every test works on its own exchange and queues and deletes
// them (and the delay queues the driver made for them) at the end.

func amqpTestAddr() string {
	return drivertest.Env("RRJOBS_AMQP_ADDR", "amqp://guest:guest@127.0.0.1:5672/")
}

func amqpHostPort(t testing.TB) string {
	t.Helper()
	uri, err := amqp.ParseURI(amqpTestAddr())
	require.NoError(t, err)
	return net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
}

func requireRabbitMQ(t *testing.T) {
	t.Helper()
	drivertest.RequireTCP(t, "RabbitMQ", amqpHostPort(t))
}

// amqpGlobal is the `amqp:` section for addr.
func amqpGlobal(addr string) string {
	return "amqp:\n  addr: \"" + addr + "\"\n"
}

// amqpExchange is the exchange of the pipelines on queue: one per queue, so tests leave nothing
// behind in shared exchanges.
func amqpExchange(queue string) string { return queue + "-ex" }

// amqpQueue returns a fresh queue name; the queue, its exchange and the delay queues of the
// delays the tests use are deleted when the test ends.
func amqpQueue(t *testing.T) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	queue := "rrjobs-e2e-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { amqpCleanup(t, queue) })
	return queue
}

func amqpCleanup(t *testing.T, queue string) {
	conn, err := amqp.Dial(amqpTestAddr())
	if err != nil {
		t.Logf("cleanup of %s: %v", queue, err)
		return
	}
	defer conn.Close()
	ex := amqpExchange(queue)
	names := []string{queue}
	for _, secs := range []int{1, 2, 60} {
		delay := time.Duration(secs) * time.Second
		names = append(names, amqpdriver.DelayQueueName(delay, ex, queue, queue), amqpdriver.DelayQueueName(delay, "", queue, queue))
	}
	for _, name := range names {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(name, false, false, false)
			_ = ch.Close()
		}
	}
	if ch, err := conn.Channel(); err == nil {
		_ = ch.ExchangeDelete(ex, false, false)
		_ = ch.Close()
	}
}

func amqpPipeline(queue string) string {
	return "exchange: " + amqpExchange(queue) + "\nqueue: " + queue + "\nrouting_key: " + queue + "\n"
}

func TestAMQPConformance(t *testing.T) {
	runConformance(t, conformance{
		driver:   "amqp",
		require:  requireRabbitMQ,
		global:   func(*testing.T) string { return amqpGlobal(amqpTestAddr()) },
		newQueue: amqpQueue,
		pipeline: amqpPipeline,
		declare: func(queue string) map[string]string {
			return map[string]string{"exchange": amqpExchange(queue), "queue": queue, "routing_key": queue,
				"exchange_type": "direct", "prefetch": "100", "queue_headers": "{}"}
		},
		// Active is the queue's ready count, Reserved this instance's unacknowledged jobs, Delayed
		// the messages in the delay queues this instance used.
		stat: statCaps{active: true, delayed: true, reserved: true},
	})
}

// amqpCutConfig is one consuming pipeline whose broker connection goes through proxyAddr.
func amqpCutConfig(proxyAddr, queue string) string {
	return memoryConfig + amqpGlobal("amqp://guest:guest@"+proxyAddr+"/") + `
jobs:
  num_pollers: 6
  timeout: 10
  pool:
    num_workers: 4
    allocate_timeout: 10s
  consume: ["q"]
  pipelines:
    q:
      driver: amqp
      config:
        prefetch: 20
` + indent(amqpPipeline(queue), "        ")
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

// The broker connection is cut while jobs are pushed and processed: pushes fail at once with a
// clear error, the pipeline reports not ready (Stat and /ready), and once the connection is back
// the pipeline consumes again by itself. Every push that was acknowledged is processed.
func TestAMQPConnectionCutMidLoad(t *testing.T) {
	requireRabbitMQ(t)
	helpers.RequirePHP(t)
	p := helpers.StartProxy(t, amqpHostPort(t))
	queue := amqpQueue(t)
	s, c := start(t, amqpCutConfig(p.Addr, queue))
	connectionCutMidLoad(t, s, c, p, "q", "amqp", "not connected to RabbitMQ", `job "while-cut" was not pushed`)
}

// A worker that dies mid-job: the job goes back to RabbitMQ (through a 1 s delay queue) and runs
// again on another worker; nothing else is disturbed.
func TestAMQPWorkerCrashMidJob(t *testing.T) {
	requireRabbitMQ(t)
	queue := amqpQueue(t)
	cfg := memoryConfig + amqpGlobal(amqpTestAddr()) + `
jobs:
  num_pollers: 4
  pool:
    num_workers: 2
    allocate_timeout: 10s
  consume: ["q"]
  pipelines:
    q:
      driver: amqp
      config:
` + indent(amqpPipeline(queue), "        ")
	s, c := start(t, cfg)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "crashy", Payload: helpers.Action("crash_once"),
		Headers: map[string][]string{"keep": {"me"}}}))
	for i := range 5 {
		require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "ok-" + strconv.Itoa(i), Payload: helpers.Action("sleep", "ms", 100)}))
	}
	starts := s.WaitEvents(t, 20*time.Second, "start", "crashy", 2)
	require.NotEqual(t, starts[0].PID, starts[1].PID)
	require.GreaterOrEqual(t, starts[1].Time().Sub(starts[0].Time()), 900*time.Millisecond, "redelivered after the 1 s retry delay")
	require.Equal(t, []string{"me"}, starts[1].Headers["keep"], "headers survive the redelivery")
	s.WaitEvents(t, 15*time.Second, "done", "crashy", 1)
	s.WaitEvents(t, 15*time.Second, "done", "", 6)
	waitStat(t, c, "q", func(st stat) bool { return st.Active == 0 && st.Reserved == 0 && st.Delayed == 0 })
}

// Messages written the way the stock amqp driver writes them (and foreign messages without rr_*
// headers) are consumed; the PHP worker sees the stock job name, id and headers.
func TestAMQPStockMessagesInteroperate(t *testing.T) {
	requireRabbitMQ(t)
	queue := amqpQueue(t)
	cfg := memoryConfig + amqpGlobal(amqpTestAddr()) + `
jobs:
  pool:
    num_workers: 1
  consume: ["q"]
  pipelines:
    q:
      driver: amqp
      config:
` + indent(amqpPipeline(queue), "        ")
	s, c := start(t, cfg)

	conn, err := amqp.Dial(amqpTestAddr())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	publish := func(msg amqp.Publishing) {
		dc, err := ch.PublishWithDeferredConfirm(amqpExchange(queue), queue, true, false, msg)
		require.NoError(t, err)
		require.True(t, dc.Wait())
	}
	publish(amqp.Publishing{
		Headers: amqp.Table{
			"rr_id": "stock-1", "rr_job": `App\Jobs\SendEmail`, "rr_pipeline": "q",
			"rr_headers": []byte(`{"tenant":["acme"],"rr-attempt":["2"]}`), "rr_delay": 0,
			"rr_priority": int64(10), "rr_auto_ack": false,
		},
		ContentType:  "application/octet-stream",
		DeliveryMode: amqp.Persistent,
		Body:         []byte(helpers.Action("ack")),
	})
	publish(amqp.Publishing{MessageId: "foreign-1", Headers: amqp.Table{"source": "billing"}, Body: []byte("not json")})

	got := s.WaitEvents(t, 15*time.Second, "start", "stock-1", 1)[0]
	require.Equal(t, `App\Jobs\SendEmail`, got.Job)
	require.Equal(t, "amqp", got.Driver)
	require.Equal(t, queue, *got.Queue)
	require.Equal(t, []string{"acme"}, got.Headers["tenant"])
	require.Equal(t, []string{"2"}, got.Headers["rr-attempt"])
	foreign := s.WaitEvents(t, 15*time.Second, "start", "foreign-1", 1)[0]
	require.Equal(t, "deduced_by_rr", foreign.Job)
	require.Equal(t, []string{"billing"}, foreign.Headers["source"])
	s.WaitEvents(t, 15*time.Second, "done", "", 2)
	waitStat(t, c, "q", func(st stat) bool { return st.Active == 0 && st.Reserved == 0 })

	// And a job pushed through rr carries the stock metadata headers.
	require.NoError(t, c.Pause("q"))
	waitStat(t, c, "q", func(st stat) bool { return !st.Ready })
	require.NoError(t, c.Push(helpers.Job{Pipeline: "q", ID: "ours", Name: "app.job", Payload: "x", Priority: 3,
		Headers: map[string][]string{"k": {"v"}}}))
	var d amqp.Delivery
	helpers.Eventually(t, 5*time.Second, func() error {
		var ok bool
		d, ok, err = ch.Get(queue, true)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("queue is empty")
		}
		return nil
	}, "our message")
	require.Equal(t, "ours", d.Headers["rr_id"])
	require.Equal(t, "app.job", d.Headers["rr_job"])
	require.Equal(t, "q", d.Headers["rr_pipeline"])
	require.Equal(t, int64(3), d.Headers["rr_priority"])
	var hdr map[string][]string
	require.NoError(t, json.Unmarshal(d.Headers["rr_headers"].([]byte), &hdr))
	require.Equal(t, []string{"v"}, hdr["k"])
}
