package drivertest

import "github.com/rrjobs/jobs/drivers/driverkit"

// Pipeline is the plugin's own pipeline map (driverkit.Pipeline): lookups check the top level first
// and then the `config` sub-map; String, Int and Bool accept typed values and the strings the Declare
// RPC sends; Map also accepts a JSON-encoded object string.
type Pipeline = driverkit.Pipeline

// NewPipeline returns a Pipeline named name using driver, with the given extra top-level values.
func NewPipeline(name, driver string, values map[string]any) Pipeline {
	p := Pipeline{driverkit.KeyName: name, driverkit.KeyDriver: driver}
	for k, v := range values {
		p[k] = v
	}
	return p
}
