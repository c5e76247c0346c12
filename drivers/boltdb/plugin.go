// Package boltdb is a durable, embedded jobs driver ("driver: boltdb") backed by a bbolt file,
// compatible with the RoadRunner jobs plugin contract
// (github.com/roadrunner-server/api/v4/plugins/v4/jobs). Every job is fsync'd before Push returns;
// jobs that were handed out but not acknowledged when the process died come back on the next start.
package boltdb

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "boltdb"

// Plugin is the endure plugin registering the boltdb driver as a jobs.Constructor.
type Plugin struct {
	deps driverkit.Deps
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	const op = errors.Op("boltdb_plugin_init")
	if err := p.deps.Init(pluginName, log, cfg); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Name returns "boltdb", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string {
	return pluginName
}

// DriverFromConfig builds the driver of a static pipeline. configKey is
// "jobs.pipelines.<name>.config"; when that section is absent the defaults apply. A key missing
// there is looked up in the pipeline itself, and `permissions` finally in the global `boltdb`
// section.
func (p *Plugin) DriverFromConfig(configKey string, queue jobs.Queue, pipeline jobs.Pipeline) (jobs.Driver, error) {
	const op = errors.Op("boltdb_driver_from_config")
	if pipeline == nil {
		return nil, errors.E(op, errors.Str("boltdb: nil pipeline"))
	}
	d, err := p.open(configKey, queue, pipeline)
	if err != nil {
		return nil, errors.E(op, err)
	}
	return d, nil
}

// DriverFromPipeline builds the driver of a pipeline declared at runtime (jobs.Declare), where
// every option comes from the pipeline map, usually as a string.
func (p *Plugin) DriverFromPipeline(pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	const op = errors.Op("boltdb_driver_from_pipeline")
	if pipe == nil {
		return nil, errors.E(op, errors.Str("boltdb: nil pipeline"))
	}
	d, err := p.open("", queue, pipe)
	if err != nil {
		return nil, errors.E(op, err)
	}
	return d, nil
}

// open resolves the pipeline's settings (its config section at configKey, if any, then the
// pipeline map, then the global section for `permissions`; the rest of that section belongs to the
// KV plugin) and opens its file.
func (p *Plugin) open(configKey string, queue jobs.Queue, pipe jobs.Pipeline) (*Driver, error) {
	o, err := p.deps.Options(pluginName, pipe, configKey)
	if err != nil {
		return nil, err
	}
	global, err := p.deps.Global(o, globalSection)
	if err != nil {
		return nil, err
	}
	conf, err := parseConfig(o, global)
	if err != nil {
		return nil, err
	}
	return Open(p.deps.Log(), pipe.Name(), conf, queue)
}
