package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// End-to-end tests of the postgres driver against the local PostgreSQL (RRJOBS_POSTGRES_DSN, default
// postgres://postgres@127.0.0.1:5432/test). Every test works in its own table.

// pgBase is memoryConfig plus the postgres section; @DSN@ and @TABLE@ are filled in by pgConfig.
const pgBase = memoryConfig + `
postgres:
  dsn: "@DSN@"
  max_conns: 4
`

const pgTwoPipelines = pgBase + `
jobs:
  num_pollers: 4
  pool:
    num_workers: 2
    allocate_timeout: 10s
  consume: ["p1", "p2"]
  pipelines:
    p1:
      driver: postgres
      config:
        table: @TABLE@
        priority: 10
        poll_interval: 10s
    p2:
      driver: postgres
      config:
        table: @TABLE@
        priority: 1
        poll_interval: 10s
`

func pgTestDSN() string {
	if dsn := os.Getenv("RRJOBS_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// requirePostgres skips (loudly) when the server is unreachable, unless RRJOBS_REQUIRE_BROKERS=1.
func requirePostgres(t testing.TB, dsn string) {
	t.Helper()
	helpers.RequirePHP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		_ = conn.Close(ctx)
		return
	}
	if os.Getenv("RRJOBS_REQUIRE_BROKERS") == "1" {
		t.Fatalf("PostgreSQL is required (RRJOBS_REQUIRE_BROKERS=1) at %s: %v", dsn, err)
	}
	t.Skipf("SKIPPED: PostgreSQL is not reachable at %s: %v", dsn, err)
}

// pgTable returns a fresh table name, dropped with everything the driver created for it at the end.
func pgTable(t testing.TB, dsn string) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	table := "rre2e_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return // a private server is gone with its data directory
		}
		defer conn.Close(ctx)
		for _, q := range []string{
			"DROP TABLE IF EXISTS " + table + " CASCADE", "DROP TABLE IF EXISTS " + table + "_queues",
			"DROP TABLE IF EXISTS " + table + "_migrations",
			"DROP FUNCTION IF EXISTS " + table + "_push, " + table + "_before_insert, " + table + "_notify",
		} {
			_, _ = conn.Exec(ctx, q)
		}
	})
	return table
}

func pgConfig(tmpl, dsn, table string) string {
	return strings.NewReplacer("@DSN@", dsn, "@TABLE@", table).Replace(tmpl)
}

// pgStart boots a server on the shared PostgreSQL with a fresh table.
func pgStart(t *testing.T, tmpl string) (*helpers.Server, *helpers.Client, string) {
	t.Helper()
	dsn := pgTestDSN()
	requirePostgres(t, dsn)
	table := pgTable(t, dsn)
	s, c := start(t, pgConfig(tmpl, dsn, table))
	return s, c, table
}

func pgConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// pgJobIDs returns the job_id of every row of table, sorted.
func pgJobIDs(t *testing.T, conn *pgx.Conn, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT job_id FROM "+table+" ORDER BY job_id")
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

// waitRows waits until the rows of table hold exactly the job ids want (a worker logs "done" just
// before its reply reaches the driver, so the row may still be there for a moment).
func waitRows(t *testing.T, table string, want ...string) {
	t.Helper()
	conn := pgConn(t, pgTestDSN())
	helpers.Eventually(t, 10*time.Second, func() error {
		got := pgJobIDs(t, conn, table)
		if fmt.Sprint(got) != fmt.Sprint(append([]string{}, want...)) {
			return fmt.Errorf("rows %v, want %v", got, want)
		}
		return nil
	}, "rows of %s", table)
}

func TestPostgresDeclareAndDestroy(t *testing.T) {
	s, c, table := pgStart(t, pgTwoPipelines)
	require.NoError(t, c.Declare(map[string]string{
		"name": "dyn", "driver": "postgres", "priority": "3", "prefetch": "5",
		"table": table, "queue": "dynq", "lease_timeout": "5s", "poll_interval": "500ms",
	}))
	names, err := c.List()
	require.NoError(t, err)
	require.Equal(t, []string{"dyn", "p1", "p2"}, names)
	st := waitStat(t, c, "dyn", func(st stat) bool { return !st.Ready })
	require.Equal(t, uint64(3), st.Priority)
	require.Equal(t, "postgres", st.Driver)
	require.Equal(t, "dynq", st.Queue)

	require.NoError(t, c.Resume("dyn"))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "dj", Payload: helpers.Action("ack")}))
	got := s.WaitEvents(t, 10*time.Second, "start", "dj", 1)
	require.Equal(t, "dynq", *got[0].Queue)
	s.WaitEvents(t, 10*time.Second, "done", "dj", 1)

	err = c.Declare(map[string]string{"name": "bad", "driver": "postgres", "table": "Bad-Name"})
	require.ErrorContains(t, err, `postgres pipeline "bad": table must be`)

	destroyed, err := c.Destroy("dyn")
	require.NoError(t, err)
	require.Equal(t, []string{"dyn"}, destroyed)
	require.ErrorContains(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "late", Payload: "x"}), "no such pipeline, requested: dyn")
}

