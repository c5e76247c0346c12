package driverkit

import (
	"context"
	"errors"
	"testing"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
)

// stubDriver is a jobs.Driver that does nothing.
type stubDriver struct{ jobs.Driver }

func (*stubDriver) State(context.Context) (*jobs.State, error) { return &jobs.State{}, nil }

func TestConstructorReadsOptionsAndGlobalForBuild(t *testing.T) {
	var got []BuildArgs
	var c Constructor
	require.NoError(t, c.Setup("fake", "fake", &namedLogger{}, mapConfigurer{
		"jobs.pipelines.p1.config": {"prefetch": 5},
		"fake":                     {"addr": "tcp://x"},
	}, func(a BuildArgs) (jobs.Driver, error) {
		got = append(got, a)
		return &stubDriver{}, nil
	}))

	d, err := c.DriverFromConfig("jobs.pipelines.p1.config", nil, Pipeline{"name": "p1"})
	require.NoError(t, err)
	require.NotNil(t, d)
	_, err = c.DriverFromPipeline(Pipeline{"name": "dyn", "prefetch": "9"}, nil)
	require.NoError(t, err)

	require.Len(t, got, 2)
	require.False(t, got[0].Declared)
	require.Equal(t, "5", got[0].Options.String("prefetch", ""), "the config section is read")
	require.Equal(t, "tcp://x", got[0].Global.String("addr", ""), "the global section is read")
	require.True(t, got[1].Declared)
	require.Equal(t, "9", got[1].Options.String("prefetch", ""), "a declared pipeline's options are in its map")
	require.NotNil(t, got[1].Log)
}

func TestConstructorErrors(t *testing.T) {
	var unset Constructor
	_, err := unset.DriverFromConfig("k", nil, Pipeline{"name": "p"})
	require.ErrorContains(t, err, "used before Init")

	var c Constructor
	require.Error(t, c.Setup("fake", "", nil, mapConfigurer{}, func(BuildArgs) (jobs.Driver, error) { return nil, nil }))
	require.ErrorContains(t, c.Setup("fake", "", &namedLogger{}, mapConfigurer{}, nil), "fake_plugin_init")

	var typedNil *stubDriver
	builds := []func(BuildArgs) (jobs.Driver, error){
		func(BuildArgs) (jobs.Driver, error) { return nil, errors.New("broker down") },
		func(BuildArgs) (jobs.Driver, error) { return typedNil, nil },
	}
	for i, b := range builds {
		require.NoError(t, c.Setup("fake", "", &namedLogger{}, mapConfigurer{}, b))
		d, err := c.DriverFromConfig("k", nil, Pipeline{"name": "p"})
		require.Nil(t, d, "case %d: never a typed nil in the interface", i)
		require.ErrorContains(t, err, "fake_driver_from_config")
	}
	_, err = c.DriverFromPipeline(nil, nil)
	require.ErrorContains(t, err, "fake: nil pipeline")

	require.NoError(t, c.Setup("fake", "fake", &namedLogger{}, failingConfigurer{}, builds[0]))
	_, err = c.DriverFromPipeline(Pipeline{"name": "p"}, nil)
	require.ErrorContains(t, err, `fake pipeline "p": read fake: bad yaml`)
}
