package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
	// quiet is how long a test watches the queue to check that nothing (more) arrives.
	quiet = 300 * time.Millisecond
)

// testDSN is the shared local server (override with RRJOBS_POSTGRES_DSN).
func testDSN() string {
	if dsn := os.Getenv("RRJOBS_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// requirePostgres skips the test (loudly) when the server is unreachable, unless
// RRJOBS_REQUIRE_BROKERS=1, where it fails.
func requirePostgres(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testDSN())
	if err == nil {
		_ = conn.Close(ctx)
		return
	}
	if os.Getenv("RRJOBS_REQUIRE_BROKERS") == "1" {
		t.Fatalf("PostgreSQL is required (RRJOBS_REQUIRE_BROKERS=1) at %s: %v", testDSN(), err)
	}
	t.Skipf("SKIPPED: PostgreSQL is not reachable at %s: %v", testDSN(), err)
}

// db opens a plain connection for assertions and fixtures.
func db(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testDSN())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// uniqueTable returns a fresh table name that is dropped (with everything the driver created for
// it) when the test ends.
func uniqueTable(t *testing.T) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	table := "rrt_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { dropSchema(t, testDSN(), table) })
	return table
}

func dropSchema(t *testing.T, dsn, table string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Logf("drop %s: %v", table, err)
		return
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + table + " CASCADE",
		"DROP TABLE IF EXISTS " + table + "_queues",
		"DROP TABLE IF EXISTS " + table + "_migrations",
		"DROP FUNCTION IF EXISTS " + table + "_push, " + table + "_before_insert, " + table + "_notify",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Logf("cleanup %q: %v", q, err)
		}
	}
}

func testConfig(table string) Config {
	return Config{
		DSN:          testDSN(),
		MaxConns:     4,
		Queue:        "q1",
		Table:        table,
		Priority:     10,
		Prefetch:     10,
		PollInterval: 200 * time.Millisecond,
		LeaseTimeout: 30 * time.Second,
	}
}

// newDriver builds a driver for pipeline "p1" that is stopped at cleanup.
func newDriver(t *testing.T, conf Config, q jobs.Queue) *Driver {
	t.Helper()
	return newNamedDriver(t, "p1", conf, q)
}

func newNamedDriver(t *testing.T, name string, conf Config, q jobs.Queue) *Driver {
	t.Helper()
	d, err := NewDriver(zap.NewNop(), name, conf, q)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
	})
	return d
}

func run(t *testing.T, d *Driver) {
	t.Helper()
	require.NoError(t, d.Run(context.Background(), drivertest.Pipeline{"name": d.pipeline, "driver": pluginName}))
}

func msg(id string) *drivertest.Message {
	return drivertest.NewMessage(id, "job."+id, "p1", []byte("payload-"+id))
}

func push(t *testing.T, d *Driver, m *drivertest.Message) {
	t.Helper()
	require.NoError(t, d.Push(context.Background(), m))
}

// take waits for the next job and builds its context, as a poller does.
func take(t *testing.T, q *drivertest.Queue) jobs.Job {
	t.Helper()
	return drivertest.Take(t, q, waitFor)
}

// requireNothing checks that no job arrives within d.
func requireNothing(t *testing.T, q *drivertest.Queue, d time.Duration) {
	t.Helper()
	drivertest.RequireNoJob(t, q, d)
}

// counts is (active, delayed, reserved).
type counts = drivertest.Counts

func state(t *testing.T, d *Driver) *jobs.State {
	t.Helper()
	return drivertest.State(t, d)
}

func requireCounts(t *testing.T, d *Driver, want counts) {
	t.Helper()
	drivertest.RequireCounts(t, d, want, waitFor)
}

// rowCount counts the rows of table (all queues).
func rowCount(t *testing.T, conn *pgx.Conn, table string) int {
	t.Helper()
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

// proxy is a TCP proxy in front of the test server whose link the test can cut and restore, to
// simulate a database that goes away and comes back.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t *testing.T) *proxy {
	t.Helper()
	u, err := url.Parse(testDSN())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

// dsn is testDSN with the proxy's address.
func (p *proxy) dsn(t *testing.T) string {
	u, err := url.Parse(testDSN())
	require.NoError(t, err)
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 3*time.Second)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, err := io.Copy(dst, src)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		_ = err
	}
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut closes every proxied connection and refuses new ones until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	p.down = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
