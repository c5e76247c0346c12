// Package nats is a NATS JetStream jobs driver ("driver: nats"), compatible with the RoadRunner jobs
// plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs) and with the stock driver's
// configuration and message format. Jobs are messages of a subject in a stream; each pipeline
// consumes them through a durable pull consumer (a restart or pause does not replay acknowledged
// jobs), keeps running jobs from being redelivered with progress signals, and supports delays
// through a second, delayed subject.
package nats

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "nats"

// Plugin is the endure plugin registering the nats driver as a jobs.Constructor.
type Plugin struct {
	deps driverkit.Deps
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `nats:` section is read when a pipeline is
// built, so a mistake there breaks the nats pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	const op = errors.Op("nats_plugin_init")
	if err := p.deps.Init(pluginName, log, cfg); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Name returns "nats", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string {
	return pluginName
}

// DriverFromConfig builds the driver of a static pipeline. configKey is
// "jobs.pipelines.<name>.config"; a key missing there is looked up in the pipeline itself. It
// connects and creates or updates the stream and the consumers, so an unreachable server or a
// conflicting stream fails here, naming the pipeline.
func (p *Plugin) DriverFromConfig(configKey string, queue jobs.Queue, pipeline jobs.Pipeline) (jobs.Driver, error) {
	const op = errors.Op("nats_driver_from_config")
	if pipeline == nil {
		return nil, errors.E(op, errors.Str("nats: nil pipeline"))
	}
	return p.build(op, configKey, pipeline, queue, false)
}

// DriverFromPipeline builds the driver of a pipeline declared at runtime (jobs.Declare), where
// every option comes from the pipeline map, usually as a string.
func (p *Plugin) DriverFromPipeline(pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	const op = errors.Op("nats_driver_from_pipeline")
	if pipe == nil {
		return nil, errors.E(op, errors.Str("nats: nil pipeline"))
	}
	return p.build(op, "", pipe, queue, true)
}

// build resolves the pipeline's settings (its config section at configKey, if any, then the
// pipeline map, then the `nats:` section; absent = defaults) and connects.
func (p *Plugin) build(op errors.Op, configKey string, pipe jobs.Pipeline, queue jobs.Queue, declared bool) (jobs.Driver, error) {
	o, err := p.deps.Options(pluginName, pipe, configKey)
	if err != nil {
		return nil, errors.E(op, err)
	}
	global, err := p.deps.Global(o, globalSection)
	if err != nil {
		return nil, errors.E(op, err)
	}
	conf, err := parseConfig(o, global, declared)
	if err != nil {
		return nil, errors.E(op, err)
	}
	d, err := NewDriver(p.deps.Log(), pipe.Name(), conf, queue)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return d, nil
}
