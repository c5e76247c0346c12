package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	rrerrors "github.com/roadrunner-server/errors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const (
	// maxDelaySeconds caps a job delay (about 68 years).
	maxDelaySeconds = 1 << 31
	// opTimeout bounds the database calls of Ack, Nack, Requeue, heartbeats and lease releases.
	opTimeout = 15 * time.Second
	// setupTimeout bounds the connection and migration at construction.
	setupTimeout = 30 * time.Second
	// defaultConnectTimeout applies when the DSN sets no connect_timeout.
	defaultConnectTimeout = 5 * time.Second
	// minIdleWait keeps the fetcher from spinning on a job due "now".
	minIdleWait = 5 * time.Millisecond
	// maxRetryWait caps the pause between attempts while the database is unreachable.
	maxRetryWait = time.Second
	// pingAfterIdle is how long a pooled connection may sit idle before it is pinged on checkout: a
	// database restart closes idle connections, and the first statement on one would otherwise fail.
	pingAfterIdle = time.Second
)

// errPoolClosed is returned by database calls after Stop closed the pool.
var errPoolClosed = errors.New("the pipeline is stopped (connection pool closed)")

// Driver is the postgres jobs.Driver of one pipeline.
//
// Rows of the table with queue = Config.Queue are the jobs. While the pipeline consumes, a fetcher
// leases ready rows (FOR UPDATE SKIP LOCKED, reserved_until = now() + lease_timeout, attempts + 1)
// while fewer than prefetch jobs of this pipeline are held by this process, and inserts them into
// the shared queue. A LISTEN connection wakes the fetcher when a row is inserted or made due again
// (a trigger NOTIFYs on commit); otherwise it polls every poll_interval, or sooner when a delayed
// row or a lease comes due. A heartbeat extends the leases of every held job every
// lease_timeout/3. The shared queue's Insert is never called with mu held.
type Driver struct {
	log      *zap.Logger
	queue    jobs.Queue
	pipeline string
	conf     Config
	st       statements
	connCfg  *pgx.ConnConfig // for the LISTEN connection and error texts
	pool     *pgxpool.Pool   // at most conf.MaxConns connections, dialled lazily
	owner    string          // reserved_by of our leases (diagnostics)
	wake     chan struct{}

	life       context.Context
	lifeCancel context.CancelFunc
	bgWG       sync.WaitGroup

	mu        sync.Mutex
	consume   driverkit.ConsumeState // guarded by mu
	held      map[int64]*Item        // leased, non-auto_ack jobs in the shared queue or at a worker
	listenErr error
	fetchErr  error
}

var _ jobs.Driver = (*Driver)(nil)

