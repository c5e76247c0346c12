// Package boltdb is a durable, embedded jobs driver ("driver: boltdb") backed by a bbolt file,
// compatible with the RoadRunner jobs plugin contract
// (github.com/roadrunner-server/api/v4/plugins/v4/jobs). Every job is fsync'd before Push returns;
// jobs that were handed out but not acknowledged when the process died come back on the next start.
package boltdb

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "boltdb"

// Plugin is the endure plugin registering the boltdb driver as a jobs.Constructor (DriverFromConfig
// and DriverFromPipeline come from driverkit.Constructor, which reads the options for build).
type Plugin struct {
	driverkit.Constructor
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	return p.Setup(pluginName, globalSection, log, cfg, build)
}

// Name returns "boltdb", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string { return pluginName }

// build parses the pipeline's settings and opens the pipeline's database file.
func build(a driverkit.BuildArgs) (jobs.Driver, error) {
	conf, err := parseConfig(a.Options, a.Global)
	if err != nil {
		return nil, err
	}
	d, err := Open(a.Log, a.Pipeline.Name(), conf, a.Queue)
	if err != nil {
		return nil, err
	}
	return d, nil
}
