// Package beanstalk is a beanstalkd jobs driver ("driver: beanstalk"), compatible with the
// RoadRunner jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs) and with
// the job bodies of the stock roadrunner-server/beanstalk driver. Jobs are put with beanstalkd's
// native delay, reserved by one consumer connection per pipeline, touched while they run so their
// TTR never expires under a long job, and released (not copied) when they are requeued.
package beanstalk

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "beanstalk"

// Plugin is the endure plugin registering the beanstalk driver as a jobs.Constructor.
type Plugin struct {
	deps driverkit.Deps
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `beanstalk:` section is optional (every
// key has a default) and is read when a pipeline is built, so a mistake there breaks the beanstalk
// pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	const op = errors.Op("beanstalk_plugin_init")
	if err := p.deps.Init(pluginName, log, cfg); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Name returns "beanstalk", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string {
	return pluginName
}

// DriverFromConfig builds the driver of a static pipeline. configKey is
// "jobs.pipelines.<name>.config"; a key missing there is looked up in the pipeline itself.
func (p *Plugin) DriverFromConfig(configKey string, queue jobs.Queue, pipeline jobs.Pipeline) (jobs.Driver, error) {
	const op = errors.Op("beanstalk_driver_from_config")
	if pipeline == nil {
		return nil, errors.E(op, errors.Str("beanstalk: nil pipeline"))
	}
	return p.build(op, configKey, pipeline, queue)
}

// DriverFromPipeline builds the driver of a pipeline declared at runtime (jobs.Declare), where
// every option comes from the pipeline map, usually as a string.
func (p *Plugin) DriverFromPipeline(pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	const op = errors.Op("beanstalk_driver_from_pipeline")
	if pipe == nil {
		return nil, errors.E(op, errors.Str("beanstalk: nil pipeline"))
	}
	return p.build(op, "", pipe, queue)
}

// build resolves the pipeline's settings (its config section at configKey, if any, then the
// pipeline map, then the `beanstalk:` section; absent = defaults) and creates the driver.
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
		return nil, err // not a typed nil in the interface
	}
	return d, nil
}