// NewDriver connects to the database, creates or migrates the schema, records the pipeline
// priority for SQL producers and returns a driver that does not consume until Run.
func NewDriver(log *zap.Logger, pipeline string, conf Config, queue jobs.Queue) (*Driver, error) {
	const op = rrerrors.Op("postgres_new_driver")
	if queue == nil {
		return nil, rrerrors.E(op, fmt.Errorf("postgres pipeline %q: nil queue", pipeline))
	}
	if pipeline == "" {
		return nil, rrerrors.E(op, errors.New("postgres pipeline: empty pipeline name"))
	}
	if log == nil {
		log = zap.NewNop()
	}
	poolCfg, err := pgxpool.ParseConfig(conf.DSN)
	if err != nil {
		// pgx's parse errors never echo the password.
		return nil, rrerrors.E(op, fmt.Errorf("postgres pipeline %q: invalid dsn: %w", pipeline, err))
	}
	if poolCfg.ConnConfig.ConnectTimeout == 0 {
		poolCfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	connCfg := poolCfg.ConnConfig.Copy()
	if conf.Priority <= 0 {
		conf.Priority = DefaultPriority
	}
	if conf.Prefetch <= 0 {
		conf.Prefetch = DefaultPrefetch
	}
	if conf.PollInterval <= 0 {
		conf.PollInterval = DefaultPollInterval
	}
	if conf.LeaseTimeout <= 0 {
		conf.LeaseTimeout = DefaultLeaseTimeout
	}
	if conf.Table == "" {
		conf.Table = DefaultTable
	}
	if conf.Queue == "" {
		conf.Queue = pipeline
	}
	if conf.MaxConns <= 0 {
		conf.MaxConns = DefaultMaxConns
	}
	// max_conns wins over pool_* parameters of the DSN; no connection is opened until one is needed.
	poolCfg.MaxConns = int32(min(conf.MaxConns, maxMaxConns)) //nolint:gosec // bounded
	poolCfg.MinConns = 0
	poolCfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
		return p.IdleDuration > pingAfterIdle
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), poolCfg)
	if err != nil {
		return nil, rrerrors.E(op, fmt.Errorf("postgres pipeline %q: create the connection pool: %w", pipeline, err))
	}

	d := &Driver{
		consume:  driverkit.ConsumeState{Driver: pluginName, Pipeline: pipeline},
		log:      log,
		queue:    queue,
		pipeline: pipeline,
		conf:     conf,
		st:       buildStatements(conf.Table),
		connCfg:  connCfg,
		pool:     pool,
		owner:    ownerID(pipeline),
		wake:     make(chan struct{}, 1),
		held:     make(map[int64]*Item),
	}
	d.life, d.lifeCancel = context.WithCancel(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	err = d.with(ctx, func(c *pgx.Conn) error {
		if err := migrate(ctx, c, conf.Table); err != nil {
			return fmt.Errorf("create or migrate the schema of table %s: %w", conf.Table, err)
		}
		if _, err := c.Exec(ctx, d.st.setPriority, conf.Queue, conf.Priority); err != nil {
			return fmt.Errorf("record the priority of queue %q in %s_queues: %w", conf.Queue, conf.Table, err)
		}
		return nil
	})
	if err != nil {
		d.lifeCancel()
		d.pool.Close()
		return nil, rrerrors.E(op, fmt.Errorf("postgres pipeline %q: %w", pipeline, describe(err, connCfg)))
	}
	return d, nil
}

// describe adds where the driver tried to connect to a database error, on one line.
func describe(err error, cfg *pgx.ConnConfig) error {
	if errors.Is(err, errPoolClosed) {
		return err
	}
	return fmt.Errorf("database %s@%s:%d/%s: %w", cfg.User, cfg.Host, cfg.Port, cfg.Database, oneLine(err))
}

// with runs fn on a pooled connection (pgxpool pings one that was idle for more than
// pingAfterIdle). When fn fails before anything reached the server (a connection that died while
// idle for less than that), the pool's connections are dropped and fn is retried once on a new one.
func (d *Driver) with(ctx context.Context, fn func(*pgx.Conn) error) error {
	for attempt := 0; ; attempt++ {
		c, err := d.pool.Acquire(ctx)
		if err != nil {
			if errors.Is(err, puddle.ErrClosedPool) {
				return errPoolClosed
			}
			return err
		}
		err = fn(c.Conn())
		c.Release()
		if err != nil && attempt == 0 && ctx.Err() == nil && pgconn.SafeToRetry(err) {
			d.pool.Reset()
			continue
		}
		return err
	}
}

// closePool closes the pool. pgxpool waits for the connections in use (statements of Ack, Nack,
// Requeue or State still running, each bounded by its own timeout); Stop waits for that at most
// until ctx ends.
func (d *Driver) closePool(ctx context.Context) {
	closed := make(chan struct{})
	go func() {
		d.pool.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		d.log.Warn("connection pool is still closing: statements are still running",
			zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	}
}

// closeConn closes a connection without waiting long on a dead server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// lineError is an error whose message was flattened; it still unwraps to the original.
type lineError struct {
	msg string
	err error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.err }

// oneLine flattens a multi-line error (pgx lists every connection attempt on its own line, often
// the same one twice: with and without TLS) into one line without repeated parts.
func oneLine(err error) error {
	msg := err.Error()
	if !strings.Contains(msg, "\n") {
		return err
	}
	var b strings.Builder
	seen := map[string]bool{}
	for i, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || seen[line] {
			continue
		}
		seen[line] = true
		switch {
		case i == 0:
		case strings.HasSuffix(b.String(), ":"):
			b.WriteString(" ")
		default:
			b.WriteString("; ")
		}
		b.WriteString(line)
	}
	return &lineError{msg: b.String(), err: err}
}

