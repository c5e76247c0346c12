package memory

import (
	"math"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Config keys and defaults.
const (
	keyPriority = "priority"
	keyPrefetch = "prefetch"

	// DefaultPriority is the pipeline priority when none is configured (lower = served first).
	DefaultPriority int64 = 10
	// DefaultPrefetch is the number of jobs of one pipeline allowed in the shared queue or at a
	// worker at once when `prefetch` is absent or 0.
	DefaultPrefetch = 100_000
)

// Config is the resolved configuration of one memory pipeline.
type Config struct {
	// Priority is the pipeline priority, inherited by jobs pushed with priority 0.
	Priority int64
	// Prefetch caps the jobs of this pipeline that sit in the shared queue or at a worker.
	Prefetch int
}

// defaultConfig returns the defaults.
func defaultConfig() Config {
	return Config{Priority: DefaultPriority, Prefetch: DefaultPrefetch}
}

// parseConfig resolves a pipeline's settings. Values may be typed (from .rr.yaml) or strings (from
// the Declare RPC); 0 means the default, as with stock. Errors name the pipeline, key and value.
func parseConfig(o *driverkit.Options) (Config, error) {
	conf := defaultConfig()
	prio, err := o.Int(keyPriority, 0, 0, math.MaxInt64)
	if err != nil {
		return Config{}, err
	}
	if prio > 0 {
		conf.Priority = prio
	}
	prefetch, err := o.Int(keyPrefetch, 0, 0, math.MaxInt32)
	if err != nil {
		return Config{}, err
	}
	if prefetch > 0 {
		conf.Prefetch = int(prefetch)
	}
	return conf, nil
}
