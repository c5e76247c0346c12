// Package nats is a NATS JetStream jobs driver ("driver: nats"), compatible with the RoadRunner jobs
// plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs) and with the stock driver's
// configuration and message format. Jobs are messages of a subject in a stream; each pipeline
// consumes them through a durable pull consumer (a restart or pause does not replay acknowledged
// jobs), keeps running jobs from being redelivered with progress signals, and supports delays
// through a second, delayed subject.
package nats

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "nats"

// Plugin is the endure plugin registering the nats driver as a jobs.Constructor (DriverFromConfig
// and DriverFromPipeline come from driverkit.Constructor, which reads the options for build).
type Plugin struct {
	driverkit.Constructor
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `nats:` section is read when a pipeline is
// built, so a mistake there breaks the nats pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	return p.Setup(pluginName, globalSection, log, cfg, build)
}

// Name returns "nats", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string { return pluginName }

// build parses the pipeline's settings (a declared pipeline gets the defaults of the stock Declare
// path) and connects to NATS.
func build(a driverkit.BuildArgs) (jobs.Driver, error) {
	conf, err := parseConfig(a.Options, a.Global, a.Declared)
	if err != nil {
		return nil, err
	}
	d, err := NewDriver(a.Log, a.Pipeline.Name(), conf, a.Queue)
	if err != nil {
		return nil, err
	}
	return d, nil
}