func ownerID(pipeline string) string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s:%s", host, os.Getpid(), pipeline, hex.EncodeToString(b[:]))
}

// Push inserts the job row. The insert trigger NOTIFYs every consumer of the queue on commit.
func (d *Driver) Push(ctx context.Context, msg jobs.Message) error {
	const op = rrerrors.Op("postgres_push")
	if msg == nil {
		return rrerrors.E(op, fmt.Errorf("postgres pipeline %q: nil message", d.pipeline))
	}
	d.mu.Lock()
	stopped := d.consume.Stopped()
	d.mu.Unlock()
	if stopped {
		return rrerrors.E(op, fmt.Errorf("postgres pipeline %q is stopped, job %q was not pushed", d.pipeline, msg.ID()))
	}
	prio := msg.Priority()
	if prio <= 0 {
		prio = d.conf.Priority
	}
	hdr, err := encodeHeaders(msg.Headers())
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("postgres pipeline %q: job %q: encode headers: %w", d.pipeline, msg.ID(), err))
	}
	payload := msg.Payload()
	if payload == nil {
		payload = []byte{}
	}
	delay := min(max(msg.Delay(), 0), maxDelaySeconds)
	err = d.with(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, d.st.push, d.conf.Queue, msg.ID(), msg.Name(), payload, hdr, prio, msg.AutoAck(), float64(delay))
		return err
	})
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("postgres pipeline %q: push job %q: %w", d.pipeline, msg.ID(), describe(err, d.connCfg)))
	}
	if delay == 0 {
		d.signal()
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was pushed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", msg.ID()), zap.Int64("delay_seconds", delay))
	}
	return nil
}

// Run starts consuming the pipeline.
func (d *Driver) Run(_ context.Context, _ jobs.Pipeline) error {
	return driverkit.WithOp("postgres_run", d.lifecycle().Run(zap.String("table", d.conf.Table), zap.String("queue", d.conf.Queue)))
}

// Resume starts consuming again after Pause.
func (d *Driver) Resume(_ context.Context, _ string) error {
	return driverkit.WithOp("postgres_resume", d.lifecycle().Resume())
}

// Pause stops leasing new jobs; jobs already in the shared queue still run (their leases are kept
// alive) and pushes are stored. It waits for the fetcher to exit, or for ctx.
func (d *Driver) Pause(ctx context.Context, _ string) error {
	return driverkit.WithOp("postgres_pause", d.lifecycle().Pause(ctx))
}

// lifecycle is Run, Resume and Pause on this driver's consume loop.
func (d *Driver) lifecycle() *driverkit.Lifecycle {
	return &driverkit.Lifecycle{
		Mu: &d.mu, State: &d.consume, Parent: d.life, Log: d.log, LoopName: "fetcher",
		First: func() {
			d.bgWG.Add(2)
			go d.listen()
			go d.heartbeat()
		},
		Loop: d.fetchLoop,
	}
}

