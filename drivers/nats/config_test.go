package nats

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

func parse(t *testing.T, section, global map[string]any, top map[string]any, declared bool) (Config, error) {
	t.Helper()
	pipe := drivertest.NewPipeline("p1", pluginName, top)
	o := driverkit.NewOptions(pluginName, pipe, section)
	return parseConfig(o, o.Global(globalSection, global), declared)
}

func TestConfigDefaults(t *testing.T) {
	conf, err := parse(t, nil, nil, nil, false)
	require.NoError(t, err)
	require.Equal(t, Config{
		Addr: DefaultAddr, Subject: "default", Stream: "default-stream", Priority: 10, Prefetch: 10,
		RateLimit: 0, AckWait: 30 * time.Second,
	}, conf)

	conf, err = parse(t, nil, nil, nil, true)
	require.NoError(t, err)
	require.Equal(t, 100, conf.Prefetch, "a declared pipeline's prefetch defaults to 100, as with stock")

	// 0 means the default for priority and prefetch.
	conf, err = parse(t, map[string]any{"priority": 0, "prefetch": 0}, nil, nil, false)
	require.NoError(t, err)
	require.Equal(t, int64(10), conf.Priority)
	require.Equal(t, 10, conf.Prefetch)
}

func TestConfigYAMLAndGlobal(t *testing.T) {
	conf, err := parse(t, map[string]any{
		"subject": "orders.new", "stream": "orders", "priority": 2, "prefetch": 50,
		"delete_after_ack": true, "deliver_new": true, "rate_limit": 8000, "delete_stream_on_stop": true,
		"ack_wait": "1m",
	}, map[string]any{"addr": "nats://user:pw@10.0.0.1:4222"}, nil, false)
	require.NoError(t, err)
	require.Equal(t, Config{
		Addr: "nats://user:pw@10.0.0.1:4222", Subject: "orders.new", Stream: "orders", Priority: 2, Prefetch: 50,
		DeleteAfterAck: true, DeliverNew: true, RateLimit: 8000, DeleteStreamOnStop: true, AckWait: time.Minute,
	}, conf)

	// A pipeline's own addr wins over the global one.
	conf, err = parse(t, map[string]any{"addr": "nats://10.0.0.2:4222"}, map[string]any{"addr": "nats://10.0.0.1:4222"}, nil, false)
	require.NoError(t, err)
	require.Equal(t, "nats://10.0.0.2:4222", conf.Addr)
}

func TestConfigDeclareStrings(t *testing.T) {
	conf, err := parse(t, nil, nil, map[string]any{
		"subject": "s1", "stream": "st1", "priority": "3", "prefetch": "20", "delete_after_ack": "1",
		"deliver_new": "true", "rate_limit": "16000", "delete_stream_on_stop": "false", "ack_wait": "5",
	}, true)
	require.NoError(t, err)
	require.Equal(t, Config{
		Addr: DefaultAddr, Subject: "s1", Stream: "st1", Priority: 3, Prefetch: 20, DeleteAfterAck: true,
		DeliverNew: true, RateLimit: 16000, AckWait: 5 * time.Second,
	}, conf)
}

