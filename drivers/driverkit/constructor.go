package driverkit

import (
	"fmt"
	"reflect"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/roadrunner-server/errors"
	"go.uber.org/zap"
)

// BuildArgs is what a driver needs to build one pipeline's driver.
type BuildArgs struct {
	Pipeline jobs.Pipeline
	Queue    jobs.Queue
	// Options are the pipeline's settings: its `config:` section, then the pipeline map.
	Options *Options
	// Global is the driver-wide top-level section (empty when the driver has none or it is absent).
	Global *Options
	// Declared is true for a pipeline created at runtime by jobs.Declare (options are strings).
	Declared bool
	Log      *zap.Logger
}

// BuildFunc builds a pipeline's driver from its settings.
type BuildFunc func(BuildArgs) (jobs.Driver, error)

// Constructor is the jobs.Constructor half of a driver's endure plugin: DriverFromConfig and
// DriverFromPipeline read the pipeline's options and the driver's global section, then call the
// driver's BuildFunc. A driver's Plugin embeds it, calls Setup from its Init and defines Name:
//
//	type Plugin struct{ driverkit.Constructor }
//
//	func (p *Plugin) Init(log driverkit.Logger, cfg driverkit.Configurer) error {
//		return p.Setup(pluginName, globalSection, log, cfg, build)
//	}
//
//	func (p *Plugin) Name() string { return pluginName }
type Constructor struct {
	deps   Deps
	driver string
	global string
	build  BuildFunc
}

// Setup keeps the logger and config plugins of the driver named driver, the name of its top-level
// section ("" for none) and its build function. Errors are wrapped with "<driver>_plugin_init".
func (c *Constructor) Setup(driver, globalSection string, log Logger, cfg Configurer, build BuildFunc) error {
	op := errors.Op(driver + "_plugin_init")
	if build == nil {
		return errors.E(op, fmt.Errorf("%s: no build function", driver))
	}
	if err := c.deps.Init(driver, log, cfg); err != nil {
		return errors.E(op, err)
	}
	c.driver, c.global, c.build = driver, globalSection, build
	return nil
}

// Log returns the driver's logger (a no-op one before Setup).
func (c *Constructor) Log() *zap.Logger { return c.deps.Log() }

// DriverFromConfig builds the driver of a pipeline from .rr.yaml. configKey is
// "jobs.pipelines.<name>.config"; a key missing there is looked up in the pipeline itself.
func (c *Constructor) DriverFromConfig(configKey string, queue jobs.Queue, pipeline jobs.Pipeline) (jobs.Driver, error) {
	return c.construct(errors.Op(c.driver+"_driver_from_config"), configKey, pipeline, queue, false)
}

// DriverFromPipeline builds the driver of a pipeline declared at runtime (jobs.Declare), where
// every option is in the pipeline map, as strings.
func (c *Constructor) DriverFromPipeline(pipeline jobs.Pipeline, queue jobs.Queue) (jobs.Driver, error) {
	return c.construct(errors.Op(c.driver+"_driver_from_pipeline"), "", pipeline, queue, true)
}

func (c *Constructor) construct(op errors.Op, configKey string, pipe jobs.Pipeline, queue jobs.Queue, declared bool) (jobs.Driver, error) {
	if c.build == nil {
		return nil, errors.E(op, errors.Str("driver plugin used before Init"))
	}
	if pipe == nil {
		return nil, errors.E(op, fmt.Errorf("%s: nil pipeline", c.driver))
	}
	o, err := c.deps.Options(c.driver, pipe, configKey)
	if err != nil {
		return nil, errors.E(op, err)
	}
	global := o.Global(c.global, nil)
	if c.global != "" {
		if global, err = c.deps.Global(o, c.global); err != nil {
			return nil, errors.E(op, err)
		}
	}
	d, err := c.build(BuildArgs{Pipeline: pipe, Queue: queue, Options: o, Global: global, Declared: declared, Log: c.deps.Log()})
	if err != nil {
		return nil, errors.E(op, err)
	}
	if d == nil || (reflect.ValueOf(d).Kind() == reflect.Pointer && reflect.ValueOf(d).IsNil()) {
		// A typed nil in the interface would look like a driver to the plugin.
		return nil, errors.E(op, fmt.Errorf("%s pipeline %q: no driver was built", c.driver, pipe.Name()))
	}
	return d, nil
}
