package driverkit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPipelineAccessorsReadTopLevelThenConfig(t *testing.T) {
	p := Pipeline{
		"name": "p1", "driver": "memory", "prefetch": "7",
		"config": map[string]any{"prefetch": 100, "queue": "q", "durable": true, "limit": 3.0, "headers": map[string]any{"a": "b", "n": 1}},
	}
	require.Equal(t, "p1", p.Name())
	require.Equal(t, "memory", p.Driver())
	require.Equal(t, 7, p.Int("prefetch", 0), "top level wins")
	require.Equal(t, "q", p.String("queue", "default"))
	require.True(t, p.Bool("durable", false), "stock read config booleans wrong; ours reads them")
	require.Equal(t, 3, p.Int("limit", 0))
	require.True(t, p.Has("queue"))
	require.False(t, p.Has("missing"))
	require.Equal(t, "d", p.String("missing", "d"))

	m := map[string]string{}
	require.NoError(t, p.Map("headers", m))
	require.Equal(t, map[string]string{"a": "b", "n": "1"}, m)
}

func TestPipelineAccessorsParseDeclareStrings(t *testing.T) {
	p := Pipeline{"name": "d", "driver": "memory", "priority": "3", "prefetch": "x", "durable": "true", "queue_headers": `{"x-max":"10"}`}
	require.Equal(t, 5, p.Int("prefetch", 5), "a non-number falls back to the default")
	require.True(t, p.Bool("durable", false))
	require.False(t, p.Bool("missing", false))
	m := map[string]string{}
	require.NoError(t, p.Map("queue_headers", m))
	require.Equal(t, "10", m["x-max"])
	require.Error(t, Pipeline{"bad": "{not json"}.Map("bad", map[string]string{}))
}

// Numbers from YAML or JSON (float64) keep their plain decimal form: brokers refuse "1.2096e+06".
func TestPipelineMapWritesNumbersInDecimal(t *testing.T) {
	m := map[string]string{}
	require.NoError(t, Pipeline{"a": map[string]any{"big": 1209600.0, "frac": 0.25, "f32": float32(100000)}}.Map("a", m))
	require.Equal(t, map[string]string{"big": "1209600", "frac": "0.25", "f32": "100000"}, m)
	m = map[string]string{}
	require.NoError(t, Pipeline{"a": `{"MessageRetentionPeriod": 1209600}`}.Map("a", m))
	require.Equal(t, "1209600", m["MessageRetentionPeriod"])
}

func TestPipelineNameFallsBackToQueue(t *testing.T) {
	require.Equal(t, "q", Pipeline{"queue": "q"}.Name())
}

func TestPipelinePriority(t *testing.T) {
	require.Equal(t, int64(10), Pipeline{}.Priority())
	require.Equal(t, int64(4), Pipeline{"priority": int64(4)}.Priority())
	require.Equal(t, int64(10), Pipeline{"priority": "nope"}.Priority())
}
