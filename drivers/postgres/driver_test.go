package postgres

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

func TestPushRunAck(t *testing.T) {
	requirePostgres(t)
	table := uniqueTable(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(table), q)

	m := msg("a")
	m.Hdrs = map[string][]string{"tenant": {"acme"}}
	m.Prio = 3
	push(t, d, m)
	push(t, d, msg("b"))
	requireCounts(t, d, counts{2, 0, 0})
	st := state(t, d)
	require.False(t, st.Ready)
	require.Equal(t, "q1", st.Queue)
	require.Equal(t, "postgres", st.Driver)
	require.Equal(t, uint64(10), st.Priority)

	run(t, d)
	j := take(t, q)
	require.Equal(t, "a", j.ID(), "priority 3 before the pipeline's 10")
	require.Equal(t, "p1", j.GroupID())
	require.Equal(t, int64(3), j.Priority())
	require.Equal(t, []byte("payload-a"), j.Body())
	require.Equal(t, map[string][]string{"tenant": {"acme"}}, j.Headers())
	ctxJSON, err := j.Context()
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"a","job":"job.a","driver":"postgres","headers":{"tenant":["acme"]},"queue":"q1","pipeline":"p1"}`, string(ctxJSON))
	j2 := take(t, q)
	require.Equal(t, int64(10), j2.Priority(), "priority 0 inherits the pipeline's")
	requireCounts(t, d, counts{0, 0, 2})

	require.NoError(t, j.Ack())
	require.NoError(t, j.Ack(), "a second ack is a no-op")
	require.NoError(t, j2.Ack())
	requireCounts(t, d, counts{0, 0, 0})
	require.Equal(t, 0, rowCount(t, db(t), table), "ack deletes the row")
	require.True(t, state(t, d).Ready)
}

func TestFetchOrderIsPriorityThenRunAt(t *testing.T) {
	requirePostgres(t)
	q := drivertest.NewQueue(0)
	conf := testConfig(uniqueTable(t))
	conf.Prefetch = 1
	d := newDriver(t, conf, q)
	for i, p := range []int64{20, 5, 20, 1} {
		m := msg("j" + strconv.Itoa(i))
		m.Prio = p
		push(t, d, m)
	}
	run(t, d)
	var order []string
	for range 4 {
		j := take(t, q)
		order = append(order, j.ID())
		require.NoError(t, j.Ack())
	}
	require.Equal(t, []string{"j3", "j1", "j0", "j2"}, order)
}

func TestNackAndRequeue(t *testing.T) {
	requirePostgres(t)
	table := uniqueTable(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(table), q)
	run(t, d)
	conn := db(t)

	// NackWithOptions(false) and plain Nack delete the row.
	push(t, d, msg("final"))
	require.NoError(t, take(t, q).NackWithOptions(false, 5))
	push(t, d, msg("plain"))
	require.NoError(t, take(t, q).Nack())
	requireNothing(t, q, quiet)
	require.Equal(t, 0, rowCount(t, conn, table))

	// Requeue merges and persists headers, and delays.
	m := msg("r")
	m.Hdrs = map[string][]string{"keep": {"me"}, "attempts": {"0"}}
	push(t, d, m)
	j := take(t, q)
	start := time.Now()
	require.NoError(t, j.Requeue(map[string][]string{"attempts": {"1"}}, 1))
	require.Error(t, j.Requeue(nil, 0), "a job can be requeued once")
	requireCounts(t, d, counts{0, 1, 0})
	var stored string
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT headers::text FROM "+table).Scan(&stored))
	require.JSONEq(t, `{"keep":["me"],"attempts":["1"]}`, stored, "merged headers are stored")
	j = take(t, q)
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "the delay is honoured")
	require.Equal(t, map[string][]string{"keep": {"me"}, "attempts": {"1"}}, j.Headers())

	// NackWithOptions(true, 0) comes back at once with the same headers.
	require.NoError(t, j.NackWithOptions(true, 0))
	j = take(t, q)
	require.Equal(t, "r", j.ID())
	require.Equal(t, map[string][]string{"keep": {"me"}, "attempts": {"1"}}, j.Headers())
	var attempts int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT attempts FROM "+table).Scan(&attempts))
	require.Equal(t, 3, attempts, "every lease counts an attempt")
	require.NoError(t, j.Ack())
	require.Equal(t, 0, rowCount(t, conn, table))
}

func TestDelayedPush(t *testing.T) {
	requirePostgres(t)
	q := drivertest.NewQueue(0)
	conf := testConfig(uniqueTable(t))
	conf.PollInterval = 10 * time.Second // the fetcher must wake for the due time by itself
	d := newDriver(t, conf, q)
	run(t, d)
	m := msg("later")
	m.DelaySeconds = 1
	start := time.Now()
	push(t, d, m)
	requireCounts(t, d, counts{0, 1, 0})
	j := take(t, q)
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, 900*time.Millisecond)
	require.Less(t, elapsed, 3*time.Second, "woken at the due time, not at poll_interval")
	require.NoError(t, j.Ack())
}

func TestPrefetchLimit(t *testing.T) {
	requirePostgres(t)
	q := drivertest.NewQueue(0)
	conf := testConfig(uniqueTable(t))
	conf.Prefetch = 2
	d := newDriver(t, conf, q)
	for i := range 5 {
		push(t, d, msg("j"+strconv.Itoa(i)))
	}
	run(t, d)
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick)
	time.Sleep(quiet) // nothing more may arrive while both slots are held
	require.Equal(t, uint64(2), q.Len(), "prefetch caps the jobs in the shared queue")
	requireCounts(t, d, counts{3, 0, 2})

	j := take(t, q)
	require.NoError(t, j.Ack())
	require.Eventually(t, func() bool { return q.Len() == 2 }, waitFor, tick, "a freed slot is refilled")
	requireCounts(t, d, counts{2, 0, 2})
}

func TestPauseResume(t *testing.T) {
	requirePostgres(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(uniqueTable(t)), q)
	ctx := context.Background()
	require.ErrorContains(t, d.Pause(ctx, "p1"), "no active listeners")
	run(t, d)
	require.ErrorContains(t, d.Run(ctx, nil), "already running")
	require.NoError(t, d.Pause(ctx, "p1"))
	require.False(t, state(t, d).Ready)
	push(t, d, msg("x"))
	requireNothing(t, q, quiet)
	requireCounts(t, d, counts{1, 0, 0})
	require.NoError(t, d.Resume(ctx, "p1"))
	require.NoError(t, take(t, q).Ack())
	require.True(t, state(t, d).Ready)
}

func TestAutoAckDeletesAtHandOff(t *testing.T) {
	requirePostgres(t)
	table := uniqueTable(t)
	q := drivertest.NewQueue(0)
	conf := testConfig(table)
	conf.Prefetch = 1
	d := newDriver(t, conf, q)
	for _, id := range []string{"a1", "a2", "a3"} {
		m := msg(id)
		m.AutoAckFlag = true
		push(t, d, m)
	}
	run(t, d)
	// auto_ack jobs hold no prefetch slot: all three are handed over at once.
	require.Eventually(t, func() bool { return q.Len() == 3 }, waitFor, tick)
	require.Equal(t, 0, rowCount(t, db(t), table), "rows are deleted at hand-off")
	j := take(t, q)
	require.NoError(t, j.Nack())
	require.NoError(t, j.Requeue(nil, 0), "no-op for auto_ack")
	requireCounts(t, d, counts{0, 0, 0})
}

func TestStopReleasesJobsNotAtAWorker(t *testing.T) {
	requirePostgres(t)
	conf := testConfig(uniqueTable(t))
	qa := drivertest.NewQueue(0)
	a := newNamedDriver(t, "a", conf, qa)
	push(t, a, msg("x"))
	push(t, a, msg("y"))
	run(t, a)
	require.Eventually(t, func() bool { return qa.Len() == 2 }, waitFor, tick)
	atWorker := take(t, qa) // at a worker: keeps its lease
	require.NoError(t, a.Stop(context.Background()))
	require.Equal(t, uint64(0), qa.Len(), "Stop removes the pipeline's jobs from the shared queue")

	qb := drivertest.NewQueue(0)
	b := newNamedDriver(t, "b", conf, qb)
	run(t, b)
	j := take(t, qb)
	require.NotEqual(t, atWorker.ID(), j.ID(), "the released job is ready at once for another consumer")
	requireNothing(t, qb, quiet) // the one at a worker is still leased (30 s)
	require.NoError(t, j.Ack())

	err := atWorker.Ack()
	require.ErrorContains(t, err, `postgres pipeline "a": ack job`)
	require.ErrorContains(t, err, "stopped")
	require.NoError(t, a.Stop(context.Background()), "Stop is idempotent")
	require.ErrorContains(t, a.Push(context.Background(), msg("z")), "stopped")
}

// A job taken by a consumer that then goes away without an answer comes back after its lease.
func TestLeaseExpiryRedelivers(t *testing.T) {
	requirePostgres(t)
	conf := testConfig(uniqueTable(t))
	conf.LeaseTimeout = time.Second
	qa := drivertest.NewQueue(0)
	a := newNamedDriver(t, "a", conf, qa)
	push(t, a, msg("orphan"))
	run(t, a)
	j := take(t, qa)
	leased := time.Now()
	require.NoError(t, a.Stop(context.Background())) // the heartbeat stops with it

	qb := drivertest.NewQueue(0)
	b := newNamedDriver(t, "b", conf, qb)
	run(t, b)
	got := take(t, qb)
	require.Equal(t, "orphan", got.ID())
	require.GreaterOrEqual(t, time.Since(leased), 900*time.Millisecond, "not before the lease expired")
	require.NoError(t, got.Ack())
	require.Error(t, j.Ack(), "the old holder's ack does not count")
}

func TestHeartbeatKeepsTheLease(t *testing.T) {
	requirePostgres(t)
	conf := testConfig(uniqueTable(t))
	conf.LeaseTimeout = time.Second
	qa := drivertest.NewQueue(0)
	a := newNamedDriver(t, "a", conf, qa)
	push(t, a, msg("long"))
	run(t, a)
	j := take(t, qa)

	qb := drivertest.NewQueue(0)
	b := newNamedDriver(t, "b", conf, qb)
	run(t, b)
	requireNothing(t, qb, 2500*time.Millisecond) // 2.5 leases: only the heartbeat keeps it
	requireCounts(t, a, counts{0, 0, 1})
	require.NoError(t, j.Ack())
	requireCounts(t, a, counts{0, 0, 0})
}

func TestLostLeaseIsReported(t *testing.T) {
	requirePostgres(t)
	table := uniqueTable(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, testConfig(table), q)
	push(t, d, msg("x"))
	run(t, d)
	j := take(t, q)
	// Another consumer leased the row after ours expired.
	_, err := db(t).Exec(context.Background(), "UPDATE "+table+" SET attempts = attempts + 1")
	require.NoError(t, err)
	err = j.Ack()
	require.ErrorContains(t, err, `postgres pipeline "p1": job "x": the lease was lost`)
	require.Equal(t, 1, rowCount(t, db(t), table), "a late ack deletes nothing")
}

func TestTwoConsumersShareAQueue(t *testing.T) {
	requirePostgres(t)
	conf := testConfig(uniqueTable(t))
	conf.Prefetch = 5
	qa, qb := drivertest.NewQueue(0), drivertest.NewQueue(0)
	a := newNamedDriver(t, "a", conf, qa)
	b := newNamedDriver(t, "b", conf, qb)
	const n = 200
	for i := range n {
		push(t, a, msg("j"+strconv.Itoa(i)))
	}
	run(t, a)
	run(t, b)

	var mu sync.Mutex
	seen := map[string]int{}
	perConsumer := [2]int{}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i, q := range []*drivertest.Queue{qa, qb} {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				j, ok := q.ExtractMinTimeout(50 * time.Millisecond)
				if !ok {
					continue
				}
				_, _ = j.Context()
				mu.Lock()
				seen[j.ID()]++
				perConsumer[i]++
				mu.Unlock()
				if err := j.Ack(); err != nil {
					t.Errorf("ack %s: %v", j.ID(), err)
				}
			}
		})
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	}, 20*time.Second, tick)
	close(done)
	wg.Wait()
	for id, c := range seen {
		require.Equal(t, 1, c, "job %s was delivered %d times", id, c)
	}
	require.Positive(t, perConsumer[0])
	require.Positive(t, perConsumer[1])
}

func TestTransactionalEnqueue(t *testing.T) {
	requirePostgres(t)
	table := uniqueTable(t)
	q := drivertest.NewQueue(0)
	conf := testConfig(table)
	conf.Priority = 4
	conf.PollInterval = 30 * time.Second // only NOTIFY can wake the fetcher in time
	d := newDriver(t, conf, q)
	run(t, d)
	conn := db(t)
	ctx := context.Background()

	// Rolled back: never visible.
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	var id string
	require.NoError(t, tx.QueryRow(ctx, "SELECT "+table+"_push('q1', 'app.mail', $1, '{\"k\":[\"v\"]}', 0, 0)", []byte("rolled back")).Scan(&id))
	require.NotEmpty(t, id, "the function returns the generated job id")
	requireNothing(t, q, quiet)
	require.NoError(t, tx.Rollback(ctx))

	// Committed through the function: delivered within milliseconds, with its id and headers.
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, "SELECT "+table+"_push(p_queue => 'q1', p_job => 'app.mail', p_payload => $1, p_id => 'tx-1')", []byte("hello")).Scan(&id))
	require.Equal(t, "tx-1", id)
	requireNothing(t, q, quiet) // not before the commit
	committed := time.Now()
	require.NoError(t, tx.Commit(ctx))
	j := take(t, q)
	require.Less(t, time.Since(committed), 2*time.Second, "NOTIFY wakes the consumer, not the 30 s poll")
	require.Equal(t, "tx-1", j.ID())
	require.Equal(t, []byte("hello"), j.Body())
	require.Equal(t, int64(4), j.Priority(), "priority 0 takes the pipeline's from the queues table")
	require.NoError(t, j.Ack())

	// A plain INSERT with the minimal columns works too.
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO "+table+" (queue, job, payload, headers) VALUES ('q1', 'app.sms', $1, '{\"lang\":\"en\"}')", []byte("raw"))
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	j = take(t, q)
	require.Len(t, j.ID(), 36, "a uuid is generated when job_id is not given")
	require.Equal(t, map[string][]string{"lang": {"en"}}, j.Headers())
	require.Equal(t, int64(4), j.Priority())
	require.NoError(t, j.Ack())
	requireNothing(t, q, quiet)
}

func TestConcurrentStartsMigrateOnce(t *testing.T) {
	requirePostgres(t)
	table := uniqueTable(t)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	drivers := make([]*Driver, 6)
	for i := range drivers {
		wg.Go(func() {
			drivers[i], errs[i] = NewDriver(zap.NewNop(), "p"+strconv.Itoa(i), testConfig(table), drivertest.NewQueue(0))
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err)
		require.NoError(t, drivers[i].Stop(context.Background()))
	}
	var versions int
	require.NoError(t, db(t).QueryRow(context.Background(), "SELECT count(*) FROM "+table+"_migrations").Scan(&versions))
	require.Equal(t, len(migrations), versions)
}

func TestBadDSNFailsAtConstruction(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now

	p := &Plugin{}
	require.NoError(t, p.Init(drivertest.NopLogger(), drivertest.Configurer{
		"postgres": map[string]any{"dsn": "postgres://postgres@" + addr + "/test?connect_timeout=2"},
	}))
	_, err = p.DriverFromPipeline(drivertest.NewPipeline("orders", "postgres", nil), drivertest.NewQueue(0))
	require.ErrorContains(t, err, `postgres pipeline "orders"`)
	require.ErrorContains(t, err, "postgres@127.0.0.1")
	require.ErrorContains(t, err, "connect")

	_, err = p.DriverFromPipeline(drivertest.NewPipeline("x", "postgres", map[string]any{"dsn": "postgres://%zz"}), drivertest.NewQueue(0))
	require.ErrorContains(t, err, `postgres pipeline "x": invalid dsn`)

	noDSN := &Plugin{}
	require.NoError(t, noDSN.Init(drivertest.NopLogger(), drivertest.Configurer{}))
	_, err = noDSN.DriverFromPipeline(drivertest.NewPipeline("y", "postgres", nil), drivertest.NewQueue(0))
	require.ErrorContains(t, err, `postgres pipeline "y": no database`)
}

func TestMissingPrivilegesFailAtConstruction(t *testing.T) {
	requirePostgres(t)
	conn := db(t)
	ctx := context.Background()
	role := "rrt_noperm_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	_, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })

	cfg, err := pgx.ParseConfig(testDSN())
	require.NoError(t, err)
	dsn := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", role, cfg.Host, cfg.Port, cfg.Database)
	conf := testConfig(uniqueTable(t))
	conf.DSN = dsn
	_, err = NewDriver(zap.NewNop(), "restricted", conf, drivertest.NewQueue(0))
	require.ErrorContains(t, err, `postgres pipeline "restricted"`)
	require.ErrorContains(t, err, "permission denied")
}

// Once the schema is installed, a user with DML rights only can run the pipeline.
func TestInstalledSchemaNeedsNoCreatePrivilege(t *testing.T) {
	requirePostgres(t)
	conn := db(t)
	ctx := context.Background()
	table := uniqueTable(t)
	owner := newDriver(t, testConfig(table), drivertest.NewQueue(0)) // installs the schema as postgres
	require.NoError(t, owner.Stop(ctx))

	role := "rrt_dml_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + table + ", " + table + "_queues TO " + role,
		"GRANT SELECT ON " + table + "_migrations TO " + role,
		"GRANT USAGE ON SEQUENCE " + table + "_id_seq TO " + role,
	} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	cfg, err := pgx.ParseConfig(testDSN())
	require.NoError(t, err)
	conf := testConfig(table)
	conf.DSN = fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", role, cfg.Host, cfg.Port, cfg.Database)
	q := drivertest.NewQueue(0)
	d := newDriver(t, conf, q)
	push(t, d, msg("dml"))
	run(t, d)
	j := take(t, q)
	require.NoError(t, j.Requeue(map[string][]string{"a": {"b"}}, 0))
	require.NoError(t, take(t, q).Ack())
}

func TestDeclaredPipelineThroughThePlugin(t *testing.T) {
	requirePostgres(t)
	table := uniqueTable(t)
	p := &Plugin{}
	require.NoError(t, p.Init(drivertest.NopLogger(), drivertest.Configurer{"postgres": map[string]any{"dsn": testDSN(), "max_conns": 2}}))
	q := drivertest.NewQueue(0)
	drv, err := p.DriverFromPipeline(drivertest.NewPipeline("dyn", "postgres", map[string]any{
		"table": table, "queue": "dq", "priority": "3", "prefetch": "1", "poll_interval": "100ms",
	}), q)
	require.NoError(t, err)
	d := drv.(*Driver)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	require.Equal(t, int32(2), d.pool.Config().MaxConns)
	push(t, d, msg("d1"))
	run(t, d)
	j := take(t, q)
	require.Equal(t, int64(3), j.Priority())
	ctxJSON, err := j.Context()
	require.NoError(t, err)
	require.Contains(t, string(ctxJSON), `"queue":"dq","pipeline":"dyn"`)
	require.NoError(t, j.Ack())

	// Static pipelines read jobs.pipelines.<name>.config.
	cfg := drivertest.Configurer{
		"postgres": map[string]any{"dsn": testDSN()},
		"jobs":     map[string]any{"pipelines": map[string]any{"st": map[string]any{"config": map[string]any{"table": table, "queue": "sq", "prefetch": 7}}}},
	}
	p2 := &Plugin{}
	require.NoError(t, p2.Init(drivertest.NopLogger(), cfg))
	drv, err = p2.DriverFromConfig("jobs.pipelines.st.config", drivertest.NewQueue(0), drivertest.NewPipeline("st", "postgres", nil))
	require.NoError(t, err)
	d2 := drv.(*Driver)
	t.Cleanup(func() { _ = d2.Stop(context.Background()) })
	require.Equal(t, "sq", d2.conf.Queue)
	require.Equal(t, 7, d2.conf.Prefetch)
}

// The database goes away and comes back: pushes fail with a clear error meanwhile, State reports
// it, and consumption resumes by itself.
func TestConnectionLossAndRecovery(t *testing.T) {
	requirePostgres(t)
	px := newProxy(t)
	conf := testConfig(uniqueTable(t))
	conf.DSN = px.dsn(t)
	q := drivertest.NewQueue(0)
	d := newDriver(t, conf, q)
	run(t, d)
	push(t, d, msg("before"))
	require.NoError(t, take(t, q).Ack())

	px.cut()
	err := d.Push(context.Background(), msg("during"))
	require.ErrorContains(t, err, `postgres pipeline "p1": push job "during"`)
	require.Eventually(t, func() bool { return state(t, d).ErrorMessage != "" }, waitFor, tick)
	require.Contains(t, state(t, d).ErrorMessage, `postgres pipeline "p1"`)

	px.restore()
	require.Eventually(t, func() bool { return state(t, d).ErrorMessage == "" }, waitFor, tick)
	push(t, d, msg("after"))
	j := take(t, q)
	require.Equal(t, "after", j.ID())
	require.NoError(t, j.Ack())
}

// The pgxpool settings: max_conns wins over pool_* DSN parameters, a DSN without connect_timeout
// gets 5 s (the LISTEN connection too), and a stopped pipeline's pool refuses work.
func TestPoolSettings(t *testing.T) {
	requirePostgres(t)
	conf := testConfig(uniqueTable(t))
	conf.DSN = testDSN() + "&pool_max_conns=50"
	conf.MaxConns = 3
	d := newDriver(t, conf, drivertest.NewQueue(0))
	pc := d.pool.Config()
	require.Equal(t, int32(3), pc.MaxConns)
	require.Equal(t, defaultConnectTimeout, pc.ConnConfig.ConnectTimeout)
	require.Equal(t, defaultConnectTimeout, d.connCfg.ConnectTimeout)
	require.LessOrEqual(t, d.pool.Stat().TotalConns(), int32(1), "connections are dialled when needed")

	// At most max_conns statements run at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := int32(0)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, d.with(context.Background(), func(c *pgx.Conn) error {
				mu.Lock()
				peak = max(peak, d.pool.Stat().AcquiredConns())
				mu.Unlock()
				_, err := c.Exec(context.Background(), "SELECT pg_sleep(0.05)")
				return err
			}))
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, peak, int32(3))

	conf2 := testConfig(uniqueTable(t))
	conf2.DSN = testDSN() + "&connect_timeout=2"
	d2 := newDriver(t, conf2, drivertest.NewQueue(0))
	require.Equal(t, 2*time.Second, d2.connCfg.ConnectTimeout)

	require.NoError(t, d2.Stop(context.Background()))
	err := d2.with(context.Background(), func(*pgx.Conn) error { return nil })
	require.ErrorIs(t, err, errPoolClosed)
	_, err = d2.exec("SELECT 1")
	require.EqualError(t, err, errPoolClosed.Error(), "no database location for a stopped pipeline")
}