// Stop stops consuming for good: the pipeline's jobs are removed from the shared queue and their
// leases released (they are ready again at once, for any consumer); jobs at a worker keep their
// lease until it expires, since no heartbeat extends it any more. The pool is closed. Idempotent.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	done, first := d.consume.Stop()
	d.mu.Unlock()
	if !first {
		return nil
	}

	// Free room for a fetcher blocked in Insert, then wait for it to exit.
	released := d.dropFromQueue(ctx)
	if !driverkit.WaitDone(ctx, done) {
		d.log.Warn("pipeline fetcher is still blocked inserting a job into the full queue",
			zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	}
	released += d.dropFromQueue(ctx)

	d.lifeCancel()
	d.bgWG.Wait()
	d.closePool(ctx)

	d.mu.Lock()
	atWorkers := len(d.held)
	d.mu.Unlock()
	d.log.Info("pipeline was stopped", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline),
		zap.Int("released", released), zap.Int("left_to_lease_expiry", atWorkers))
	return nil
}

// State reports the counts of the pipeline's queue from the table: Active = due and not leased,
// Delayed = due later, Reserved = leased (in a shared queue or at a worker, by any rr instance).
// While the database is unreachable the counts are zero and ErrorMessage says why.
func (d *Driver) State(ctx context.Context) (*jobs.State, error) {
	d.mu.Lock()
	st := &jobs.State{
		Pipeline: d.pipeline,
		Driver:   pluginName,
		Queue:    d.conf.Queue,
		Priority: uint64(d.conf.Priority), //nolint:gosec // validated >= 1
		Ready:    d.consume.Running(),
	}
	listenErr, fetchErr, running := d.listenErr, d.fetchErr, d.consume.Running()
	d.mu.Unlock()

	var active, delayed, reserved int64
	err := d.with(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, d.st.state, d.conf.Queue).Scan(&active, &delayed, &reserved)
	})
	switch {
	case err != nil:
		st.ErrorMessage = fmt.Sprintf("postgres pipeline %q: read the queue state: %v", d.pipeline, describe(err, d.connCfg))
	case running && listenErr != nil:
		st.ErrorMessage = fmt.Sprintf("postgres pipeline %q: LISTEN connection lost: %v", d.pipeline, listenErr)
	case running && fetchErr != nil:
		st.ErrorMessage = fmt.Sprintf("postgres pipeline %q: fetch failed: %v", d.pipeline, fetchErr)
	}
	if err == nil {
		st.Active, st.Delayed, st.Reserved = max(active, 0), max(delayed, 0), max(reserved, 0)
	}
	return st, nil
}

// signal wakes the fetcher (a job was pushed or a prefetch slot was freed).
func (d *Driver) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// freeSlots is how many more jobs the fetcher may lease.
func (d *Driver) freeSlots() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conf.Prefetch - len(d.held)
}

