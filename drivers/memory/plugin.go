// Package memory is an in-process jobs driver ("driver: memory"), compatible with the RoadRunner
// jobs plugin contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs). Jobs live only in
// memory: they are lost when the pipeline is stopped or the process exits.
package memory

import (
	"fmt"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const pluginName = "memory"

// Logger is the part of the RoadRunner logger plugin the driver uses.
type Logger interface {
	NamedLogger(name string) *zap.Logger
}

// Configurer is the part of the RoadRunner config plugin the driver uses.
type Configurer interface {
	// UnmarshalKey decodes the config section name into out.
	UnmarshalKey(name string, out any) error
	// Has reports whether the config section name exists.
	Has(name string) bool
}

// Plugin is the endure plugin registering the memory driver as a jobs.Constructor.
type Plugin struct {
	log *zap.Logger
	cfg Configurer
}

var _ jobs.Constructor = (*Plugin)(nil)

// Init stores the logger and the configurer. The memory driver has no global config section.
func (p *Plugin) Init(log Logger, cfg Configurer) error {
	const op = errors.Op("memory_plugin_init")
	if log == nil || cfg == nil {
		return errors.E(op, errors.Str("memory: logger and configurer are required"))
	}
	p.log = log.NamedLogger(pluginName)
	p.cfg = cfg
	return nil
}

// Name returns "memory", the value of `driver:` in a pipeline.
func (p *Plugin) Name() string {
	return pluginName
}

// DriverFromConfig builds the driver of a static pipeline. configKey is
// "jobs.pipelines.<name>.config"; when that section is absent the defaults apply. A key missing
// there is looked up in the pipeline itself (older layouts put options at the top level).
func (p *Plugin) DriverFromConfig(configKey string, queue jobs.Queue, pipeline jobs.Pipeline) (jobs.Driver, error) {
	const op = errors.Op("memory_driver_from_config")
	if pipeline == nil {
		return nil, errors.E(op, errors.Str("memory: nil pipeline"))
	}
	name := pipeline.Name()

	section, err := driverkit.ReadSection(p.cfg, configKey)
	if err != nil {
		return nil, errors.E(op, fmt.Errorf("memory pipeline %q: %w", name, err))
	}
	conf, err := parseConfig(driverkit.NewOptions(pluginName, pipeline, section))
	if err != nil {
		return nil, errors.E(op, err)
	}
	return NewDriver(p.logger(), name, conf, queue)
}

// DriverFromPipeline builds the driver of a pipeline declared at runtime (jobs.Declare), where
// every option comes from the pipeline map, usually as a string.
func (p *Plugin) DriverFromPipeline(pipe jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	const op = errors.Op("memory_driver_from_pipeline")
	if pipe == nil {
		return nil, errors.E(op, errors.Str("memory: nil pipeline"))
	}
	name := pipe.Name()
	conf, err := parseConfig(driverkit.NewOptions(pluginName, pipe, nil))
	if err != nil {
		return nil, errors.E(op, err)
	}
	return NewDriver(p.logger(), name, conf, queue)
}

func (p *Plugin) logger() *zap.Logger {
	if p.log == nil {
		return zap.NewNop()
	}
	return p.log
}