// A row leased by an rr instance that died (no heartbeat any more) is taken over once the lease
// expires, and not before.
func TestPostgresExpiredLeaseIsReclaimed(t *testing.T) {
	s, _, table := pgStart(t, pgTwoPipelines)
	conn := pgConn(t, pgTestDSN())
	inserted := time.Now()
	_, err := conn.Exec(context.Background(), "INSERT INTO "+table+
		` (queue, job_id, job, payload, reserved_until, reserved_by, attempts)
		VALUES ('p1', 'orphan', 'app.job', $1, now() + interval '1500 milliseconds', 'dead-instance', 1)`,
		[]byte(helpers.Action("ack")))
	require.NoError(t, err)
	got := s.WaitEvents(t, 15*time.Second, "start", "orphan", 1)
	require.GreaterOrEqual(t, got[0].Time().Sub(inserted), 1400*time.Millisecond, "not before the lease expired")
	s.WaitEvents(t, 10*time.Second, "done", "orphan", 1)
	waitRows(t, table)
}

func TestPostgresTransactionalEnqueue(t *testing.T) {
	s, _, table := pgStart(t, pgTwoPipelines) // poll_interval 10s: only NOTIFY wakes consumers in time
	conn := pgConn(t, pgTestDSN())
	ctx := context.Background()

	// The README's function, rolled back: never processed.
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SELECT "+table+"_push('p1', 'app.mail', $1, '{\"h\":[\"v\"]}', 0, 0, 'tx-rolled-back')", []byte(helpers.Action("ack")))
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))

	// The README's plain INSERT, committed: processed within milliseconds of the commit.
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO "+table+" (queue, job_id, job, payload, headers) VALUES ('p1', 'tx-insert', 'app.mail', $1, '{\"h\":[\"v\"]}')", []byte(helpers.Action("ack")))
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SELECT "+table+"_push(p_queue => 'p2', p_job => 'app.sms', p_payload => $1, p_id => 'tx-func')", []byte(helpers.Action("ack")))
	require.NoError(t, err)
	committed := time.Now()
	require.NoError(t, tx.Commit(ctx))

	got := s.WaitEvents(t, 10*time.Second, "start", "tx-insert", 1)
	require.Less(t, got[0].Time().Sub(committed), 2*time.Second, "woken by NOTIFY, not by the 10 s poll")
	require.Equal(t, []string{"v"}, got[0].Headers["h"])
	require.Equal(t, "app.mail", got[0].Job)
	fn := s.WaitEvents(t, 10*time.Second, "start", "tx-func", 1)
	require.Equal(t, "p2", fn[0].Pipeline)
	s.WaitEvents(t, 10*time.Second, "done", "", 2)
	require.Empty(t, s.Events(t, "start", "tx-rolled-back"), "a rolled back enqueue is never processed")
	waitRows(t, table)
}

const pgShared = pgBase + `
jobs:
  pool:
    num_workers: 2
  consume: ["shared"]
  pipelines:
    shared:
      driver: postgres
      config:
        table: @TABLE@
        prefetch: 5
        lease_timeout: 1s
`

// Two rr instances on one table and queue: every job runs exactly once (long jobs outlive the
// 1 s lease, so only the heartbeat keeps them from being taken by the other instance).
func TestPostgresTwoInstancesShareAQueue(t *testing.T) {
	dsn := pgTestDSN()
	requirePostgres(t, dsn)
	table := pgTable(t, dsn)
	a, ca := start(t, pgConfig(pgShared, dsn, table))
	b, cb := start(t, pgConfig(pgShared, dsn, table))

	const n = 60
	for i := range n {
		payload := helpers.Action("sleep", "ms", 40)
		if i%15 == 0 {
			payload = helpers.Action("sleep", "ms", 2200) // > 2 leases
		}
		c := []*helpers.Client{ca, cb}[i%2]
		require.NoError(t, c.Push(helpers.Job{Pipeline: "shared", ID: "s-" + strconv.Itoa(i), Payload: payload}))
	}
	helpers.Eventually(t, 30*time.Second, func() error {
		if got := len(a.Events(t, "done", "")) + len(b.Events(t, "done", "")); got < n {
			return fmt.Errorf("%d of %d jobs done", got, n)
		}
		return nil
	}, "all jobs done")

	starts := map[string]int{}
	for _, e := range append(a.Events(t, "start", ""), b.Events(t, "start", "")...) {
		starts[e.ID]++
	}
	require.Len(t, starts, n)
	for id, k := range starts {
		require.Equal(t, 1, k, "job %s started %d times", id, k)
	}
	require.NotEmpty(t, a.Events(t, "done", ""), "instance A took part")
	require.NotEmpty(t, b.Events(t, "done", ""), "instance B took part")
	waitStat(t, ca, "shared", func(st stat) bool { return st.Active == 0 && st.Reserved == 0 })
}

