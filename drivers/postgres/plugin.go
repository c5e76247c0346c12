// Package postgres is a PostgreSQL jobs driver ("driver: postgres"), compatible with the RoadRunner
// jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs). Jobs are rows of a
// table the driver creates; consumers lease them with FOR UPDATE SKIP LOCKED, are woken by
// LISTEN/NOTIFY, and keep their leases alive with a heartbeat. Any SQL client can enqueue a job
// inside its own transaction: it becomes visible to workers only if that transaction commits.
package postgres

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "postgres"

// Plugin is the endure plugin registering the postgres driver as a jobs.Constructor (DriverFromConfig
// and DriverFromPipeline come from driverkit.Constructor, which reads the options for build).
type Plugin struct {
	driverkit.Constructor
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `postgres:` section is read when a
// pipeline is built, so a mistake there breaks the postgres pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	return p.Setup(pluginName, globalSection, log, cfg, build)
}

// Name returns "postgres", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string { return pluginName }

// build parses the pipeline's settings and connects to the pipeline's database.
func build(a driverkit.BuildArgs) (jobs.Driver, error) {
	conf, err := parseConfig(a.Pipeline.Name(), a.Options, a.Global)
	if err != nil {
		return nil, err
	}
	d, err := NewDriver(a.Log, a.Pipeline.Name(), conf, a.Queue)
	if err != nil {
		return nil, err
	}
	return d, nil
}
