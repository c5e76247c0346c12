package jobs

import (
	"context"
	"fmt"

	"github.com/roadrunner-server/events"
	"go.uber.org/zap"
)

// Driver commands: a driver asks the plugin to stop or restart its pipeline by sending
// EventJOBSDriverCommand on RoadRunner's process-wide events bus, with the pipeline name as the
// event's plugin and the command as its message (stock AMQP does this when its redial fails).
const (
	commandStop    = "stop"
	commandRestart = "restart"
)

// driverCommands listens for driver commands until stop is called.
type driverCommands struct {
	bus    *events.Bus
	subID  string
	events chan events.Event
	done   chan struct{}
}

func (p *Plugin) listenDriverCommands() (*driverCommands, error) {
	bus, id := events.NewEventBus()
	dc := &driverCommands{bus: bus, subID: id, events: make(chan events.Event, 16), done: make(chan struct{})}
	if err := bus.SubscribeP(id, fmt.Sprintf("*.%s", events.EventJOBSDriverCommand.String()), dc.events); err != nil {
		return nil, fmt.Errorf("subscribe to driver commands: %w", err)
	}
	go func() {
		defer close(dc.done)
		for ev := range dc.events {
			p.handleDriverCommand(ev.Plugin(), ev.Message())
		}
	}()
	return dc, nil
}

func (dc *driverCommands) stop() {
	if dc == nil {
		return
	}
	dc.bus.Unsubscribe(dc.subID)
	close(dc.events)
	<-dc.done
}

func (p *Plugin) handleDriverCommand(pipeline, command string) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	var err error
	switch command {
	case commandStop:
		err = p.destroyOne(ctx, pipeline)
	case commandRestart:
		err = p.restart(ctx, pipeline)
	default:
		err = fmt.Errorf("unknown driver command %q", command)
	}
	if err != nil {
		p.log.Error("driver command failed", zap.String("pipeline", pipeline), zap.String("command", command), zap.Error(err))
		return
	}
	p.log.Info("driver command done", zap.String("pipeline", pipeline), zap.String("command", command))
}

// restart replaces a pipeline's driver with a fresh one built the same way (from .rr.yaml or from
// its Declare map) and resumes consumption if it was consuming. Stock destroyed the pipeline right
// after restarting it (roadrunner#2091).
func (p *Plugin) restart(ctx context.Context, name string) error {
	old := p.pipelines.get(name)
	if old == nil {
		return fmt.Errorf("no such pipeline, requested: %s", name)
	}
	ctor, err := p.constructor(old.pipe.Driver())
	if err != nil {
		return err
	}
	if old.driver != nil {
		if err := old.driver.Stop(ctx); err != nil {
			p.log.Warn("old driver did not stop cleanly", zap.String("pipeline", name), zap.Error(err))
		}
	}
	e := newPipelineEntry(old.pipe, old.group, old.retry, p.metrics)
	if key := old.pipe.String(keyCreatedWithConfig, ""); key != "" {
		e.driver, err = ctor.DriverFromConfig(key, old.group.queue, old.pipe)
	} else {
		e.driver, err = ctor.DriverFromPipeline(old.pipe, old.group.queue)
	}
	if err == nil && e.driver == nil {
		err = fmt.Errorf("driver %q returned no driver", old.pipe.Driver())
	}
	if err != nil {
		e.driver = nil
		e.setErr(fmt.Errorf("restart: %w", err))
		p.pipelines.replace(name, old, e)
		return err
	}
	p.pipelines.replace(name, old, e)
	if old.consuming.Load() {
		p.run(e)
		return e.err()
	}
	return nil
}
