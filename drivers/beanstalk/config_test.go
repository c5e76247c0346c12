package beanstalk

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

// parse resolves pipeline name's settings from its config section and the `beanstalk:` section.
func parse(name string, global, section map[string]any) (Config, error) {
	o := driverkit.NewOptions(pluginName, drivertest.NewPipeline(name, pluginName, nil), section)
	return parseConfig(o, o.Global(globalSection, global))
}

func TestConfigDefaults(t *testing.T) {
	conf, err := parse("p1", nil, nil)
	require.NoError(t, err)
	require.Equal(t, Config{
		Addr: "tcp://127.0.0.1:11300", Network: "tcp", Address: "127.0.0.1:11300", Timeout: 30 * time.Second,
		Tube: "default", TubePriority: 0, ReserveTimeout: time.Second, Priority: 10, Prefetch: 10,
	}, conf)
	require.Equal(t, 30*time.Second, conf.ttr())
}

func TestConfigValues(t *testing.T) {
	// Typed values (from .rr.yaml) and strings (from Declare) both work.
	for _, raw := range []map[string]any{
		{"tube": "emails", "tube_priority": 7, "reserve_timeout": "5s", "priority": 3, "prefetch": 50},
		{"tube": "emails", "tube_priority": "7", "reserve_timeout": "5", "priority": "3", "prefetch": "50"},
		{"tube": "emails", "tube_priority": 7.0, "reserve_timeout": 5, "priority": 3.0, "prefetch": 50},
	} {
		conf, err := parse("p1", map[string]any{"addr": "tcp://10.0.0.1:11301", "timeout": "2500ms"}, raw)
		require.NoError(t, err)
		require.Equal(t, Config{
			Addr: "tcp://10.0.0.1:11301", Network: "tcp", Address: "10.0.0.1:11301", Timeout: 2500 * time.Millisecond,
			Tube: "emails", TubePriority: 7, ReserveTimeout: 5 * time.Second, Priority: 3, Prefetch: 50,
		}, conf)
		require.Equal(t, 3*time.Second, conf.ttr(), "the TTR is the timeout rounded up to whole seconds")
	}
	// 0 means the default for priority and prefetch.
	conf, err := parse("p1", nil, map[string]any{"priority": 0, "prefetch": "0", "tube_priority": 4294967295})
	require.NoError(t, err)
	require.Equal(t, int64(10), conf.Priority)
	require.Equal(t, 10, conf.Prefetch)
	require.Equal(t, uint32(4294967295), conf.TubePriority)

	// addr and timeout may sit in the pipeline's config (the stock driver merged the sections), but
	// the global section wins.
	conf, err = parse("p1", nil, map[string]any{"addr": "unix:///run/beanstalkd.sock", "timeout": 4})
	require.NoError(t, err)
	require.Equal(t, "unix", conf.Network)
	require.Equal(t, "/run/beanstalkd.sock", conf.Address)
	require.Equal(t, 4*time.Second, conf.Timeout)
	conf, err = parse("p1", map[string]any{"addr": "127.0.0.1:11400", "timeout": "9s"}, map[string]any{"addr": "tcp://x:1", "timeout": 4})
	require.NoError(t, err)
	require.Equal(t, "tcp", conf.Network, "a bare host:port is tcp")
	require.Equal(t, "127.0.0.1:11400", conf.Address)
	require.Equal(t, 9*time.Second, conf.Timeout)
}

func TestConfigErrorsNamePipelineKeyAndValue(t *testing.T) {
	for key, c := range map[string]struct {
		val  any
		want string
	}{
		"priority":        {"high", `priority must be an integer, got "high"`},
		"prefetch":        {-1, `prefetch must be >= 0, got -1`},
		"tube_priority":   {-1, `tube_priority must be >= 0, got -1`},
		"reserve_timeout": {"100ms", `reserve_timeout must be at least 1s, got 100ms`},
		"tube":            {"bad tube", `tube must contain only letters, digits and -+/;.$_(), got "bad tube"`},
		"timeout":         {"soon", `timeout must be a duration like 5s or 1m, got "soon"`},
		"addr":            {"http://x:1", `addr must be tcp://host:port or unix:///path/to/beanstalkd.sock (unknown network http), got "http://x:1"`},
	} {
		_, err := parse("orders", nil, map[string]any{key: c.val})
		require.EqualError(t, err, `beanstalk pipeline "orders": `+c.want, key)
	}
	_, err := parse("orders", nil, map[string]any{"tube_priority": 4294967296})
	require.ErrorContains(t, err, "tube_priority must be <= 4294967295, got 4294967296")
	_, err = parse("orders", nil, map[string]any{"prefetch": 100_001})
	require.ErrorContains(t, err, "prefetch must be <= 100000, got 100001")
	_, err = parse("orders", nil, map[string]any{"reserve_timeout": "2h"})
	require.ErrorContains(t, err, "reserve_timeout must be at most 1h0m0s, got 2h0m0s")
	_, err = parse("orders", nil, map[string]any{"tube": "-dash"})
	require.ErrorContains(t, err, "tube must not start with a hyphen")
	_, err = parse("orders", nil, map[string]any{"tube": string(make([]byte, 200))})
	require.ErrorContains(t, err, "tube must be at most 199 bytes long, got 200 bytes")

	// The global section's keys are named with their section.
	_, err = parse("orders", map[string]any{"timeout": "500ms"}, nil)
	require.EqualError(t, err, `beanstalk pipeline "orders": beanstalk.timeout must be at least 1s, got 500ms`)
	_, err = parse("orders", map[string]any{"addr": "tcp://nohost"}, nil)
	require.EqualError(t, err, `beanstalk pipeline "orders": beanstalk.addr must be tcp://host:port or unix:///path/to/beanstalkd.sock (no host:port), got "tcp://nohost"`)
	_, err = parse("orders", map[string]any{"addr": "unix://"}, nil)
	require.ErrorContains(t, err, "beanstalk.addr must be tcp://host:port or unix:///path/to/beanstalkd.sock (no socket path)")
}