// fetchLoop leases jobs and feeds the shared queue until ctx ends (Pause / Stop).
func (d *Driver) fetchLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	retry := time.Duration(0)
	for ctx.Err() == nil {
		n := d.freeSlots()
		if n <= 0 {
			if ce := d.log.Check(zapcore.DebugLevel, "prefetch limit was reached, waiting for the jobs to be processed"); ce != nil {
				ce.Write(zap.String("pipeline", d.pipeline), zap.Int("prefetch", d.conf.Prefetch))
			}
			select {
			case <-d.wake:
			case <-ctx.Done():
				return
			}
			continue
		}

		items, err := d.fetch(ctx, n)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.setFetchErr(err)
			retry = min(max(retry*2, 50*time.Millisecond), maxRetryWait, d.conf.PollInterval)
			if !sleepCtx(ctx, retry) {
				return
			}
			continue
		}
		retry = 0
		d.setFetchErr(nil)

		for i, it := range items {
			if ctx.Err() != nil {
				d.release(items[i:])
				break
			}
			d.queue.Insert(it)
		}
		if ctx.Err() != nil {
			if d.isStopped() {
				d.dropFromQueue(context.Background())
			}
			return
		}
		if len(items) >= n {
			continue
		}

		timer := time.NewTimer(d.idleWait(ctx))
		select {
		case <-d.wake:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

// fetch leases up to n ready rows, deletes the auto_ack ones among them, and returns the jobs to
// hand to the shared queue, best first. The non-auto_ack ones are registered as held.
func (d *Driver) fetch(ctx context.Context, n int) ([]*Item, error) {
	var items []*Item
	err := d.with(ctx, func(c *pgx.Conn) error {
		items = items[:0]
		rows, err := c.Query(ctx, d.st.fetch, d.conf.Queue, n, d.conf.LeaseTimeout.Seconds(), d.owner)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			it := &Item{drv: d}
			var hdr []byte
			if err := rows.Scan(&it.rowID, &it.token, &it.id, &it.job, &it.payload, &hdr, &it.priority, &it.autoAck, &it.runAt); err != nil {
				return fmt.Errorf("read a leased row: %w", err)
			}
			h, herr := driverkit.DecodeHeadersJSON(hdr)
			if herr != nil {
				d.log.Warn("job headers could not be decoded, the job is delivered without them",
					zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Error(herr))
			}
			it.headers = h
			items = append(items, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, describe(err, d.connCfg)
	}
	if len(items) == 0 {
		return nil, nil
	}
	sort.Slice(items, func(a, b int) bool {
		x, y := items[a], items[b]
		if x.priority != y.priority {
			return x.priority < y.priority
		}
		if !x.runAt.Equal(y.runAt) {
			return x.runAt.Before(y.runAt)
		}
		return x.rowID < y.rowID
	})

	var autoAck []*Item
	d.mu.Lock()
	for _, it := range items {
		it.state = stQueued
		if it.autoAck {
			autoAck = append(autoAck, it)
			continue
		}
		d.held[it.rowID] = it
	}
	d.mu.Unlock()

	if len(autoAck) > 0 {
		// auto_ack: the row is deleted when the job is handed over; if that fails the jobs are not
		// handed over and come back when their lease expires.
		if err := d.batch(d.st.deleteMany, autoAck, nil); err != nil {
			d.log.Error("auto_ack jobs could not be deleted, they are delivered again after their lease expires",
				zap.String("pipeline", d.pipeline), zap.Int("count", len(autoAck)), zap.Error(err))
			out := items[:0]
			for _, it := range items {
				if !it.autoAck {
					out = append(out, it)
				}
			}
			return out, nil
		}
		d.mu.Lock()
		for _, it := range autoAck {
			it.acked = true
		}
		d.mu.Unlock()
	}
	if ce := d.log.Check(zapcore.DebugLevel, "jobs were leased"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.Int("count", len(items)))
	}
	return items, nil
}

// idleWait is how long the fetcher sleeps when the queue had nothing ready: poll_interval, or less
// when a delayed job or a lease comes due sooner. A notification or a freed slot wakes it earlier.
func (d *Driver) idleWait(ctx context.Context) time.Duration {
	wait := d.conf.PollInterval
	var secs *float64
	err := d.with(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, d.st.nextDue, d.conf.Queue).Scan(&secs)
	})
	if err == nil && secs != nil {
		if w := time.Duration(*secs * float64(time.Second)); w < wait {
			wait = max(w, minIdleWait)
		}
	}
	return wait
}

