// Package memory is an in-process jobs driver ("driver: memory"), compatible with the RoadRunner
// jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs). Jobs live only in
// memory: they are lost when the pipeline is stopped or the process exits.
package memory

import (
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "memory"

// Plugin is the endure plugin registering the memory driver as a jobs.Constructor (DriverFromConfig
// and DriverFromPipeline come from driverkit.Constructor, which reads the options for build).
type Plugin struct {
	driverkit.Constructor
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The memory driver has no global config section.
func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
	return p.Setup(pluginName, "", log, cfg, build)
}

// Name returns "memory", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string { return pluginName }

// build parses the pipeline's settings and creates its in-memory queue.
func build(a driverkit.BuildArgs) (jobs.Driver, error) {
	conf, err := parseConfig(a.Options)
	if err != nil {
		return nil, err
	}
	d, err := NewDriver(a.Log, a.Pipeline.Name(), conf, a.Queue)
	if err != nil {
		return nil, err
	}
	return d, nil
}
