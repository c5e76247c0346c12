package drivertest

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Configurer is a map-backed stand-in for the RoadRunner config plugin. Keys are dotted paths
// ("jobs.pipelines.p1.config") resolved through nested maps; a flat key containing dots is also
// found. UnmarshalKey JSON-encodes the value found and decodes it into out, so the target needs
// `json` tags (or field names matching case-insensitively), or can be a map[string]any.
type Configurer map[string]any

// Has reports whether the dotted key exists.
func (c Configurer) Has(name string) bool {
	_, ok := c.lookup(name)
	return ok
}

// UnmarshalKey decodes the value at name into out. A missing key leaves out untouched and returns
// nil, as the RoadRunner config plugin does.
func (c Configurer) UnmarshalKey(name string, out any) error {
	v, ok := c.lookup(name)
	if !ok {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("configurer: encode key %q: %w", name, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("configurer: decode key %q: %w", name, err)
	}
	return nil
}

func (c Configurer) lookup(name string) (any, bool) {
	if v, ok := c[name]; ok {
		return v, true
	}
	var cur any = map[string]any(c)
	for _, part := range strings.Split(name, ".") {
		switch m := cur.(type) {
		case map[string]any:
			v, ok := m[part]
			if !ok {
				return nil, false
			}
			cur = v
		case Configurer:
			v, ok := m[part]
			if !ok {
				return nil, false
			}
			cur = v
		case Pipeline:
			v, ok := m[part]
			if !ok {
				return nil, false
			}
			cur = v
		case map[string]string:
			v, ok := m[part]
			if !ok {
				return nil, false
			}
			cur = v
		default:
			return nil, false
		}
	}
	return cur, true
}