// batch runs a statement taking ($1 ids, $2 attempts[, extra...]) for items.
func (d *Driver) batch(sql string, items []*Item, onRow func(pgx.Rows) error, extra ...any) error {
	ids := make([]int64, len(items))
	tokens := make([]int32, len(items))
	for i, it := range items {
		ids[i], tokens[i] = it.rowID, it.token
	}
	args := append([]any{ids, tokens}, extra...)
	ctx, cancel := context.WithTimeout(d.life, opTimeout)
	defer cancel()
	return d.with(ctx, func(c *pgx.Conn) error {
		if onRow == nil {
			_, err := c.Exec(ctx, sql, args...)
			return err
		}
		rows, err := c.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := onRow(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// release gives leased jobs that never reached a worker back to the table (ready at once).
func (d *Driver) release(items []*Item) int {
	var rel []*Item
	d.mu.Lock()
	for _, it := range items {
		if it.acked || it.state != stQueued {
			continue
		}
		it.state = stDone
		delete(d.held, it.rowID)
		rel = append(rel, it)
	}
	d.mu.Unlock()
	if len(rel) == 0 {
		return 0
	}
	d.signal()
	// Stop cancels d.life after the releases; until then they run with opTimeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.life), opTimeout)
	defer cancel()
	ids := make([]int64, len(rel))
	tokens := make([]int32, len(rel))
	for i, it := range rel {
		ids[i], tokens[i] = it.rowID, it.token
	}
	err := d.with(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, d.st.release, ids, tokens)
		return err
	})
	if err != nil {
		d.log.Warn("leases could not be released, the jobs are delivered again after their lease expires",
			zap.String("pipeline", d.pipeline), zap.Int("count", len(rel)), zap.Error(err))
		return 0
	}
	return len(rel)
}

// dropFromQueue removes this pipeline's jobs from the shared queue and releases their leases.
func (d *Driver) dropFromQueue(_ context.Context) int {
	items := driverkit.RemoveFromQueue(d.queue, d.pipeline, func(it *Item) bool { return it.drv == d })
	return d.release(items)
}

func (d *Driver) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.consume.Stopped()
}

// settle ends the life of a held job in this process: false when it was already settled (or is an
// auto_ack job), in which case the caller does nothing.
func (d *Driver) settle(it *Item) bool {
	d.mu.Lock()
	if it.acked || it.state == stDone {
		d.mu.Unlock()
		return false
	}
	it.state = stDone
	delete(d.held, it.rowID)
	d.mu.Unlock()
	d.signal()
	return true
}

// finish implements Ack and Nack: the row is deleted if our lease still holds.
func (d *Driver) finish(it *Item, what, sql string, args ...any) error {
	op := rrerrors.Op("postgres_" + what)
	if !d.settle(it) {
		return nil
	}
	affected, err := d.exec(sql, args...)
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("postgres pipeline %q: %s job %q: %w; it is delivered again after its lease expires", d.pipeline, what, it.id, err))
	}
	if affected == 0 {
		return rrerrors.E(op, d.lostLease(it))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was "+what+"ed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id))
	}
	return nil
}

// requeue implements Requeue and NackWithOptions(true, delay).
func (d *Driver) requeue(it *Item, headers map[string][]string, delay int) error {
	const op = rrerrors.Op("postgres_requeue")
	d.mu.Lock()
	acked, done := it.acked, it.state == stDone
	d.mu.Unlock()
	if acked {
		return nil
	}
	if done || !d.settle(it) {
		return rrerrors.E(op, fmt.Errorf("postgres pipeline %q: job %q was already acknowledged or requeued", d.pipeline, it.id))
	}
	var hdr any // nil keeps the stored headers
	if len(headers) > 0 {
		s, err := encodeHeaders(driverkit.MergeHeaders(it.headers, headers))
		if err != nil {
			return rrerrors.E(op, fmt.Errorf("postgres pipeline %q: job %q: encode headers: %w", d.pipeline, it.id, err))
		}
		hdr = s
	}
	secs := float64(min(max(delay, 0), maxDelaySeconds))
	affected, err := d.exec(d.st.requeue, it.rowID, it.token, secs, hdr)
	if err != nil {
		return rrerrors.E(op, fmt.Errorf("postgres pipeline %q: requeue job %q: %w; it is delivered again after its lease expires", d.pipeline, it.id, err))
	}
	if affected == 0 {
		return rrerrors.E(op, d.lostLease(it))
	}
	if delay <= 0 {
		d.signal()
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was requeued"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Int("delay_seconds", delay))
	}
	return nil
}

func (d *Driver) lostLease(it *Item) error {
	return fmt.Errorf("postgres pipeline %q: job %q: the lease was lost (the row was deleted, or leased again after lease_timeout %s expired), nothing was changed",
		d.pipeline, it.id, d.conf.LeaseTimeout)
}

