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
	"github.com/roadrunner-server/errors"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "google_pub_sub"

// Plugin is the endure plugin registering the google_pub_sub driver as a jobs.Constructor.
type Plugin struct {
	deps driverkit.Deps
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The global `google_pub_sub:` section is read when a
// pipeline is built, so a mistake there breaks the google_pub_sub pipelines only, not the server.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	const op = errors.Op("google_pub_sub_plugin_init")
	if err := p.deps.Init(pluginName, log, cfg); err != nil {
		return errors.E(op, err)
	}
	return nil
}

// Name returns "google_pub_sub", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string {
	return pluginName
}

// DriverFromConfig builds the driver of a static pipeline. configKey is
// "jobs.pipelines.<name>.config"; a key missing there is looked up in the pipeline itself. It
// creates the topic and the subscription when missing, so an unreachable Pub/Sub or missing
// permissions fail here, naming the pipeline.
func (p *Plugin) DriverFromConfig(configKey string, queue jobs.Queue, pipeline jobs.Pipeline) (jobs.Driver, error) {
	const op = errors.Op("google_pub_sub_driver_from_config")
	if pipeline == nil {
		return nil, errors.E(op, errors.Str("google_pub_sub: nil pipeline"))
	}
	return p.build(op, configKey, pipeline, queue)
}

// DriverFromPipeline builds the driver of a pipeline declared at runtime (jobs.Declare), where
// every option comes from the pipeline map, usually as a string.
func (p *Plugin) DriverFromPipeline(pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	const op = errors.Op("google_pub_sub_driver_from_pipeline")
	if pipe == nil {
		return nil, errors.E(op, errors.Str("google_pub_sub: nil pipeline"))
	}
	return p.build(op, "", pipe, queue)
}

// build resolves the pipeline's settings (its config section at configKey, if any, then the
// pipeline map, then the `google_pub_sub:` section; absent = defaults) and connects.
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
