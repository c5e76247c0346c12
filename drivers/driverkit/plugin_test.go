package driverkit

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

type namedLogger struct{ names []string }

func (l *namedLogger) NamedLogger(name string) *zap.Logger {
	l.names = append(l.names, name)
	return zap.NewNop()
}

type failingConfigurer struct{}

func (failingConfigurer) Has(string) bool                { return true }
func (failingConfigurer) UnmarshalKey(string, any) error { return errors.New("bad yaml") }

func TestDepsInit(t *testing.T) {
	var d Deps
	require.NotNil(t, d.Log(), "usable before Init")
	require.EqualError(t, d.Init("boltdb", nil, mapConfigurer{}), "boltdb: logger and configurer are required")
	require.Error(t, d.Init("boltdb", &namedLogger{}, nil))
	l := &namedLogger{}
	require.NoError(t, d.Init("boltdb", l, mapConfigurer{}))
	require.Equal(t, []string{"boltdb"}, l.names)
}

func TestDepsOptionsAndGlobal(t *testing.T) {
	var d Deps
	require.NoError(t, d.Init("boltdb", &namedLogger{}, mapConfigurer{
		"jobs.pipelines.p1.config": {"prefetch": 5},
		"boltdb":                   {"permissions": 0o600},
	}))
	pipe := Pipeline{"name": "p1", "prefetch": "7", "priority": "2"}
	o, err := d.Options("boltdb", pipe, "jobs.pipelines.p1.config")
	require.NoError(t, err)
	n, err := o.Int("prefetch", 0, 0, 100)
	require.NoError(t, err)
	require.Equal(t, int64(5), n, "the config section wins over the pipeline map")
	n, err = o.Int("priority", 0, 0, 100)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)

	o, err = d.Options("boltdb", pipe, "") // a declared pipeline
	require.NoError(t, err)
	n, err = o.Int("prefetch", 0, 0, 100)
	require.NoError(t, err)
	require.Equal(t, int64(7), n)

	g, err := d.Global(o, "boltdb")
	require.NoError(t, err)
	m, err := g.FileMode("permissions", 0o755)
	require.NoError(t, err)
	require.Equal(t, 0o600, int(m))
	g, err = d.Global(o, "absent")
	require.NoError(t, err)
	require.Equal(t, "x", g.String("permissions", "x"))

	// Without Init (no configurer) everything comes from the pipeline.
	var bare Deps
	o, err = bare.Options("boltdb", pipe, "jobs.pipelines.p1.config")
	require.NoError(t, err)
	require.Equal(t, "7", o.String("prefetch", ""))

	var broken Deps
	require.NoError(t, broken.Init("postgres", &namedLogger{}, failingConfigurer{}))
	_, err = broken.Options("postgres", pipe, "jobs.pipelines.p1.config")
	require.EqualError(t, err, `postgres pipeline "p1": read jobs.pipelines.p1.config: bad yaml`)
	_, err = broken.Global(NewOptions("postgres", pipe, nil), "postgres")
	require.EqualError(t, err, `postgres pipeline "p1": read postgres: bad yaml`)
}