// An instance that stops hands the jobs it leased but had not started back at once.
func TestPostgresStoppedInstanceHandsOver(t *testing.T) {
	dsn := pgTestDSN()
	requirePostgres(t, dsn)
	table := pgTable(t, dsn)
	cfg := pgBase + `
jobs:
  num_pollers: 1
  pool:
    num_workers: 1
  consume: [@CONSUME@]
  pipelines:
    shared:
      driver: postgres
      config:
        table: @TABLE@
        prefetch: 5
`
	a, ca := start(t, pgConfig(strings.ReplaceAll(cfg, "@CONSUME@", `"shared"`), dsn, table))
	b, cb := start(t, pgConfig(strings.ReplaceAll(cfg, "@CONSUME@", ""), dsn, table))

	for i := range 3 {
		require.NoError(t, ca.Push(helpers.Job{Pipeline: "shared", ID: "h-" + strconv.Itoa(i), Payload: helpers.Action("sleep", "ms", 700)}))
	}
	a.WaitEvents(t, 10*time.Second, "start", "h-0", 1)
	waitStat(t, ca, "shared", func(st stat) bool { return st.Reserved == 3 }) // two wait in A's queue
	require.NoError(t, a.Stop())
	require.Len(t, a.Events(t, "done", "h-0"), 1, "the running job finished during the graceful stop")

	waitStat(t, cb, "shared", func(st stat) bool { return st.Reserved == 0 && st.Active >= 2 })
	require.NoError(t, cb.Resume("shared"))
	helpers.Eventually(t, 10*time.Second, func() error {
		if got := len(b.Events(t, "done", "")); got+len(a.Events(t, "done", "")) < 3 {
			return fmt.Errorf("%d jobs done by B", got)
		}
		return nil
	}, "the rest done by B")
	starts := map[string]int{}
	for _, e := range append(a.Events(t, "start", ""), b.Events(t, "start", "")...) {
		starts[e.ID]++
	}
	require.Equal(t, map[string]int{"h-0": 1, "h-1": 1, "h-2": 1}, starts)
}

// A pipeline whose database cannot be reached is marked broken with a clear error; the others work.
func TestPostgresBadDSNBreaksOnlyItsPipeline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	s, c, _ := pgStart(t, pgBase+`
jobs:
  pool:
    num_workers: 1
  consume: ["good", "mem", "broken"]
  pipelines:
    good:
      driver: postgres
      config:
        table: @TABLE@
    mem:
      driver: memory
    broken:
      driver: postgres
      config:
        table: @TABLE@
        dsn: "postgres://postgres@`+closed+`/test?connect_timeout=2"
`)
	err = c.Push(helpers.Job{Pipeline: "broken", ID: "x", Payload: helpers.Action("ack")})
	require.ErrorContains(t, err, `postgres pipeline "broken"`)
	require.ErrorContains(t, err, closed)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "good", ID: "g", Payload: helpers.Action("ack")}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "mem", ID: "m", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "g", 1)
	s.WaitEvents(t, 10*time.Second, "done", "m", 1)
	names, err := c.List()
	require.NoError(t, err)
	require.Equal(t, []string{"broken", "good", "mem"}, names)
	require.NoError(t, expectStatus(s.Status, "/ready?plugin=jobs", http.StatusServiceUnavailable), "a broken pipeline makes jobs not ready")
}

// ownPostgres is a private PostgreSQL server for tests that stop and restart it.
type ownPostgres struct {
	bin, dir, data string
	port           int
}

func (p *ownPostgres) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", p.port)
}

