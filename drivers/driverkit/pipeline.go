package driverkit

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
)

// Keys every pipeline map has.
const (
	KeyName     = "name"
	KeyDriver   = "driver"
	KeyPriority = "priority"
	KeyConfig   = "config"
	KeyQueue    = "queue"

	// DefaultPriority is the pipeline priority when none is set (lower runs first).
	DefaultPriority int64 = 10
)

var _ jobs.Pipeline = Pipeline(nil)

// Pipeline is one pipeline's settings: a map from .rr.yaml (typed values, driver options under
// `config:`) or from jobs.Declare (a flat map of strings). Lookups check the top level first and then
// the `config` sub-map, so both layouts work. Accessors never panic on odd types: they fall back to
// the default, and the *Strict variants report what was wrong.
type Pipeline map[string]any

// With sets a top-level key.
func (p Pipeline) With(name string, value any) { p[name] = value }

// Name is the pipeline name. Very old PHP clients sent it as `queue`, hence the fallback.
func (p Pipeline) Name() string {
	if n := p.String(KeyName, ""); n != "" {
		return n
	}
	return p.String(KeyQueue, "")
}

// Driver is the name of the driver (Constructor.Name) that runs this pipeline.
func (p Pipeline) Driver() string { return p.String(KeyDriver, "") }

// Has reports whether the key is set at the top level or under `config`.
func (p Pipeline) Has(name string) bool {
	_, ok := p.Lookup(name)
	return ok
}

// Get returns the raw value of a key (top level first, then `config`), or nil.
func (p Pipeline) Get(key string) any {
	v, _ := p.Lookup(key)
	return v
}

// String returns the key as a string, or d when it is missing or empty.
func (p Pipeline) String(name string, d string) string {
	v, ok := p.Lookup(name)
	if !ok || v == nil {
		return d
	}
	var s string
	switch t := v.(type) {
	case string:
		s = t
	case []byte:
		s = string(t)
	default:
		s = fmt.Sprint(t)
	}
	if s == "" {
		return d
	}
	return s
}

// Int returns the key as an int, or d when it is missing or not a number.
func (p Pipeline) Int(name string, d int) int {
	v, ok := p.Lookup(name)
	if !ok {
		return d
	}
	n, err := ToInt64(v)
	if err != nil {
		return d
	}
	return int(n)
}

// Bool returns the key as a bool ("true", "1", true, 1 ...), or d when it is missing or not a bool.
func (p Pipeline) Bool(name string, d bool) bool {
	v, ok := p.Lookup(name)
	if !ok {
		return d
	}
	switch t := v.(type) {
	case bool:
		return t
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(t))
		if err != nil {
			return d
		}
		return b
	default:
		n, err := ToInt64(v)
		if err != nil {
			return d
		}
		return n != 0
	}
}

// Map copies a map-valued key into out. Declare sends maps as JSON strings; .rr.yaml as maps.
func (p Pipeline) Map(name string, out map[string]string) error {
	v, ok := p.Lookup(name)
	if !ok || v == nil {
		return nil
	}
	switch t := v.(type) {
	case string:
		if strings.TrimSpace(t) == "" || t == "[]" {
			return nil
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(t), &m); err != nil {
			return fmt.Errorf("pipeline %q key %q: not a JSON object: %w", p.Name(), name, err)
		}
		copyStringMap(m, out)
	case map[string]any:
		copyStringMap(t, out)
	case map[string]string:
		for k, s := range t {
			out[k] = s
		}
	default:
		return fmt.Errorf("pipeline %q key %q: expected a map, got %T", p.Name(), name, v)
	}
	return nil
}

// Priority is the pipeline priority (lower runs first): the top-level value the plugin stamps when
// it creates the pipeline, else `config.priority`, else 10. Jobs pushed with priority 0 inherit it.
func (p Pipeline) Priority() int64 {
	v, ok := p.Lookup(KeyPriority)
	if !ok {
		return DefaultPriority
	}
	n, err := ToInt64(v)
	if err != nil {
		return DefaultPriority
	}
	return n
}

// Lookup returns a key from the top level, else from the `config` sub-map.
func (p Pipeline) Lookup(name string) (any, bool) {
	if v, ok := p[name]; ok {
		return v, true
	}
	cfg, ok := p[KeyConfig]
	if !ok {
		return nil, false
	}
	switch c := cfg.(type) {
	case map[string]any:
		v, ok := c[name]
		return v, ok
	case map[string]string:
		v, ok := c[name]
		return v, ok
	case Pipeline:
		v, ok := c[name]
		return v, ok
	}
	return nil, false
}

// ToInt64 converts the numbers and numeric strings config and Declare produce. Fractions are
// truncated; values outside the int64 range are an error.
func ToInt64(v any) (int64, error) {
	switch t := v.(type) {
	case int:
		return int64(t), nil
	case int8:
		return int64(t), nil
	case int16:
		return int64(t), nil
	case int32:
		return int64(t), nil
	case int64:
		return t, nil
	case uint:
		return uint64ToInt64(uint64(t))
	case uint8:
		return int64(t), nil
	case uint16:
		return int64(t), nil
	case uint32:
		return int64(t), nil
	case uint64:
		return uint64ToInt64(t)
	case float32:
		return floatToInt64(float64(t))
	case float64:
		return floatToInt64(t)
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return n, nil
		}
		f, err := t.Float64()
		if err != nil {
			return 0, fmt.Errorf("not a number: %q", string(t))
		}
		return floatToInt64(f)
	case string:
		return strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	}
	return 0, fmt.Errorf("not a number: %T", v)
}

func uint64ToInt64(n uint64) (int64, error) {
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("%d is out of range", n)
	}
	return int64(n), nil
}

// floatToInt64 truncates f; NaN and values beyond the int64 range are an error.
func floatToInt64(f float64) (int64, error) {
	if math.IsNaN(f) || f >= math.MaxInt64 || f < math.MinInt64 {
		return 0, fmt.Errorf("%v is out of range", f)
	}
	return int64(f), nil
}

func copyStringMap(in map[string]any, out map[string]string) {
	for k, v := range in {
		switch t := v.(type) {
		case string:
			out[k] = t
		case nil:
			out[k] = ""
		case map[string]any, []any:
			b, _ := json.Marshal(t)
			out[k] = string(b)
		case float64:
			// Plain decimal: YAML and JSON numbers arrive as float64, and fmt would write
			// 1209600 as "1.2096e+06", which brokers refuse as an attribute value.
			out[k] = strconv.FormatFloat(t, 'f', -1, 64)
		case float32:
			out[k] = strconv.FormatFloat(float64(t), 'f', -1, 32)
		default:
			out[k] = fmt.Sprint(t)
		}
	}
}
