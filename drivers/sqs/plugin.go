// Package sqs is an Amazon SQS jobs driver ("driver: sqs"), compatible with the RoadRunner jobs
// plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs) and with the stock
// roadrunner-server/sqs driver's configuration and message layout. It uses aws-sdk-go-v2. Jobs are
// SQS messages; delays are native (up to 15 minutes); FIFO queues keep group order; the visibility
// of a job is extended while it waits or runs, so long jobs are not delivered twice.
package sqs

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "sqs"

// Plugin is the endure plugin registering the sqs driver as a jobs.Constructor (DriverFromConfig
// and DriverFromPipeline come from driverkit.Constructor, which reads the options for build).
type Plugin struct {
	driverkit.Constructor
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `sqs:` section is read when a pipeline is
// built, so a mistake there breaks the sqs pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	return p.Setup(pluginName, globalSection, log, cfg, build)
}

// Name returns "sqs", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string { return pluginName }

// build parses the pipeline's settings, logs what the config corrected (prefetch above 10, ...)
// and connects.
func build(a driverkit.BuildArgs) (jobs.Driver, error) {
	conf, warnings, err := parseConfig(a.Options, a.Global)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		a.Log.Warn(w, zap.String("driver", pluginName), zap.String("pipeline", a.Pipeline.Name()))
	}
	d, err := NewDriver(a.Log, a.Pipeline.Name(), conf, a.Queue)
	if err != nil {
		return nil, err
	}
	return d, nil
}
