// Package amqp is a RabbitMQ (AMQP 0-9-1) jobs driver ("driver: amqp"), compatible with the
// RoadRunner jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs) and with
// the stock amqp driver's configuration and message format. Pushes wait for publisher confirms,
// delays use per-delay dead-letter queues, and the driver reconnects and resumes consuming by
// itself after the broker or a channel goes away.
package amqp

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "amqp"

// Plugin is the endure plugin registering the amqp driver as a jobs.Constructor (DriverFromConfig
// and DriverFromPipeline come from driverkit.Constructor, which reads the options for build).
type Plugin struct {
	driverkit.Constructor
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `amqp:` section is read when a pipeline is
// built, so a mistake there breaks the amqp pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	return p.Setup(pluginName, globalSection, log, cfg, build)
}

// Name returns "amqp", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string { return pluginName }

// build parses the pipeline's settings and connects to RabbitMQ.
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
