package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
	// quiet is how long a test watches the queue to check that nothing (more) arrives.
	quiet = 300 * time.Millisecond
)

// testAddr is the shared local broker (override with RRJOBS_AMQP_ADDR).
func testAddr() string {
	return drivertest.Env("RRJOBS_AMQP_ADDR", "amqp://guest:guest@127.0.0.1:5672/")
}

func brokerHostPort(t testing.TB, addr string) string {
	t.Helper()
	uri, err := amqp.ParseURI(addr)
	require.NoError(t, err)
	return net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
}

// requireRabbit skips the test (loudly) when the broker is unreachable, unless
// RRJOBS_REQUIRE_BROKERS=1, where it fails.
func requireRabbit(t *testing.T) {
	t.Helper()
	drivertest.RequireTCP(t, "RabbitMQ", brokerHostPort(t, testAddr()))
}

func randSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// admin is a plain connection for fixtures, assertions and cleanup.
type admin struct {
	t    *testing.T
	conn *amqp.Connection
	mu   sync.Mutex
}

func newAdmin(t *testing.T) *admin {
	t.Helper()
	conn, err := amqp.Dial(testAddr())
	require.NoError(t, err)
	a := &admin{t: t, conn: conn}
	t.Cleanup(func() { _ = conn.Close() })
	return a
}

// do runs fn on a fresh channel (a failed call closes only that channel).
func (a *admin) do(fn func(ch *amqp.Channel) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch, err := a.conn.Channel()
	if err != nil {
		return err
	}
	defer func() { _ = ch.Close() }()
	return fn(ch)
}

// count returns the ready messages of a queue, or -1 when it does not exist.
func (a *admin) count(queue string) int {
	n := -1
	err := a.do(func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
		if err != nil {
			return err
		}
		n = q.Messages
		return nil
	})
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return -1
	}
	require.NoError(a.t, err)
	return n
}

func (a *admin) deleteQueue(name string) {
	_ = a.do(func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete(name, false, false, false)
		return err
	})
}

func (a *admin) deleteExchange(name string) {
	_ = a.do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(name, false, false) })
}

// publish publishes a raw message (as a foreign producer or the stock driver would) and waits
// for the confirm.
func (a *admin) publish(exchange, key string, msg amqp.Publishing) {
	err := a.do(func(ch *amqp.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirm(exchange, key, true, false, msg)
		if err != nil {
			return err
		}
		if !dc.Wait() {
			return errors.New("nacked")
		}
		return nil
	})
	require.NoError(a.t, err)
}

// get takes one message from a queue (acknowledged), or fails the test when there is none.
func (a *admin) get(queue string) amqp.Delivery {
	var d amqp.Delivery
	err := a.do(func(ch *amqp.Channel) error {
		var ok bool
		var err error
		d, ok, err = ch.Get(queue, true)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("queue is empty")
		}
		return nil
	})
	require.NoError(a.t, err)
	return d
}

// names is a fresh exchange/queue pair, deleted (with the delay queues the drivers used) at the end.
type names struct {
	exchange, queue string
}

func uniqueNames(t *testing.T, a *admin) names {
	t.Helper()
	s := randSuffix()
	n := names{exchange: "rrjobs-test-ex-" + s, queue: "rrjobs-test-q-" + s}
	t.Cleanup(func() {
		a.deleteQueue(n.queue)
		a.deleteExchange(n.exchange)
	})
	return n
}

// testConfig is the config of a consuming pipeline on n.
func testConfig(n names) Config {
	return Config{
		Addr:       testAddr(),
		Exchange:   n.exchange,
		Queue:      n.queue,
		RoutingKey: n.queue,
	}
}

// newTestDriver builds a driver and stops it (deleting its delay queues) when the test ends.
func newTestDriver(t *testing.T, a *admin, pipeline string, conf Config, q jobs.Queue) *Driver {
	t.Helper()
	d, err := NewDriver(drivertest.TestLogger(t).NamedLogger(pluginName), pipeline, conf, q)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
		d.mu.Lock()
		delays := make([]string, 0, len(d.delayQueues))
		for n := range d.delayQueues {
			delays = append(delays, n)
		}
		d.mu.Unlock()
		for _, n := range delays {
			a.deleteQueue(n)
		}
	})
	return d
}

func push(t *testing.T, d *Driver, id string, payload string, mod ...func(*drivertest.Message)) {
	t.Helper()
	m := drivertest.NewMessage(id, "test.job", d.pipeline, []byte(payload))
	for _, f := range mod {
		f(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Push(ctx, m))
}

func run(t *testing.T, d *Driver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Run(ctx, drivertest.NewPipeline(d.pipeline, pluginName, nil)))
}

func take(t *testing.T, q *drivertest.Queue) *Item {
	t.Helper()
	j, ok := q.ExtractMinTimeout(waitFor)
	require.True(t, ok, "no job arrived within %s", waitFor)
	it, ok := j.(*Item)
	require.True(t, ok, "unexpected job type %T", j)
	return it
}

func nothing(t *testing.T, q *drivertest.Queue, within time.Duration) {
	t.Helper()
	if j, ok := q.ExtractMinTimeout(within); ok {
		t.Fatalf("unexpected job %q arrived", j.ID())
	}
}

func state(t *testing.T, d *Driver) *jobs.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := d.State(ctx)
	require.NoError(t, err)
	require.NotNil(t, st)
	return st
}

// proxyURL is the broker URI through p.
func proxyURL(p *drivertest.Proxy) string { return "amqp://guest:guest@" + p.Addr() + "/" }
