// Package googlepubsub is a Google Cloud Pub/Sub jobs driver ("driver: google_pub_sub"),
// compatible with the RoadRunner jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs)
// and with the stock google_pub_sub driver's config keys and message layout. Jobs are messages of a
// topic, consumed through a subscription named after the pipeline. The driver pulls as many
// messages as `prefetch` allows, keeps their ack deadlines extended while the jobs wait or run,
// honours delays (which Pub/Sub lacks) by holding a message until it is due, and really stops
// consuming on Pause.
package googlepubsub

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "google_pub_sub"

// Plugin is the endure plugin registering the google_pub_sub driver as a jobs.Constructor (DriverFromConfig
// and DriverFromPipeline come from driverkit.Constructor, which reads the options for build).
type Plugin struct {
	driverkit.Constructor
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `google_pub_sub:` section is read when a
// pipeline is built, so a mistake there breaks the google_pub_sub pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	return p.Setup(pluginName, globalSection, log, cfg, build)
}

// Name returns "google_pub_sub", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string { return pluginName }

// build parses the pipeline's settings and creates the topic and subscription when missing.
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