func TestConfigErrors(t *testing.T) {
	cases := map[string]struct {
		section map[string]any
		global  map[string]any
		want    string
	}{
		"negative prefetch":  {section: map[string]any{"prefetch": -1}, want: `nats pipeline "p1": prefetch must be >= 0, got -1`},
		"prefetch too big":   {section: map[string]any{"prefetch": 100001}, want: `nats pipeline "p1": prefetch must be <= 100000, got 100001`},
		"prefetch not int":   {section: map[string]any{"prefetch": "ten"}, want: `nats pipeline "p1": prefetch must be an integer, got "ten"`},
		"negative priority":  {section: map[string]any{"priority": -2}, want: `nats pipeline "p1": priority must be >= 0, got -2`},
		"wildcard subject":   {section: map[string]any{"subject": "orders.*"}, want: `nats pipeline "p1": subject must be a literal subject without the wildcards * and >, got "orders.*"`},
		"empty token":        {section: map[string]any{"subject": "a..b"}, want: `nats pipeline "p1": subject must be dot-separated non-empty tokens (no leading, trailing or double dots), got "a..b"`},
		"space in subject":   {section: map[string]any{"subject": "a b"}, want: `nats pipeline "p1": subject must not contain whitespace, got "a b"`},
		"reserved subject":   {section: map[string]any{"subject": "a.rr-delayed"}, want: `nats pipeline "p1": subject must not end with .rr-delayed (reserved for delayed jobs), got "a.rr-delayed"`},
		"dot in stream":      {section: map[string]any{"stream": "a.b"}, want: `nats pipeline "p1": stream must not contain whitespace or any of . * > / \, got "a.b"`},
		"bad bool":           {section: map[string]any{"deliver_new": "maybe"}, want: `nats pipeline "p1": deliver_new must be true or false, got "maybe"`},
		"bad delete bool":    {section: map[string]any{"delete_after_ack": 2}, want: `nats pipeline "p1": delete_after_ack must be true or false, got "2"`},
		"negative rate":      {section: map[string]any{"rate_limit": -5}, want: `nats pipeline "p1": rate_limit must be >= 0, got -5`},
		"short ack_wait":     {section: map[string]any{"ack_wait": "100ms"}, want: `nats pipeline "p1": ack_wait must be at least 500ms, got 100ms`},
		"bad ack_wait":       {section: map[string]any{"ack_wait": "soon"}, want: `nats pipeline "p1": ack_wait must be a duration like 5s or 1m, got "soon"`},
		"bad addr":           {section: map[string]any{"addr": "nats://a b"}, want: `nats pipeline "p1": addr must be a NATS URL like nats://127.0.0.1:4222, got "nats://a b"`},
		"bad global addr":    {global: map[string]any{"addr": "x y"}, want: `nats pipeline "p1": addr must be a NATS URL like nats://127.0.0.1:4222, got "x y"`},
		"long stream":        {section: map[string]any{"stream": string(make([]byte, 129))}, want: "stream must be at most 128 characters"},
		"priority too large": {section: map[string]any{"priority": 1.5}, want: `nats pipeline "p1": priority must be an integer, got "1.5"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, c.section, c.global, nil, false)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

func TestPluginBuildsDrivers(t *testing.T) {
	p := &Plugin{}
	require.Equal(t, "nats", p.Name())
	require.Error(t, p.Init(nil, drivertest.Configurer{}))

	cfg := drivertest.Configurer{
		"nats": map[string]any{"addr": "nats://127.0.0.1:1"},
		"jobs": map[string]any{"pipelines": map[string]any{"p1": map[string]any{
			"config": map[string]any{"prefetch": -1},
		}}},
	}
	require.NoError(t, p.Init(drivertest.NopLogger(), cfg))
	q := drivertest.NewQueue(0)
	_, err := p.DriverFromConfig("jobs.pipelines.p1.config", q, drivertest.NewPipeline("p1", pluginName, nil))
	require.ErrorContains(t, err, `nats pipeline "p1": prefetch must be >= 0, got -1`)
	_, err = p.DriverFromConfig("jobs.pipelines.p1.config", q, nil)
	require.Error(t, err)
	_, err = p.DriverFromPipeline(nil, q)
	require.Error(t, err)
	// The global addr is used: nothing listens on port 1.
	_, err = p.DriverFromPipeline(drivertest.NewPipeline("p2", pluginName, map[string]any{"subject": "x"}), q)
	require.ErrorContains(t, err, `nats pipeline "p2": connect to nats://127.0.0.1:1`)

	requireNATS(t)
	stream := newStreamName(t)
	cfg["nats"] = map[string]any{"addr": natsURL()}
	d, err := p.DriverFromPipeline(drivertest.NewPipeline("p3", pluginName, map[string]any{
		"subject": stream, "stream": stream, "prefetch": "7", "ack_wait": "2",
	}), q)
	require.NoError(t, err)
	nd := d.(*Driver)
	require.Equal(t, 7, nd.conf.Prefetch)
	require.Equal(t, 2*time.Second, nd.conf.AckWait)
	require.NoError(t, d.Stop(t.Context()))
}