// startOwnPostgres runs initdb and pg_ctl (as user postgres when the tests run as root) on a free
// port, and removes the server at cleanup.
func startOwnPostgres(t *testing.T) *ownPostgres {
	t.Helper()
	bin := "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(bin + "/initdb"); err != nil {
		if os.Getenv("RRJOBS_REQUIRE_BROKERS") == "1" {
			t.Fatalf("PostgreSQL server binaries are required (RRJOBS_REQUIRE_BROKERS=1): %v", err)
		}
		t.Skipf("SKIPPED: PostgreSQL server binaries not found: %v", err)
	}
	dir, err := os.MkdirTemp("", "rrjobs-pg-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	p := &ownPostgres{bin: bin, dir: dir, data: dir + "/data", port: freePort(t)}
	if os.Geteuid() == 0 {
		out, err := runCmd(t, "chown", "postgres:postgres", dir)
		require.NoError(t, err, out)
	}
	out, err := p.pg(t, "initdb", "-D", p.data, "-A", "trust", "-U", "postgres", "--no-sync")
	require.NoError(t, err, out)
	t.Cleanup(func() {
		_, _ = p.pg(t, "pg_ctl", "-D", p.data, "-m", "immediate", "-w", "stop")
		_ = os.RemoveAll(dir)
	})
	p.start(t)
	return p
}

func (p *ownPostgres) start(t *testing.T) {
	t.Helper()
	out, err := p.pg(t, "pg_ctl", "-D", p.data, "-l", p.dir+"/server.log", "-w", "-t", "20",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.port, p.dir), "start")
	require.NoError(t, err, out)
}

func (p *ownPostgres) stop(t *testing.T) {
	t.Helper()
	out, err := p.pg(t, "pg_ctl", "-D", p.data, "-m", "fast", "-w", "-t", "20", "stop")
	require.NoError(t, err, out)
}

// pg runs a PostgreSQL tool from bin, as user postgres when running as root.
func (p *ownPostgres) pg(t *testing.T, tool string, args ...string) (string, error) {
	if os.Geteuid() == 0 {
		return runCmd(t, "runuser", append([]string{"-u", "postgres", "--", p.bin + "/" + tool}, args...)...)
	}
	return runCmd(t, p.bin+"/"+tool, args...)
}

func freePort(t *testing.T) int {
	t.Helper()
	addr := helpers.FreeAddr(t)
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(port)
	require.NoError(t, err)
	return n
}

// The database is stopped and started again while jobs are pushed and consumed: pushes fail with a
// clear error while it is down, /ready goes 503, and every push that was acknowledged is processed.
func TestPostgresRestartMidLoad(t *testing.T) {
	helpers.RequirePHP(t)
	pg := startOwnPostgres(t)
	table := pgTable(t, pg.dsn())
	s, c := start(t, pgConfig(pgBase+`
jobs:
  pool:
    num_workers: 2
  consume: ["load"]
  pipelines:
    load:
      driver: postgres
      config:
        table: @TABLE@
        lease_timeout: 2s
        poll_interval: 200ms
`, pg.dsn(), table))
	helpers.Eventually(t, 10*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready")

	var (
		mu       sync.Mutex
		acked    []string
		failures []error
	)
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			default:
			}
			id := "load-" + strconv.Itoa(i)
			err := c.Push(helpers.Job{Pipeline: "load", ID: id, Payload: helpers.Action("sleep", "ms", 20)})
			mu.Lock()
			if err == nil {
				acked = append(acked, id)
			} else {
				failures = append(failures, err)
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // a steady trickle, not a flood
		}
	}()
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	helpers.Eventually(t, 10*time.Second, func() error {
		if n := ackedCount(); n < 30 {
			return fmt.Errorf("%d pushes", n)
		}
		return nil
	}, "load before the restart")

	pg.stop(t)
	helpers.Eventually(t, 10*time.Second, func() error {
		return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusServiceUnavailable)
	}, "not ready while the database is down")
	mu.Lock()
	failuresBefore := len(failures)
	mu.Unlock()
	helpers.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) == failuresBefore {
			return fmt.Errorf("no failed push yet")
		}
		return nil
	}, "a push fails while the database is down")
	mu.Lock()
	require.ErrorContains(t, failures[len(failures)-1], `postgres pipeline "load": push job`)
	mu.Unlock()

	pg.start(t)
	helpers.Eventually(t, 15*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready again")
	after := ackedCount()
	helpers.Eventually(t, 10*time.Second, func() error {
		if n := ackedCount(); n < after+30 {
			return fmt.Errorf("%d pushes after the restart", n-after)
		}
		return nil
	}, "load after the restart")
	close(stopLoad)
	<-loadDone

	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()
	helpers.Eventually(t, 30*time.Second, func() error {
		done := map[string]bool{}
		for _, e := range s.Events(t, "done", "") {
			done[e.ID] = true
		}
		var missing []string
		for _, id := range want {
			if !done[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d acknowledged pushes not processed yet, e.g. %v", len(missing), len(want), missing[:min(len(missing), 5)])
		}
		return nil
	}, "every acknowledged push processed")
	waitStat(t, c, "load", func(st stat) bool { return st.Active == 0 && st.Reserved == 0 && st.Delayed == 0 })
}

// runCmd runs a command and returns its combined output.
func runCmd(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
