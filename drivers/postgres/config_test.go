package postgres

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

// parse resolves pipeline p1's settings from its config section and the `postgres:` section.
func parse(name string, global, section map[string]any) (Config, error) {
	o := driverkit.NewOptions(pluginName, drivertest.NewPipeline(name, pluginName, nil), section)
	return parseConfig(name, o, o.Global(globalSection, global))
}

func TestConfigDefaults(t *testing.T) {
	conf, err := parse("p1", map[string]any{"dsn": "postgres://x/y", "max_conns": 3}, nil)
	require.NoError(t, err)
	require.Equal(t, Config{
		DSN: "postgres://x/y", MaxConns: 3, Queue: "p1", Table: "rr_jobs", Priority: 10, Prefetch: 10,
		PollInterval: time.Second, LeaseTimeout: 30 * time.Second,
	}, conf)

	conf, err = parse("p1", map[string]any{"dsn": " postgres://a/b ", "max_conns": "7"}, nil)
	require.NoError(t, err)
	require.Equal(t, "postgres://a/b", conf.DSN)
	require.Equal(t, 7, conf.MaxConns)
}

func TestConfigValues(t *testing.T) {
	// Typed values (from .rr.yaml) and strings (from Declare) both work; the pipeline dsn wins.
	for _, raw := range []map[string]any{
		{"queue": "emails", "table": "app_jobs", "priority": 3, "prefetch": 50, "poll_interval": "250ms", "lease_timeout": 5, "dsn": "postgres://h/db"},
		{"queue": "emails", "table": "app_jobs", "priority": "3", "prefetch": "50", "poll_interval": "0.25", "lease_timeout": "5s", "dsn": "postgres://h/db"},
		{"queue": "emails", "table": "app_jobs", "priority": 3.0, "prefetch": 50, "poll_interval": 0.25, "lease_timeout": 5.0, "dsn": "postgres://h/db"},
	} {
		conf, err := parse("p1", map[string]any{"dsn": "postgres://global/db", "max_conns": 2}, raw)
		require.NoError(t, err)
		require.Equal(t, Config{
			DSN: "postgres://h/db", MaxConns: 2, Queue: "emails", Table: "app_jobs", Priority: 3, Prefetch: 50,
			PollInterval: 250 * time.Millisecond, LeaseTimeout: 5 * time.Second,
		}, conf)
	}
	// 0 means the default for priority and prefetch.
	conf, err := parse("p1", map[string]any{"dsn": "x"}, map[string]any{"priority": 0, "prefetch": "0"})
	require.NoError(t, err)
	require.Equal(t, int64(10), conf.Priority)
	require.Equal(t, 10, conf.Prefetch)
	require.Equal(t, DefaultMaxConns, conf.MaxConns)
}

func TestConfigErrorsNamePipelineKeyAndValue(t *testing.T) {
	g := map[string]any{"dsn": "postgres://x/y"}
	for key, c := range map[string]struct {
		val  any
		want string
	}{
		"priority":      {"high", `priority must be an integer, got "high"`},
		"prefetch":      {-1, `prefetch must be >= 0, got -1`},
		"poll_interval": {"soon", `poll_interval must be a duration like 5s or 1m, got "soon"`},
		"lease_timeout": {"100ms", `lease_timeout must be at least 1s, got 100ms`},
		"table":         {"Bad-Name", `table must be a lowercase SQL identifier ([a-z_][a-z0-9_]*) of at most 48 characters, got "Bad-Name"`},
	} {
		_, err := parse("orders", g, map[string]any{key: c.val})
		require.EqualError(t, err, `postgres pipeline "orders": `+c.want, key)
	}
	_, err := parse("orders", g, map[string]any{"prefetch": 100_001})
	require.ErrorContains(t, err, "prefetch must be <= 100000, got 100001")
	_, err = parse("orders", g, map[string]any{"poll_interval": "1ms"})
	require.ErrorContains(t, err, "poll_interval must be at least 10ms, got 1ms")
	_, err = parse("orders", g, map[string]any{"table": "a_very_long_table_name_that_goes_beyond_the_limit_x"})
	require.ErrorContains(t, err, "at most 48")

	_, err = parse("orders", nil, nil)
	require.ErrorContains(t, err, `postgres pipeline "orders": no database: set postgres.dsn`)

	_, err = parse("orders", map[string]any{"dsn": "x", "max_conns": 0}, nil)
	require.EqualError(t, err, `postgres pipeline "orders": postgres.max_conns must be >= 1, got 0`)
	_, err = parse("orders", map[string]any{"dsn": "x", "max_conns": "many"}, nil)
	require.EqualError(t, err, `postgres pipeline "orders": postgres.max_conns must be an integer, got "many"`)
	_, err = parse("orders", map[string]any{"dsn": "x", "max_conns": 1001}, nil)
	require.EqualError(t, err, `postgres pipeline "orders": postgres.max_conns must be <= 1000, got 1001`)
}

func TestConfigFromDeclaredPipeline(t *testing.T) {
	pipe := drivertest.NewPipeline("dyn", "postgres", map[string]any{
		"queue": "dq", "prefetch": "5", "priority": "2", "lease_timeout": "2s", "max_conns": "50",
	})
	o := driverkit.NewOptions(pluginName, pipe, nil)
	conf, err := parseConfig("dyn", o, o.Global(globalSection, map[string]any{"dsn": "postgres://x/y"}))
	require.NoError(t, err)
	require.Equal(t, "dq", conf.Queue)
	require.Equal(t, 5, conf.Prefetch)
	require.Equal(t, int64(2), conf.Priority)
	require.Equal(t, 2*time.Second, conf.LeaseTimeout)
	require.Equal(t, DefaultMaxConns, conf.MaxConns, "max_conns is read from the postgres section only")
}

func TestEncodeHeaders(t *testing.T) {
	s, err := encodeHeaders(nil)
	require.NoError(t, err)
	require.Equal(t, "{}", s)
}

func TestOneLine(t *testing.T) {
	base := errors.New("failed to connect to `user=u database=d`:\n\th:1 (h): dial error: refused\n\th:1 (h): dial error: refused")
	got := oneLine(base)
	require.Equal(t, "failed to connect to `user=u database=d`: h:1 (h): dial error: refused", got.Error())
	require.ErrorIs(t, got, base)
	plain := errors.New("x")
	require.Same(t, plain, oneLine(plain))
}
