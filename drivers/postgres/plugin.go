// Package postgres is a PostgreSQL jobs driver ("driver: postgres"), compatible with the RoadRunner
// jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs). Jobs are rows of a
// table the driver creates; consumers lease them with FOR UPDATE SKIP LOCKED, are woken by
// LISTEN/NOTIFY, and keep their leases alive with a heartbeat. Any SQL client can enqueue a job
// inside its own transaction: it becomes visible to workers only if that transaction commits.
package postgres

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "postgres"

// Plugin is the endure plugin registering the postgres driver as a jobs.Constructor.
type Plugin struct {
	deps driverkit.Deps
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `postgres:` section is read when a
// pipeline is built, so a mistake there breaks the postgres pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	const op = errors.Op("postgres_plugin_init")
	if err := p.deps.Init(pluginName, log, cfg); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Name returns "postgres", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string {
	return pluginName
}

// DriverFromConfig builds the driver of a static pipeline. configKey is
// "jobs.pipelines.<name>.config"; a key missing there is looked up in the pipeline itself.
// It connects to the database and creates or migrates the schema, so a bad DSN or missing
// privileges fail here, naming the pipeline.
func (p *Plugin) DriverFromConfig(configKey string, queue jobs.Queue, pipeline jobs.Pipeline) (jobs.Driver, error) {
	const op = errors.Op("postgres_driver_from_config")
	if pipeline == nil {
		return nil, errors.E(op, errors.Str("postgres: nil pipeline"))
	}
	return p.build(op, configKey, pipeline, queue)
}

// DriverFromPipeline builds the driver of a pipeline declared at runtime (jobs.Declare), where
// every option comes from the pipeline map, usually as a string.
func (p *Plugin) DriverFromPipeline(pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	const op = errors.Op("postgres_driver_from_pipeline")
	if pipe == nil {
		return nil, errors.E(op, errors.Str("postgres: nil pipeline"))
	}
	return p.build(op, "", pipe, queue)
}

// build resolves the pipeline's settings (its config section at configKey, if any, then the
// pipeline map, then the `postgres:` section; absent = defaults) and connects.
func (p *Plugin) build(op errors.Op, configKey string, pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	o, err := p.deps.Options(pluginName, pipe, configKey)
	if err != nil {
		return nil, errors.E(op, err)
	}
	global, err := p.deps.Global(o, globalSection)
	if err != nil {
		return nil, errors.E(op, err)
	}
	conf, err := parseConfig(pipe.Name(), o, global)
	if err != nil {
		return nil, errors.E(op, err)
	}
	d, err := NewDriver(p.deps.Log(), pipe.Name(), conf, queue)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return d, nil
}
