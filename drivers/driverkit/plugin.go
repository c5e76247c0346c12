package driverkit

import (
	"fmt"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"go.uber.org/zap"
)

// Logger is the part of RoadRunner's logger plugin a driver uses.
type Logger interface {
	NamedLogger(name string) *zap.Logger
}

// Deps is what a driver's endure plugin keeps from Init: its named logger and the config plugin,
// and the reads every driver does with them. The zero value is usable (a no-op logger, no config),
// as for a plugin built without Init.
type Deps struct {
	log *zap.Logger
	cfg Configurer
}

// Init keeps the logger and config plugins (both required) for the driver named driver (its
// Constructor.Name, also the logger's name).
func (d *Deps) Init(driver string, log Logger, cfg Configurer) error {
	if log == nil || cfg == nil {
		return fmt.Errorf("%s: logger and configurer are required", driver)
	}
	d.log = log.NamedLogger(driver)
	d.cfg = cfg
	return nil
}

// Log returns the driver's logger; a no-op one before Init.
func (d *Deps) Log() *zap.Logger {
	if d.log == nil {
		return zap.NewNop()
	}
	return d.log
}

// Options returns the settings of driver's pipeline pipe: the config section at configKey
// ("jobs.pipelines.<name>.config" for a static pipeline; "" for a declared one, whose options are
// all in pipe), then pipe itself. A read error names the driver and the pipeline.
func (d *Deps) Options(driver string, pipe jobs.Pipeline, configKey string) (*Options, error) {
	o := NewOptions(driver, pipe, nil)
	section, err := ReadSection(d.cfg, configKey)
	if err != nil {
		return nil, o.Wrap(err)
	}
	o.section = section
	return o, nil
}

// Global returns the Options of the driver-wide top-level section name (e.g. `boltdb:`), read for
// o's pipeline: an absent section reads as empty, and errors name the pipeline and name.key.
func (d *Deps) Global(o *Options, name string) (*Options, error) {
	section, err := ReadSection(d.cfg, name)
	if err != nil {
		return nil, o.Wrap(err)
	}
	return o.Global(name, section), nil
}