// exec runs one statement with opTimeout and returns the rows it touched.
func (d *Driver) exec(sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var affected int64
	err := d.with(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, sql, args...)
		affected = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, describe(err, d.connCfg)
	}
	return affected, nil
}

// heartbeat extends the leases of every held job every lease_timeout/3 until Stop.
func (d *Driver) heartbeat() {
	defer d.bgWG.Done()
	t := time.NewTicker(max(d.conf.LeaseTimeout/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-d.life.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		items := make([]*Item, 0, len(d.held))
		for _, it := range d.held {
			items = append(items, it)
		}
		d.mu.Unlock()
		if len(items) == 0 {
			continue
		}
		extended := make(map[int64]bool, len(items))
		err := d.batch(d.st.heartbeat, items, func(r pgx.Rows) error {
			var id int64
			if err := r.Scan(&id); err != nil {
				return err
			}
			extended[id] = true
			return nil
		}, d.conf.LeaseTimeout.Seconds())
		if err != nil {
			if d.life.Err() == nil {
				d.log.Warn("job leases could not be extended", zap.String("pipeline", d.pipeline), zap.Int("count", len(items)), zap.Error(err))
			}
			continue
		}
		d.mu.Lock()
		for _, it := range items {
			if !extended[it.rowID] && it.state != stDone && !it.lost {
				it.lost = true
				d.log.Warn("job lease was lost: another consumer may run it too", zap.String("pipeline", d.pipeline), zap.String("id", it.id))
			}
		}
		d.mu.Unlock()
	}
}

// listen keeps a LISTEN connection on the table's channel and wakes the fetcher on every
// notification for our queue, and after every reconnect (notifications may have been missed).
func (d *Driver) listen() {
	defer d.bgWG.Done()
	channel := pgx.Identifier{d.conf.Table}.Sanitize()
	retry := time.Duration(0)
	for d.life.Err() == nil {
		err := d.listenOnce(channel)
		if d.life.Err() != nil {
			return
		}
		d.setListenErr(err)
		d.pool.Reset()
		retry = min(max(retry*2, 50*time.Millisecond), maxRetryWait)
		if !sleepCtx(d.life, retry) {
			return
		}
	}
}

// listenOnce connects, LISTENs and waits for notifications until the connection fails.
func (d *Driver) listenOnce(channel string) error {
	conn, err := pgx.ConnectConfig(d.life, d.connCfg)
	if err != nil {
		return describe(err, d.connCfg)
	}
	defer closeConn(conn)
	if _, err := conn.Exec(d.life, "LISTEN "+channel); err != nil {
		return describe(err, d.connCfg)
	}
	if d.setListenErr(nil) {
		d.log.Info("database connection is back", zap.String("pipeline", d.pipeline))
	}
	d.signal()
	for {
		n, err := conn.WaitForNotification(d.life)
		if err != nil {
			return describe(err, d.connCfg)
		}
		if n.Payload == d.conf.Queue {
			d.signal()
		}
	}
}

// setListenErr records the LISTEN connection's state; it reports whether an error was cleared.
func (d *Driver) setListenErr(err error) bool {
	d.mu.Lock()
	prev := d.listenErr
	d.listenErr = err
	d.mu.Unlock()
	if err != nil && prev == nil {
		d.log.Error("database connection was lost, retrying", zap.String("pipeline", d.pipeline), zap.Error(err))
	}
	return err == nil && prev != nil
}

func (d *Driver) setFetchErr(err error) {
	d.mu.Lock()
	prev := d.fetchErr
	d.fetchErr = err
	d.mu.Unlock()
	switch {
	case err != nil && prev == nil:
		d.log.Error("jobs could not be fetched, retrying", zap.String("pipeline", d.pipeline), zap.Error(err))
	case err == nil && prev != nil:
		d.log.Info("jobs are fetched again", zap.String("pipeline", d.pipeline))
	}
}

// sleepCtx sleeps for d unless ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
