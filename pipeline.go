package jobs

import (
	"fmt"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Pipeline is one pipeline's settings: a map from .rr.yaml (typed values, driver options under
// `config:`) or from jobs.Declare (a flat map of strings). It is driverkit.Pipeline, shared with the
// drivers' test doubles so there is one implementation of the lookup rules.
type Pipeline = driverkit.Pipeline

// Keys the plugin reads or writes in a pipeline map.
const (
	keyName              = driverkit.KeyName
	keyDriver            = driverkit.KeyDriver
	keyPriority          = driverkit.KeyPriority
	keyConfig            = driverkit.KeyConfig
	keyPool              = "pool"
	keyQueue             = driverkit.KeyQueue
	keyCreatedWithConfig = "created_with_config"
	keyCreatedWithDecl   = "created_with_declare"

	defaultPriority = driverkit.DefaultPriority
)

// toInt64 converts config and Declare numbers.
var toInt64 = driverkit.ToInt64

// priorityFromConfig reads `priority` from the top level or `config` (default 10), failing on a value
// that is not a number so a typo in .rr.yaml is reported rather than silently replaced.
func priorityFromConfig(p Pipeline) (int64, error) {
	v, ok := p.Lookup(keyPriority)
	if !ok || v == nil {
		return defaultPriority, nil
	}
	n, err := toInt64(v)
	if err != nil {
		return 0, fmt.Errorf("must be an integer, got %v", v)
	}
	return n, nil
}
