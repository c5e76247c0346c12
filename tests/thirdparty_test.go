package tests

import (
	"testing"
	"time"

	stockMemory "github.com/roadrunner-server/memory/v5"
	"github.com/stretchr/testify/require"

	jobs "github.com/rrjobs/jobs"
	"github.com/rrjobs/jobs/cmd/rr/app"
	"github.com/rrjobs/jobs/tests/helpers"
)

// The stock RoadRunner memory driver (a third-party driver here) runs inside our plugin unchanged.
func TestHostsTheStockMemoryDriver(t *testing.T) {
	helpers.RequirePHP(t)
	plugins := append(app.StockPlugins(), &jobs.Plugin{}, &stockMemory.Plugin{})
	s := helpers.Start(t, twoPipelines, helpers.WithPlugins(plugins...))
	c, err := helpers.Dial(s.RPC)
	require.NoError(t, err)
	defer c.Close()

	// push and ack
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "stock-1", Payload: helpers.Action("ack")}))
	got := s.WaitEvents(t, 10*time.Second, "start", "stock-1", 1)[0]
	require.Equal(t, "memory", got.Driver)
	require.Equal(t, "p1", got.Pipeline)
	s.WaitEvents(t, 10*time.Second, "done", "stock-1", 1)

	// nack with requeue comes back; a final nack does not
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "stock-2", Payload: helpers.Action("requeue_until", "times", 1)}))
	s.WaitEvents(t, 10*time.Second, "done", "stock-2", 2)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "stock-3", Payload: helpers.Action("nack")}))
	s.WaitEvents(t, 10*time.Second, "done", "stock-3", 1)

	// pause, stat, resume
	require.NoError(t, c.Pause("p2"))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p2", ID: "stock-4", Payload: helpers.Action("ack")}))
	st := waitStat(t, c, "p2", func(st stat) bool { return !st.Ready })
	require.Equal(t, "memory", st.Driver)
	require.Equal(t, uint64(1), st.Priority)
	require.Empty(t, s.Events(t, "start", "stock-4"))
	require.NoError(t, c.Resume("p2"))
	s.WaitEvents(t, 10*time.Second, "done", "stock-4", 1)

	// declare through our plugin, consumed by the stock driver
	require.NoError(t, c.Declare(map[string]string{"name": "stock-dyn", "driver": "memory", "priority": "4", "prefetch": "10"}))
	require.NoError(t, c.Resume("stock-dyn"))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "stock-dyn", ID: "stock-5", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "stock-5", 1)
}
