// Package kafka is a Kafka jobs driver ("driver: kafka") built on franz-go, compatible with the
// RoadRunner jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs) and with
// the stock kafka driver's configuration. Unlike the stock driver it never commits past an
// unfinished job (offsets are committed per partition below the first unfinished record), requeues
// by re-producing the job before the original counts as finished, and honours delays.
package kafka

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "kafka"

// Plugin is the endure plugin registering the kafka driver as a jobs.Constructor (DriverFromConfig
// and DriverFromPipeline come from driverkit.Constructor, which reads the options for build).
type Plugin struct {
	driverkit.Constructor
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `kafka:` section is read when a pipeline
// is built, so a mistake there breaks the kafka pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	return p.Setup(pluginName, globalSection, log, cfg, build)
}

// Name returns "kafka", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string { return pluginName }

// build parses the pipeline's settings, connects and pings the brokers (kafka.ping.timeout), so an
// unreachable cluster fails here, naming the pipeline.
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
