package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/roadrunner-server/events"
	"github.com/stretchr/testify/require"
)

func TestDriverCommandRestartRebuildsAndKeepsThePipeline(t *testing.T) {
	p, rec := newTestPlugin(t)
	dc, err := p.listenDriverCommands()
	require.NoError(t, err)
	defer dc.stop()

	require.NoError(t, p.Declare(context.Background(), map[string]string{"name": "auto", "driver": "rec"}))
	before := p.pipelines.get("auto")
	require.True(t, before.consuming.Load())

	bus, _ := events.NewEventBus()
	bus.Send(events.NewEvent(events.EventJOBSDriverCommand, "auto", commandRestart))
	require.Eventually(t, func() bool { return len(rec.builds()) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		e := p.pipelines.get("auto")
		return e != nil && e != before && e.consuming.Load()
	}, 5*time.Second, 10*time.Millisecond, "restarted, still registered and consuming (stock destroyed it)")

	bus.Send(events.NewEvent(events.EventJOBSDriverCommand, "auto", commandStop))
	require.Eventually(t, func() bool { return p.pipelines.get("auto") == nil }, 5*time.Second, 10*time.Millisecond)
}
