package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// schemaLockClass is the first key of the transaction-level advisory lock taken while migrating
// (the second is hashtext(table)), so two rr instances starting at once migrate one after the other.
const schemaLockClass = 0x726a6f62 // "rjob"

// migrations are applied in order, each once per table, recorded in <table>_migrations. %[1]s is
// the table name (validated by tableRe, so it is safe to splice into SQL).
var migrations = []string{
	// 1: the jobs table, the per-queue priorities, defaults and NOTIFY triggers, and the push function.
	`
CREATE TABLE %[1]s (
	id             bigserial   PRIMARY KEY,
	queue          text        NOT NULL,
	job_id         text        NOT NULL DEFAULT '',
	job            text        NOT NULL DEFAULT '',
	payload        bytea       NOT NULL DEFAULT '',
	headers        jsonb       NOT NULL DEFAULT '{}',
	priority       bigint      NOT NULL DEFAULT 0,
	auto_ack       boolean     NOT NULL DEFAULT false,
	run_at         timestamptz NOT NULL DEFAULT now(),
	reserved_until timestamptz,
	reserved_by    text,
	attempts       integer     NOT NULL DEFAULT 0,
	created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX %[1]s_fetch_idx ON %[1]s (queue, priority, run_at, id);
CREATE INDEX %[1]s_due_idx ON %[1]s (queue, run_at);
CREATE INDEX %[1]s_lease_idx ON %[1]s (queue, reserved_until) WHERE reserved_until IS NOT NULL;

CREATE TABLE %[1]s_queues (
	queue      text        PRIMARY KEY,
	priority   bigint      NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION %[1]s_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
	IF NEW.priority IS NULL OR NEW.priority <= 0 THEN
		NEW.priority := COALESCE((SELECT q.priority FROM %[1]s_queues q WHERE q.queue = NEW.queue), 10);
	END IF;
	IF NEW.job_id IS NULL OR NEW.job_id = '' THEN
		NEW.job_id := gen_random_uuid()::text;
	END IF;
	NEW.job := COALESCE(NEW.job, '');
	NEW.payload := COALESCE(NEW.payload, '');
	NEW.headers := COALESCE(NEW.headers, '{}');
	NEW.auto_ack := COALESCE(NEW.auto_ack, false);
	NEW.run_at := COALESCE(NEW.run_at, now());
	RETURN NEW;
END
$fn$;
CREATE TRIGGER %[1]s_defaults BEFORE INSERT ON %[1]s
	FOR EACH ROW EXECUTE FUNCTION %[1]s_before_insert();

CREATE FUNCTION %[1]s_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM pg_notify('%[1]s', NEW.queue);
	RETURN NULL;
END
$fn$;
CREATE TRIGGER %[1]s_notify_insert AFTER INSERT ON %[1]s
	FOR EACH ROW EXECUTE FUNCTION %[1]s_notify();
CREATE TRIGGER %[1]s_notify_update AFTER UPDATE OF run_at, reserved_until ON %[1]s
	FOR EACH ROW WHEN (NEW.reserved_until IS NULL) EXECUTE FUNCTION %[1]s_notify();

CREATE FUNCTION %[1]s_push(
	p_queue    text,
	p_job      text,
	p_payload  bytea,
	p_headers  jsonb            DEFAULT '{}',
	p_priority bigint           DEFAULT 0,
	p_delay    double precision DEFAULT 0,
	p_id       text             DEFAULT NULL
) RETURNS text LANGUAGE sql AS $fn$
	INSERT INTO %[1]s (queue, job_id, job, payload, headers, priority, run_at)
	VALUES (p_queue, COALESCE(p_id, ''), COALESCE(p_job, ''), COALESCE(p_payload, ''), COALESCE(p_headers, '{}'),
		COALESCE(p_priority, 0), now() + make_interval(secs => GREATEST(COALESCE(p_delay, 0), 0)))
	RETURNING job_id
$fn$;
`,
}

