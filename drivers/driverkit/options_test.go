package driverkit

import (
	"encoding/json"
	"math"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOptionsReadSectionThenPipeline(t *testing.T) {
	pipe := Pipeline{"name": "p1", "driver": "x", "prefetch": "7", "durable": "true", "ttl": "90", "tags": `{"a":"b"}`}
	o := NewOptions("x", pipe, map[string]any{"prefetch": 100, "queue": "q", "wait": "2s", "attrs": map[string]any{"k": 1}})

	n, err := o.Int("prefetch", 10, 1, 1000)
	require.NoError(t, err)
	require.Equal(t, int64(100), n, "the config section wins")
	require.Equal(t, "q", o.String("queue", "default"))
	require.Equal(t, "default", o.String("missing", "default"))
	b, err := o.Bool("durable", false)
	require.NoError(t, err)
	require.True(t, b, "Declare strings are read from the pipeline")
	d, err := o.Duration("wait", time.Second)
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, d)
	d, err = o.Duration("ttl", time.Second)
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, d, "a bare number is seconds")
	m, err := o.StringMap("attrs")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"k": "1"}, m)
	m, err = o.StringMap("tags")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "b"}, m)
}

func TestOptionsErrorsNameDriverPipelineKeyAndValue(t *testing.T) {
	o := NewOptions("boltdb", Pipeline{"name": "p1"}, map[string]any{"prefetch": "lots", "limit": -1, "frac": 1.5, "flag": "maybe", "wait": "soon", "neg": "-1s"})
	_, err := o.Int("prefetch", 1, 1, 10)
	require.EqualError(t, err, `boltdb pipeline "p1": prefetch must be an integer, got "lots"`)
	_, err = o.Int("limit", 1, 0, 10)
	require.EqualError(t, err, `boltdb pipeline "p1": limit must be >= 0, got -1`)
	_, err = o.Int("frac", 1, 0, 10)
	require.ErrorContains(t, err, "frac must be an integer")
	_, err = o.Bool("flag", false)
	require.EqualError(t, err, `boltdb pipeline "p1": flag must be true or false, got "maybe"`)
	_, err = o.Duration("wait", time.Second)
	require.ErrorContains(t, err, `wait must be a duration like 5s or 1m, got "soon"`)
	_, err = o.Duration("neg", time.Second)
	require.ErrorContains(t, err, "neg must be a positive duration")
}

type mapConfigurer map[string]map[string]any

func (m mapConfigurer) Has(k string) bool { _, ok := m[k]; return ok }
func (m mapConfigurer) UnmarshalKey(k string, out any) error {
	*(out.(*map[string]any)) = m[k]
	return nil
}

func TestReadSection(t *testing.T) {
	cfg := mapConfigurer{"jobs.pipelines.p.config": {"a": 1}}
	s, err := ReadSection(cfg, "jobs.pipelines.p.config")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"a": 1}, s)
	s, err = ReadSection(cfg, "missing")
	require.NoError(t, err)
	require.Nil(t, s)
}

// The forms boltdb's `permissions` accepts: YAML reads 0755 as the int 493, PHP sends "493".
func TestParseFileMode(t *testing.T) {
	for in, want := range map[any]os.FileMode{
		493: 0o755, "493": 0o755, "0755": 0o755, "0o755": 0o755, "0O755": 0o755, "420": 0o644, "0644": 0o644,
		int64(0o600): 0o600, float64(0o640): 0o640, uint32(0o777): 0o777, " 0600 ": 0o600, "0": 0,
	} {
		got, err := ParseFileMode(in)
		require.NoError(t, err, "%v", in)
		require.Equal(t, want, got, "%#v", in)
	}
	for _, in := range []any{"755", 512, "0o8", "x", true, 1.5, -1, "0789"} {
		_, err := ParseFileMode(in)
		require.Error(t, err, "%#v", in)
	}
	_, err := ParseFileMode(0o1777)
	require.EqualError(t, err, `must be a file mode between 0 and 0777 (decimal 511), got "1023" (decimal 1023)`)
	_, err = ParseFileMode("rwx")
	require.EqualError(t, err, `must be a file mode (octal 0755 or decimal 493), got "rwx"`)

	o := NewOptions("boltdb", Pipeline{"name": "p1", "permissions": "rw"}, map[string]any{"mode": 0o640})
	m, err := o.FileMode("mode", 0o755)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), m)
	m, err = o.FileMode("missing", 0o755)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), m)
	_, err = o.FileMode("permissions", 0)
	require.EqualError(t, err, `boltdb pipeline "p1": permissions must be a file mode (octal 0755 or decimal 493), got "rw"`)
}

