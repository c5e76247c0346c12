package tests

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	apiJobs "github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"

	jobs "github.com/rrjobs/jobs"
	"github.com/rrjobs/jobs/cmd/rr/app"
	"github.com/rrjobs/jobs/tests/helpers"
)

// brokerDown is flipped by the test to make the fake broker driver report a lost connection.
var brokerDown atomic.Bool

// fakeBroker is a minimal third-party driver plugin whose State reports a broken connection on demand.
type fakeBroker struct{}

func (*fakeBroker) Init() error  { return nil }
func (*fakeBroker) Name() string { return "fakebroker" }
func (*fakeBroker) DriverFromConfig(_ string, _ apiJobs.Queue, p apiJobs.Pipeline) (apiJobs.Driver, error) {
	return &fakeBrokerDriver{pipe: p}, nil
}
func (*fakeBroker) DriverFromPipeline(p apiJobs.Pipeline, _ apiJobs.Queue) (apiJobs.Driver, error) {
	return &fakeBrokerDriver{pipe: p}, nil
}

type fakeBrokerDriver struct{ pipe apiJobs.Pipeline }

func (*fakeBrokerDriver) Push(context.Context, apiJobs.Message) error { return nil }
func (*fakeBrokerDriver) Run(context.Context, apiJobs.Pipeline) error { return nil }
func (*fakeBrokerDriver) Stop(context.Context) error                  { return nil }
func (*fakeBrokerDriver) Pause(context.Context, string) error         { return nil }
func (*fakeBrokerDriver) Resume(context.Context, string) error        { return nil }
func (d *fakeBrokerDriver) State(context.Context) (*apiJobs.State, error) {
	if brokerDown.Load() {
		return &apiJobs.State{Pipeline: d.pipe.Name(), Driver: "fakebroker", ErrorMessage: "connection refused"}, nil
	}
	return &apiJobs.State{Pipeline: d.pipe.Name(), Driver: "fakebroker", Ready: true}, nil
}

func TestReadyReflectsPipelineHealth(t *testing.T) {
	helpers.RequirePHP(t)
	plugins := append(app.StockPlugins(), &jobs.Plugin{}, &fakeBroker{})
	s := helpers.Start(t, memoryConfig+`
jobs:
  pool:
    num_workers: 1
  consume: ["remote"]
  pipelines:
    remote:
      driver: fakebroker
`, helpers.WithPlugins(plugins...))
	brokerDown.Store(false)
	helpers.Eventually(t, 10*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready")

	brokerDown.Store(true)
	t.Cleanup(func() { brokerDown.Store(false) })
	helpers.Eventually(t, 10*time.Second, func() error {
		return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusServiceUnavailable)
	}, "not ready while the broker is down")
	require.NoError(t, expectStatus(s.Status, "/health?plugin=jobs", http.StatusOK), "workers are still healthy")

	brokerDown.Store(false)
	helpers.Eventually(t, 10*time.Second, func() error { return expectStatus(s.Status, "/ready?plugin=jobs", http.StatusOK) }, "ready again")
}

func TestStatSurvivesADriverWithoutState(t *testing.T) {
	helpers.RequirePHP(t)
	plugins := append(app.StockPlugins(), &jobs.Plugin{}, &nilStateBroker{})
	s := helpers.Start(t, memoryConfig+`
jobs:
  pool:
    num_workers: 1
  pipelines:
    silent:
      driver: nilstate
`, helpers.WithPlugins(plugins...))
	c, err := helpers.Dial(s.RPC)
	require.NoError(t, err)
	defer c.Close()
	st, err := c.Stat()
	require.NoError(t, err, "stock panicked here (roadrunner#2377)")
	require.Equal(t, "nilstate", st["silent"].GetDriver())
	_, err = c.List()
	require.NoError(t, err, "the server is still serving")
}

// nilStateBroker returns (nil, nil) from State, like the Pub/Sub driver that crashed stock Stat.
type nilStateBroker struct{ fakeBroker }

func (*nilStateBroker) Name() string { return "nilstate" }
func (*nilStateBroker) DriverFromConfig(_ string, _ apiJobs.Queue, p apiJobs.Pipeline) (apiJobs.Driver, error) {
	return &nilStateDriver{fakeBrokerDriver{pipe: p}}, nil
}

type nilStateDriver struct{ fakeBrokerDriver }

func (*nilStateDriver) State(context.Context) (*apiJobs.State, error) { return nil, nil }