func TestConfigFromDeclaredPipeline(t *testing.T) {
	pipe := drivertest.NewPipeline("dyn", pluginName, map[string]any{
		"tube": "dq", "prefetch": "5", "priority": "2", "tube_priority": "1", "reserve_timeout": "5",
	})
	o := driverkit.NewOptions(pluginName, pipe, nil)
	conf, err := parseConfig(o, o.Global(globalSection, map[string]any{"addr": "tcp://127.0.0.1:11300"}))
	require.NoError(t, err)
	require.Equal(t, "dq", conf.Tube)
	require.Equal(t, 5, conf.Prefetch)
	require.Equal(t, int64(2), conf.Priority)
	require.Equal(t, uint32(1), conf.TubePriority)
	require.Equal(t, 5*time.Second, conf.ReserveTimeout)
}

func TestPluginReadsSectionsAndReportsErrors(t *testing.T) {
	var p Plugin
	require.Error(t, p.Init(nil, nil))
	cfg := drivertest.Configurer{
		"beanstalk": map[string]any{"addr": "tcp://127.0.0.1:1", "timeout": "1s"},
		"jobs": map[string]any{"pipelines": map[string]any{
			"good": map[string]any{"driver": "beanstalk", "config": map[string]any{"tube": "t1", "prefetch": 3}},
			"bad":  map[string]any{"driver": "beanstalk", "config": map[string]any{"tube": "t 1"}},
		}},
	}
	require.NoError(t, p.Init(drivertest.NopLogger(), cfg))
	require.Equal(t, "beanstalk", p.Name())
	q := drivertest.NewQueue(0)

	// Nothing listens on port 1: the driver is built anyway (pushes fail until beanstalkd is up).
	drv, err := p.DriverFromConfig("jobs.pipelines.good.config", q, drivertest.NewPipeline("good", "beanstalk", nil))
	require.NoError(t, err)
	d := drv.(*Driver)
	require.Equal(t, "t1", d.conf.Tube)
	require.Equal(t, 3, d.conf.Prefetch)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = d.Push(ctx, msg("x"))
	require.ErrorContains(t, err, `beanstalk pipeline "good": push job "x": connect to beanstalkd at tcp://127.0.0.1:1`)
	st := state(t, d)
	require.False(t, st.Ready)
	require.Contains(t, st.ErrorMessage, "connect to beanstalkd at tcp://127.0.0.1:1")
	require.NoError(t, d.Stop(ctx))
	require.ErrorContains(t, d.Push(ctx, msg("y")), "is stopped")

	_, err = p.DriverFromConfig("jobs.pipelines.bad.config", q, drivertest.NewPipeline("bad", "beanstalk", nil))
	require.ErrorContains(t, err, `beanstalk pipeline "bad": tube must contain only letters`)

	_, err = p.DriverFromPipeline(drivertest.NewPipeline("dyn", "beanstalk", map[string]any{"prefetch": "lots"}), q)
	require.ErrorContains(t, err, `beanstalk pipeline "dyn": prefetch must be an integer, got "lots"`)
	_, err = p.DriverFromPipeline(nil, q)
	require.Error(t, err)
}

func TestParseAddr(t *testing.T) {
	for in, want := range map[string][2]string{
		"tcp://127.0.0.1:11300":  {"tcp", "127.0.0.1:11300"},
		"TCP://[::1]:11300":      {"tcp", "[::1]:11300"},
		"tcp6://[::1]:1":         {"tcp6", "[::1]:1"},
		"localhost:11300":        {"tcp", "localhost:11300"},
		"unix:///tmp/bs.sock":    {"unix", "/tmp/bs.sock"},
		" tcp://10.1.1.1:11300 ": {"tcp", "10.1.1.1:11300"},
	} {
		n, a, err := parseAddr(in)
		require.NoError(t, err, in)
		require.Equal(t, want, [2]string{n, a}, in)
	}
	for _, in := range []string{"", "tcp://", "tcp://host", "udp://h:1", "host:"} {
		_, _, err := parseAddr(in)
		require.Error(t, err, in)
	}
}
