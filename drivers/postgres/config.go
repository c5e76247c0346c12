package postgres

import (
	"math"
	"regexp"
	"time"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Config keys (pipeline `config:` section, or the flat Declare map) and the global section.
const (
	keyQueue        = "queue"
	keyPriority     = "priority"
	keyPrefetch     = "prefetch"
	keyPollInterval = "poll_interval"
	keyTable        = "table"
	keyLeaseTimeout = "lease_timeout"
	keyDSN          = "dsn"
	keyMaxConns     = "max_conns"

	// globalSection is the top-level .rr.yaml section shared by every postgres pipeline.
	globalSection = "postgres"
)

// Defaults.
const (
	// DefaultPriority is the pipeline priority when none is configured (lower = served first).
	DefaultPriority int64 = 10
	// DefaultPrefetch is how many jobs of one pipeline may be leased by this process (in the shared
	// queue or at a worker) at once.
	DefaultPrefetch = 10
	// DefaultPollInterval is the fallback polling period when no notification arrives.
	DefaultPollInterval = time.Second
	// DefaultTable is the jobs table.
	DefaultTable = "rr_jobs"
	// DefaultLeaseTimeout is how long a fetched job stays reserved without a heartbeat.
	DefaultLeaseTimeout = 30 * time.Second
	// DefaultMaxConns is the size of a pipeline's connection pool (the LISTEN connection is extra).
	DefaultMaxConns = 5

	minLeaseTimeout = time.Second
	minPollInterval = 10 * time.Millisecond
	maxPrefetch     = 100_000
	maxMaxConns     = 1000
	// maxTableLen leaves room for the suffixes of the derived names within PostgreSQL's 63 bytes.
	maxTableLen = 48
)

// tableRe accepts a lowercase, unquoted SQL identifier, so the names the README shows in plain SQL
// (`INSERT INTO rr_jobs ...`) are exactly the ones the driver uses.
var tableRe = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Config is the resolved configuration of one postgres pipeline.
type Config struct {
	// DSN is the PostgreSQL connection string (URL or key=value form).
	DSN string
	// MaxConns is the pipeline's pool size.
	MaxConns int
	// Queue is the value of the `queue` column this pipeline consumes and pushes to.
	Queue string
	// Table is the jobs table.
	Table string
	// Priority is the pipeline priority, inherited by jobs pushed with priority 0.
	Priority int64
	// Prefetch caps the jobs of this pipeline leased by this process at once.
	Prefetch int
	// PollInterval is the fallback polling period.
	PollInterval time.Duration
	// LeaseTimeout is the lease a fetch takes; a heartbeat extends it every LeaseTimeout/3.
	LeaseTimeout time.Duration
}

// parseConfig builds the Config of a pipeline from o (its settings: typed from .rr.yaml, strings
// from Declare) and global (the `postgres:` section, which alone sets max_conns). Errors name the
// pipeline, the key and the value.
func parseConfig(pipeline string, o, global *driverkit.Options) (Config, error) {
	conf := Config{Queue: o.String(keyQueue, pipeline), Table: DefaultTable}

	conf.DSN = o.String(keyDSN, global.String(keyDSN, ""))
	if conf.DSN == "" {
		return Config{}, o.Errorf("no database: set %s.%s in .rr.yaml (or %s in the pipeline config)", globalSection, keyDSN, keyDSN)
	}
	maxConns, err := global.Int(keyMaxConns, DefaultMaxConns, 1, maxMaxConns)
	if err != nil {
		return Config{}, err
	}
	conf.MaxConns = int(maxConns)

	if table := o.String(keyTable, DefaultTable); table != DefaultTable {
		if !tableRe.MatchString(table) || len(table) > maxTableLen {
			return Config{}, o.Errorf("%s must be a lowercase SQL identifier ([a-z_][a-z0-9_]*) of at most %d characters, got %q", keyTable, maxTableLen, table)
		}
		conf.Table = table
	}
	// 0 means the default for priority and prefetch, as with stock.
	if conf.Priority, err = o.IntOrDefault(keyPriority, DefaultPriority, math.MaxInt64); err != nil {
		return Config{}, err
	}
	prefetch, err := o.IntOrDefault(keyPrefetch, DefaultPrefetch, maxPrefetch)
	if err != nil {
		return Config{}, err
	}
	conf.Prefetch = int(prefetch)
	if conf.PollInterval, err = o.DurationMin(keyPollInterval, DefaultPollInterval, minPollInterval); err != nil {
		return Config{}, err
	}
	if conf.LeaseTimeout, err = o.DurationMin(keyLeaseTimeout, DefaultLeaseTimeout, minLeaseTimeout); err != nil {
		return Config{}, err
	}
	return conf, nil
}
