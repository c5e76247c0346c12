// Package sqs is an Amazon SQS jobs driver ("driver: sqs"), compatible with the RoadRunner jobs
// plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs) and with the stock
// roadrunner-server/sqs driver's configuration and message layout. It uses aws-sdk-go-v2. Jobs are
// SQS messages; delays are native (up to 15 minutes); FIFO queues keep group order; the visibility
// of a job is extended while it waits or runs, so long jobs are not delivered twice.
package sqs

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "sqs"

// Plugin is the endure plugin registering the sqs driver as a jobs.Constructor.
type Plugin struct {
	deps driverkit.Deps
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `sqs:` section is read when a pipeline is
// built, so a mistake there breaks the sqs pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	const op = errors.Op("sqs_plugin_init")
	if err := p.deps.Init(pluginName, log, cfg); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Name returns "sqs", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string {
	return pluginName
}

// DriverFromConfig builds the driver of a static pipeline. configKey is
// "jobs.pipelines.<name>.config"; a key missing there is looked up in the pipeline itself. It
// creates the queue (or looks it up with skip_queue_declaration), so bad credentials, a bad
// endpoint or a missing queue fail here, naming the pipeline.
func (p *Plugin) DriverFromConfig(configKey string, queue jobs.Queue, pipeline jobs.Pipeline) (jobs.Driver, error) {
	const op = errors.Op("sqs_driver_from_config")
	if pipeline == nil {
		return nil, errors.E(op, errors.Str("sqs: nil pipeline"))
	}
	return p.build(op, configKey, pipeline, queue)
}

// DriverFromPipeline builds the driver of a pipeline declared at runtime (jobs.Declare), where
// every option comes from the pipeline map, usually as a string.
func (p *Plugin) DriverFromPipeline(pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	const op = errors.Op("sqs_driver_from_pipeline")
	if pipe == nil {
		return nil, errors.E(op, errors.Str("sqs: nil pipeline"))
	}
	return p.build(op, "", pipe, queue)
}

// build resolves the pipeline's settings (its config section at configKey, if any, then the
// pipeline map, then the `sqs:` section; absent = defaults) and connects.
func (p *Plugin) build(op errors.Op, configKey string, pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	o, err := p.deps.Options(pluginName, pipe, configKey)
	if err != nil {
		return nil, errors.E(op, err)
	}
	global, err := p.deps.Global(o, globalSection)
	if err != nil {
		return nil, errors.E(op, err)
	}
	conf, warnings, err := parseConfig(o, global)
	if err != nil {
		return nil, errors.E(op, err)
	}
	log := p.deps.Log()
	for _, w := range warnings {
		log.Warn(w, zap.String("driver", pluginName), zap.String("pipeline", pipe.Name()))
	}
	d, err := NewDriver(log, pipe.Name(), conf, queue)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return d, nil
}
