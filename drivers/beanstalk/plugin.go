// Package beanstalk is a beanstalkd jobs driver ("driver: beanstalk"), compatible with the
// RoadRunner jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs) and with
// the job bodies of the stock roadrunner-server/beanstalk driver. Jobs are put with beanstalkd's
// native delay, reserved by one consumer connection per pipeline, touched while they run so their
// TTR never expires under a long job, and released (not copied) when they are requeued.
package beanstalk

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "beanstalk"

// Plugin is the endure plugin registering the beanstalk driver as a jobs.Constructor (DriverFromConfig
// and DriverFromPipeline come from driverkit.Constructor, which reads the options for build).
type Plugin struct {
	driverkit.Constructor
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `beanstalk:` section is optional (every
// key has a default) and is read when a pipeline is built, so a mistake there breaks the beanstalk
// pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	return p.Setup(pluginName, globalSection, log, cfg, build)
}

// Name returns "beanstalk", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string { return pluginName }

// build parses the pipeline's settings and builds the pipeline's driver.
func build(a driverkit.BuildArgs) (jobs.Driver, error) {
	conf, err := parseConfig(a.Options, a.Global)
	if err != nil {
		return nil, err
	}
	d, err := NewDriver(a.Log, a.Pipeline.Name(), conf, a.Queue)
	if err != nil {
		return nil, err
	}
	return d, nil
}