// migrate creates or upgrades the schema of table, under an advisory lock, in one transaction.
func migrate(ctx context.Context, conn *pgx.Conn, table string) (err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if _, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(schemaLockClass), table); err != nil {
		return fmt.Errorf("take the schema lock: %w", err)
	}
	// CREATE TABLE IF NOT EXISTS would need the CREATE privilege even when the table exists: check
	// first, so a user with only DML rights can run an installed schema.
	var exists bool
	if err = tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table+"_migrations").Scan(&exists); err != nil {
		return fmt.Errorf("look for %s_migrations: %w", table, err)
	}
	if !exists {
		if _, err = tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE %[1]s_migrations (
	version    integer     PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`, table)); err != nil {
			return fmt.Errorf("create %s_migrations: %w", table, err)
		}
	}
	var current int
	if err = tx.QueryRow(ctx, fmt.Sprintf(`SELECT COALESCE(max(version), 0) FROM %s_migrations`, table)).Scan(&current); err != nil {
		return fmt.Errorf("read the schema version: %w", err)
	}
	if current > len(migrations) {
		return fmt.Errorf("table %s has schema version %d, newer than this driver knows (%d): upgrade rr", table, current, len(migrations))
	}
	for v := current + 1; v <= len(migrations); v++ {
		if _, err = tx.Exec(ctx, fmt.Sprintf(migrations[v-1], table)); err != nil {
			return fmt.Errorf("apply schema version %d: %w", v, err)
		}
		if _, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s_migrations (version) VALUES ($1)`, table), v); err != nil {
			return fmt.Errorf("record schema version %d: %w", v, err)
		}
	}
	if err = tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// statements are the driver's SQL for one table, built once.
type statements struct {
	push, fetch, ack, requeue, release, heartbeat, deleteMany, state, nextDue, setPriority string
}

func buildStatements(table string) statements {
	r := strings.NewReplacer("{t}", table)
	return statements{
		push: r.Replace(`INSERT INTO {t} (queue, job_id, job, payload, headers, priority, auto_ack, run_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::double precision))`),
		// Ready rows of the queue (due, not leased or lease expired), best first, skipping rows another
		// consumer is locking right now; the lease and the attempt counter are set in the same statement.
		fetch: r.Replace(`WITH next AS (
	SELECT id FROM {t}
	WHERE queue = $1 AND run_at <= now() AND (reserved_until IS NULL OR reserved_until <= now())
	ORDER BY priority, run_at, id
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE {t} AS j
SET reserved_until = now() + make_interval(secs => $3::double precision), reserved_by = $4, attempts = j.attempts + 1
FROM next WHERE j.id = next.id
RETURNING j.id, j.attempts, j.job_id, j.job, j.payload, j.headers, j.priority, j.auto_ack, j.run_at`),
		// attempts is the fencing token: a row re-leased by another consumer after our lease expired
		// has a higher value, and our late ack/nack touches nothing.
		ack: r.Replace(`DELETE FROM {t} WHERE id = $1 AND attempts = $2`),
		requeue: r.Replace(`UPDATE {t}
SET run_at = now() + make_interval(secs => $3::double precision), reserved_until = NULL, reserved_by = NULL,
	headers = COALESCE($4::jsonb, headers)
WHERE id = $1 AND attempts = $2`),
		release: r.Replace(`UPDATE {t} AS j SET reserved_until = NULL, reserved_by = NULL
FROM unnest($1::bigint[], $2::integer[]) AS r(id, attempts)
WHERE j.id = r.id AND j.attempts = r.attempts`),
		heartbeat: r.Replace(`UPDATE {t} AS j SET reserved_until = now() + make_interval(secs => $3::double precision)
FROM unnest($1::bigint[], $2::integer[]) AS h(id, attempts)
WHERE j.id = h.id AND j.attempts = h.attempts AND j.reserved_until IS NOT NULL
RETURNING j.id`),
		deleteMany: r.Replace(`DELETE FROM {t} AS j
USING unnest($1::bigint[], $2::integer[]) AS d(id, attempts)
WHERE j.id = d.id AND j.attempts = d.attempts`),
		state: r.Replace(`SELECT
	count(*) FILTER (WHERE run_at <= now() AND (reserved_until IS NULL OR reserved_until <= now())),
	count(*) FILTER (WHERE run_at > now() AND (reserved_until IS NULL OR reserved_until <= now())),
	count(*) FILTER (WHERE reserved_until > now())
FROM {t} WHERE queue = $1`),
		// Seconds until the next delayed job is due or the next lease expires (NULL: nothing pending).
		nextDue: r.Replace(`SELECT EXTRACT(EPOCH FROM LEAST(
	(SELECT min(run_at) FROM {t} WHERE queue = $1 AND run_at > now()),
	(SELECT min(reserved_until) FROM {t} WHERE queue = $1 AND reserved_until > now())
) - now())::double precision`),
		setPriority: r.Replace(`INSERT INTO {t}_queues (queue, priority) VALUES ($1, $2)
ON CONFLICT (queue) DO UPDATE SET priority = EXCLUDED.priority, updated_at = now()`),
	}
}
