// Package amqp is a RabbitMQ (AMQP 0-9-1) jobs driver ("driver: amqp"), compatible with the
// RoadRunner jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs) and with
// the stock amqp driver's configuration and message format. Pushes wait for publisher confirms,
// delays use per-delay dead-letter queues, and the driver reconnects and resumes consuming by
// itself after the broker or a channel goes away.
package amqp

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "amqp"

// Plugin is the endure plugin registering the amqp driver as a jobs.Constructor.
type Plugin struct {
	deps driverkit.Deps
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `amqp:` section is read when a pipeline is
// built, so a mistake there breaks the amqp pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	const op = errors.Op("amqp_plugin_init")
	if err := p.deps.Init(pluginName, log, cfg); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Name returns "amqp", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string {
	return pluginName
}

// DriverFromConfig builds the driver of a static pipeline. configKey is
// "jobs.pipelines.<name>.config"; a key missing there is looked up in the pipeline itself. It
// connects and declares the exchange (and the queue with its binding), so an unreachable broker or
// a topology that conflicts with an existing one fails here, naming the pipeline.
func (p *Plugin) DriverFromConfig(configKey string, queue jobs.Queue, pipeline jobs.Pipeline) (jobs.Driver, error) {
	const op = errors.Op("amqp_driver_from_config")
	if pipeline == nil {
		return nil, errors.E(op, errors.Str("amqp: nil pipeline"))
	}
	return p.build(op, configKey, pipeline, queue)
}

// DriverFromPipeline builds the driver of a pipeline declared at runtime (jobs.Declare), where
// every option comes from the pipeline map, usually as a string.
func (p *Plugin) DriverFromPipeline(pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	const op = errors.Op("amqp_driver_from_pipeline")
	if pipe == nil {
		return nil, errors.E(op, errors.Str("amqp: nil pipeline"))
	}
	return p.build(op, "", pipe, queue)
}

func (p *Plugin) build(op errors.Op, configKey string, pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	o, err := p.deps.Options(pluginName, pipe, configKey)
	if err != nil {
		return nil, errors.E(op, err)
	}
	global, err := p.deps.Global(o, globalSection)
	if err != nil {
		return nil, errors.E(op, err)
	}
	conf, err := parseConfig(o, global)
	if err != nil {
		return nil, errors.E(op, err)
	}
	d, err := NewDriver(p.deps.Log(), pipe.Name(), conf, queue)
	if err != nil {
		return nil, errors.E(op, err) // not a typed nil in the interface
	}
	return d, nil
}
