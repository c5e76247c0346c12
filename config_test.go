package jobs

import (
	"runtime"
	"testing"
	"time"

	"github.com/roadrunner-server/pool/pool"
	"github.com/stretchr/testify/require"
)

func TestConfigDefaults(t *testing.T) {
	c := &Config{Pipelines: map[string]Pipeline{"p1": {"driver": "memory", "config": map[string]any{"priority": 3}}}}
	require.NoError(t, c.InitDefaults())
	require.Equal(t, uint64(1_000_000), c.PipelineSize)
	require.Equal(t, 60, c.Timeout)
	require.Equal(t, 10, c.Options.Parallelism)
	require.Len(t, c.Pools, 1)
	pc := c.Pools[defaultPoolName]
	require.Equal(t, uint64(runtime.NumCPU()), pc.NumWorkers) //nolint:gosec
	require.Equal(t, time.Minute, pc.AllocateTimeout)
	require.Equal(t, int(pc.NumWorkers)+2, c.pollersFor(pc)) //nolint:gosec

	p := c.Pipelines["p1"]
	require.Equal(t, "p1", p.Name())
	require.Equal(t, int64(3), p.Priority())
	require.Equal(t, "jobs.pipelines.p1.config", p.String(keyCreatedWithConfig, ""))
}

func TestConfigParallelismQuirk(t *testing.T) {
	c := &Config{Options: &Options{}}
	require.NoError(t, c.InitDefaults())
	require.Equal(t, 5, c.Options.Parallelism, "an options section without parallelism means 5, as stock")
}

func TestConfigNumPollersHonoured(t *testing.T) {
	c := &Config{NumPollers: 7, Pool: &pool.Config{NumWorkers: 2}}
	require.NoError(t, c.InitDefaults())
	require.Equal(t, 7, c.pollersFor(c.Pools[defaultPoolName]))
}

func TestConfigPipelinePriorityDefault(t *testing.T) {
	c := &Config{Pipelines: map[string]Pipeline{"p": {"driver": "memory"}}}
	require.NoError(t, c.InitDefaults())
	require.Equal(t, int64(10), c.Pipelines["p"].Priority())
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative timeout", Config{Timeout: -1}, "jobs.timeout"},
		{"negative pollers", Config{NumPollers: -2}, "jobs.num_pollers"},
		{"negative parallelism", Config{Options: &Options{Parallelism: -1}}, "jobs.options.parallelism"},
		{"pool and pools", Config{Pool: &pool.Config{}, Pools: map[string]*pool.Config{"a": {}}}, "jobs.pool and jobs.pools"},
		{"too many workers", Config{Pool: &pool.Config{NumWorkers: 501}}, "num_workers"},
		{"missing driver", Config{Pipelines: map[string]Pipeline{"p": {"config": map[string]any{}}}}, "jobs.pipelines.p.driver"},
		{"bad priority", Config{Pipelines: map[string]Pipeline{"p": {"driver": "memory", "config": map[string]any{"priority": "high"}}}}, "jobs.pipelines.p.config.priority"},
		{"unknown pool", Config{Pools: map[string]*pool.Config{"fast": {}}, Pipelines: map[string]Pipeline{"p": {"driver": "memory", "pool": "slow"}}}, "jobs.pipelines.p.pool"},
		{"ambiguous pool", Config{Pools: map[string]*pool.Config{"a": {}, "b": {}}, Pipelines: map[string]Pipeline{"p": {"driver": "memory"}}}, "jobs.pipelines.p.pool"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.InitDefaults()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestConfigNamedPools(t *testing.T) {
	c := &Config{
		Pools: map[string]*pool.Config{"fast": {NumWorkers: 1}, "slow": {NumWorkers: 3}},
		Pipelines: map[string]Pipeline{
			"a": {"driver": "memory", "pool": "fast"},
			"b": {"driver": "memory", "pool": "slow"},
		},
	}
	require.NoError(t, c.InitDefaults())
	got, err := c.poolFor(c.Pipelines["b"])
	require.NoError(t, err)
	require.Equal(t, "slow", got)
	require.Equal(t, 5, c.pollersFor(c.Pools["slow"]))
}
