package memory

import (
	"context"
	"testing"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/rrjobs/jobs/drivers/drivertest"
	"github.com/stretchr/testify/require"
)

func newPlugin(t *testing.T, cfg drivertest.Configurer) *Plugin {
	t.Helper()
	p := &Plugin{}
	require.NoError(t, p.Init(drivertest.NopLogger(), cfg))
	require.Equal(t, "memory", p.Name())
	return p
}

func fromConfig(t *testing.T, cfg drivertest.Configurer, pipe drivertest.Pipeline) (*Driver, error) {
	t.Helper()
	p := newPlugin(t, cfg)
	drv, err := p.DriverFromConfig("jobs.pipelines."+pipe.Name()+".config", drivertest.NewQueue(0), pipe)
	if err != nil {
		return nil, err
	}
	d := drv.(*Driver)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	return d, nil
}

func TestPluginInitRequiresDeps(t *testing.T) {
	p := &Plugin{}
	require.Error(t, p.Init(nil, drivertest.Configurer{}))
	var _ jobs.Constructor = p
}

func TestDriverFromConfigDefaults(t *testing.T) {
	// No config section at all.
	d, err := fromConfig(t, drivertest.Configurer{}, drivertest.Pipeline{"name": "p1", "driver": "memory"})
	require.NoError(t, err)
	require.Equal(t, DefaultPrefetch, d.prefetch)
	require.Equal(t, int64(10), d.priority)
	st, err := d.State(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(10), st.Priority)
	require.Equal(t, "p1", st.Pipeline)

	// Empty section, prefetch 0 (= default).
	cfg := drivertest.Configurer{"jobs": map[string]any{"pipelines": map[string]any{
		"p2": map[string]any{"driver": "memory", "config": map[string]any{"prefetch": 0}},
	}}}
	d, err = fromConfig(t, cfg, drivertest.Pipeline{"name": "p2", "driver": "memory"})
	require.NoError(t, err)
	require.Equal(t, DefaultPrefetch, d.prefetch)
	require.Equal(t, int64(10), d.priority)
}

func TestDriverFromConfigValues(t *testing.T) {
	cfg := drivertest.Configurer{"jobs": map[string]any{"pipelines": map[string]any{
		"p1": map[string]any{"driver": "memory", "config": map[string]any{"priority": 2, "prefetch": 7}},
	}}}
	pipe := drivertest.Pipeline{"name": "p1", "driver": "memory", "priority": int64(2),
		"config": map[string]any{"priority": 2, "prefetch": 7}}
	d, err := fromConfig(t, cfg, pipe)
	require.NoError(t, err)
	require.Equal(t, 7, d.prefetch)
	require.Equal(t, int64(2), d.priority)

	// Values given as strings (e.g. environment substitution) are accepted.
	cfg = drivertest.Configurer{"jobs.pipelines.p3.config": map[string]any{"priority": "4", "prefetch": " 12 "}}
	d, err = fromConfig(t, cfg, drivertest.Pipeline{"name": "p3"})
	require.NoError(t, err)
	require.Equal(t, 12, d.prefetch)
	require.Equal(t, int64(4), d.priority)

	// A key missing from the section falls back to the pipeline (top-level priority stamped by
	// the jobs plugin).
	cfg = drivertest.Configurer{"jobs.pipelines.p4.config": map[string]any{"prefetch": 3}}
	d, err = fromConfig(t, cfg, drivertest.Pipeline{"name": "p4", "priority": int64(6)})
	require.NoError(t, err)
	require.Equal(t, 3, d.prefetch)
	require.Equal(t, int64(6), d.priority)
}

func TestDriverFromConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		conf map[string]any
		want string
	}{
		{"negative prefetch", map[string]any{"prefetch": -3}, `memory pipeline "p1": prefetch must be >= 0, got -3`},
		{"non-numeric prefetch", map[string]any{"prefetch": "lots"}, `memory pipeline "p1": prefetch must be an integer, got "lots"`},
		{"fractional prefetch", map[string]any{"prefetch": 1.5}, `memory pipeline "p1": prefetch must be an integer, got "1.5"`},
		{"bool prefetch", map[string]any{"prefetch": true}, `memory pipeline "p1": prefetch must be an integer, got "true"`},
		{"negative priority", map[string]any{"priority": -1}, `memory pipeline "p1": priority must be >= 0, got -1`},
		{"non-numeric priority", map[string]any{"priority": "high"}, `memory pipeline "p1": priority must be an integer, got "high"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := drivertest.Configurer{"jobs.pipelines.p1.config": tc.conf}
			_, err := fromConfig(t, cfg, drivertest.Pipeline{"name": "p1"})
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}

	// A config section that is not a map.
	_, err := fromConfig(t, drivertest.Configurer{"jobs.pipelines.p1.config": "oops"}, drivertest.Pipeline{"name": "p1"})
	require.Error(t, err)
	require.Contains(t, err.Error(), `memory pipeline "p1"`)
}

func TestDriverFromPipelineStrings(t *testing.T) {
	p := newPlugin(t, drivertest.Configurer{})
	q := drivertest.NewQueue(0)
	// What jobs.Declare sends: a flat map of strings.
	pipe := drivertest.Pipeline{"name": "decl", "driver": "memory", "prefetch": "5", "priority": "3"}
	drv, err := p.DriverFromPipeline(pipe, q)
	require.NoError(t, err)
	d := drv.(*Driver)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	require.Equal(t, 5, d.prefetch)
	require.Equal(t, int64(3), d.priority)

	st, err := d.State(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(3), st.Priority)
	require.Equal(t, "decl", st.Queue)

	require.NoError(t, d.Run(context.Background(), pipe))
	m := drivertest.NewMessage("x", "job", "decl", []byte("b"))
	require.NoError(t, d.Push(context.Background(), m))
	j, ok := q.ExtractMinTimeout(waitFor)
	require.True(t, ok)
	require.Equal(t, int64(3), j.Priority(), "priority 0 inherits the declared pipeline priority")
	require.NoError(t, j.Ack())

	// Defaults when the keys are absent.
	drv, err = p.DriverFromPipeline(drivertest.Pipeline{"name": "decl2", "driver": "memory"}, q)
	require.NoError(t, err)
	require.Equal(t, DefaultPrefetch, drv.(*Driver).prefetch)
	require.Equal(t, DefaultPriority, drv.(*Driver).priority)
	require.NoError(t, drv.Stop(context.Background()))

	// Invalid values name the pipeline, key and value.
	_, err = p.DriverFromPipeline(drivertest.Pipeline{"name": "bad", "prefetch": "-1"}, q)
	require.Error(t, err)
	require.Contains(t, err.Error(), `memory pipeline "bad": prefetch must be >= 0, got -1`)
	_, err = p.DriverFromPipeline(drivertest.Pipeline{"name": "bad", "prefetch": "ten"}, q)
	require.Error(t, err)
	require.Contains(t, err.Error(), `memory pipeline "bad": prefetch must be an integer, got "ten"`)

	// Options nested in a config sub-map are found too.
	drv, err = p.DriverFromPipeline(drivertest.Pipeline{"name": "nested", "config": map[string]any{"prefetch": "9"}}, q)
	require.NoError(t, err)
	require.Equal(t, 9, drv.(*Driver).prefetch)
	require.NoError(t, drv.Stop(context.Background()))
}