func TestOptionsDurationForms(t *testing.T) {
	o := NewOptions("postgres", Pipeline{"name": "p1", "s": "0.25", "go": "250ms"}, map[string]any{
		"f": 0.25, "i": 5, "n": json.Number("1.5"), "d": 3 * time.Second, "zero": 0, "huge": math.MaxFloat64, "bad": true,
	})
	for key, want := range map[string]time.Duration{
		"s": 250 * time.Millisecond, "go": 250 * time.Millisecond, "f": 250 * time.Millisecond, "i": 5 * time.Second,
		"n": 1500 * time.Millisecond, "d": 3 * time.Second,
	} {
		d, err := o.Duration(key, time.Hour)
		require.NoError(t, err, key)
		require.Equal(t, want, d, key)
	}
	_, err := o.Duration("zero", time.Second)
	require.EqualError(t, err, `postgres pipeline "p1": zero must be a positive duration, got 0s`)
	_, err = o.Duration("huge", time.Second)
	require.ErrorContains(t, err, "huge must be a duration like 5s or 1m")
	_, err = o.Duration("bad", time.Second)
	require.EqualError(t, err, `postgres pipeline "p1": bad must be a duration like 5s or 1m, got "true"`)

	d, err := o.DurationMin("f", time.Second, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, 250*time.Millisecond, d)
	d, err = o.DurationMin("missing", time.Second, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, time.Second, d)
	_, err = o.DurationMin("f", time.Second, time.Second)
	require.EqualError(t, err, `postgres pipeline "p1": f must be at least 1s, got 250ms`)
	_, err = o.DurationMin("zero", time.Second, time.Millisecond)
	require.EqualError(t, err, `postgres pipeline "p1": zero must be at least 1ms, got 0s`)
}

func TestOptionsGlobalSectionNamesItsKeys(t *testing.T) {
	o := NewOptions("postgres", Pipeline{"name": "orders", "max_conns": "3"}, nil)
	g := o.Global("postgres", map[string]any{"max_conns": 0, "dsn": "postgres://x/y"})
	require.Equal(t, "postgres://x/y", g.String("dsn", ""))
	_, err := g.Int("max_conns", 5, 1, 1000)
	require.EqualError(t, err, `postgres pipeline "orders": postgres.max_conns must be >= 1, got 0`)
	n, err := o.Global("postgres", nil).Int("max_conns", 5, 1, 1000)
	require.NoError(t, err)
	require.Equal(t, int64(5), n, "a global section never reads the pipeline map")
}

// pipelineGetTopLevelOnly is a jobs.Pipeline whose Get, unlike Has and String, ignores `config`.
type pipelineGetTopLevelOnly struct{ Pipeline }

func (p pipelineGetTopLevelOnly) Get(key string) any { return p.Pipeline[key] }

func TestOptionsReadConfigSubmapThroughString(t *testing.T) {
	o := NewOptions("x", pipelineGetTopLevelOnly{Pipeline{"name": "p", "config": map[string]any{"prefetch": "3"}}}, nil)
	n, err := o.Int("prefetch", 1, 0, 10)
	require.NoError(t, err)
	require.Equal(t, int64(3), n)
}

func TestToInt64Ranges(t *testing.T) {
	n, err := ToInt64(json.Number("42"))
	require.NoError(t, err)
	require.Equal(t, int64(42), n)
	n, err = ToInt64(json.Number("4.0"))
	require.NoError(t, err)
	require.Equal(t, int64(4), n)
	n, err = ToInt64(2.9)
	require.NoError(t, err)
	require.Equal(t, int64(2), n, "fractions are truncated (Options.Int rejects them)")
	for _, v := range []any{uint64(math.MaxUint64), math.Inf(1), math.NaN(), 1e19, json.Number("x")} {
		_, err := ToInt64(v)
		require.Error(t, err, "%v", v)
	}
}

func TestOptionsIntOrDefault(t *testing.T) {
	o := NewOptions("x", Pipeline{"name": "p", "zero": "0", "set": "7", "neg": "-1"}, nil)
	for key, want := range map[string]int64{"zero": 10, "set": 7, "missing": 10} {
		n, err := o.IntOrDefault(key, 10, 100)
		require.NoError(t, err, key)
		require.Equal(t, want, n, key)
	}
	_, err := o.IntOrDefault("neg", 10, 100)
	require.EqualError(t, err, `x pipeline "p": neg must be >= 0, got -1`)
	_, err = o.IntOrDefault("set", 10, 5)
	require.EqualError(t, err, `x pipeline "p": set must be <= 5, got 7`)
}
