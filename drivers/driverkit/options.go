package driverkit

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
)

// Configurer is the part of RoadRunner's config plugin a driver uses.
type Configurer interface {
	UnmarshalKey(name string, out any) error
	Has(name string) bool
}

// ReadSection returns the config section at key (e.g. "jobs.pipelines.p1.config") as a map, or nil
// when it is absent.
func ReadSection(cfg Configurer, key string) (map[string]any, error) {
	if cfg == nil || key == "" || !cfg.Has(key) {
		return nil, nil
	}
	var raw map[string]any
	if err := cfg.UnmarshalKey(key, &raw); err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return raw, nil
}

// Options reads one pipeline's driver settings. Values come from the pipeline's config section
// (.rr.yaml, typed) and, for keys missing there, from the pipeline map itself (jobs.Declare sends
// every value as a string; old layouts put options at the top level). Every error names the driver,
// the pipeline, the key and the bad value, so users can fix their config.
type Options struct {
	driver   string
	pipeline string
	section  map[string]any
	pipe     jobs.Pipeline
	// prefix names the keys of a global section in errors ("postgres." for postgres.max_conns).
	prefix string
}

// NewOptions reads settings for driver's pipeline from section (may be nil) then pipe (may be nil).
func NewOptions(driver string, pipe jobs.Pipeline, section map[string]any) *Options {
	o := &Options{driver: driver, section: section, pipe: pipe}
	if pipe != nil {
		o.pipeline = pipe.Name()
	}
	return o
}

// Global returns Options reading a driver-wide top-level section (e.g. `boltdb:` or `postgres:` of
// .rr.yaml; section may be nil) for the same pipeline. Its errors name the pipeline and the key as
// name.key, so users know which section to fix.
func (o *Options) Global(name string, section map[string]any) *Options {
	return &Options{driver: o.driver, pipeline: o.pipeline, section: section, prefix: name + "."}
}

// Raw returns a key's value and whether it is set to something other than blank.
func (o *Options) Raw(key string) (any, bool) {
	if v, ok := o.section[key]; ok && !isBlank(v) {
		return v, true
	}
	if o.pipe == nil || !o.pipe.Has(key) {
		return nil, false
	}
	v := o.pipe.Get(key)
	if v == nil {
		// Some jobs.Pipeline implementations find a key under `config` in Has and String but return
		// only top-level values from Get.
		v = o.pipe.String(key, "")
	}
	return v, !isBlank(v)
}

// Errorf builds an error about this pipeline: `<driver> pipeline "<name>": <message>`.
func (o *Options) Errorf(format string, args ...any) error {
	return fmt.Errorf("%s pipeline %q: %s", o.driver, o.pipeline, fmt.Sprintf(format, args...))
}

// Wrap prefixes err with `<driver> pipeline "<name>": `, keeping it for errors.Is.
func (o *Options) Wrap(err error) error {
	return fmt.Errorf("%s pipeline %q: %w", o.driver, o.pipeline, err)
}

// Key is how errors name key: "max_conns", or "postgres.max_conns" for a global section.
func (o *Options) Key(key string) string { return o.prefix + key }

// String returns a key as a string, or def when unset.
func (o *Options) String(key, def string) string {
	v, ok := o.Raw(key)
	if !ok {
		return def
	}
	if s, isStr := v.(string); isStr {
		return strings.TrimSpace(s)
	}
	return fmt.Sprint(v)
}

// Int returns a key as an integer within [lo, hi], or def when unset.
func (o *Options) Int(key string, def, lo, hi int64) (int64, error) {
	v, ok := o.Raw(key)
	if !ok {
		return def, nil
	}
	n, err := ToInt64(v)
	if err != nil || !isWhole(v) {
		return 0, o.Errorf("%s must be an integer, got %q", o.Key(key), fmt.Sprint(v))
	}
	switch {
	case n < lo:
		return 0, o.Errorf("%s must be >= %d, got %d", o.Key(key), lo, n)
	case n > hi:
		return 0, o.Errorf("%s must be <= %d, got %d", o.Key(key), hi, n)
	}
	return n, nil
}

// IntOrDefault returns a key as an integer within [0, hi] where 0, like unset, means def (stock
// drivers read `priority: 0` and `prefetch: 0` so).
func (o *Options) IntOrDefault(key string, def, hi int64) (int64, error) {
	n, err := o.Int(key, 0, 0, hi)
	if err != nil || n == 0 {
		return def, err
	}
	return n, nil
}

// Bool returns a key as a bool ("true", "false", "1", "0" or a YAML bool), or def when unset.
func (o *Options) Bool(key string, def bool) (bool, error) {
	v, ok := o.Raw(key)
	if !ok {
		return def, nil
	}
	switch t := v.(type) {
	case bool:
		return t, nil
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(t)); err == nil {
			return b, nil
		}
	}
	return false, o.Errorf("%s must be true or false, got %q", o.Key(key), fmt.Sprint(v))
}

// Duration returns a key as a positive duration ("5s", "1m"; a bare number is seconds), or def.
func (o *Options) Duration(key string, def time.Duration) (time.Duration, error) {
	d, set, err := o.duration(key)
	if err != nil || !set {
		return def, err
	}
	if d <= 0 {
		return 0, o.Errorf("%s must be a positive duration, got %s", o.Key(key), d)
	}
	return d, nil
}

// DurationMin is Duration for a key that must be at least lo.
func (o *Options) DurationMin(key string, def, lo time.Duration) (time.Duration, error) {
	d, set, err := o.duration(key)
	if err != nil || !set {
		return def, err
	}
	if d < lo {
		return 0, o.Errorf("%s must be at least %s, got %s", o.Key(key), lo, d)
	}
	return d, nil
}

// duration parses a duration key: Go duration strings, and numbers or numeric strings as seconds.
func (o *Options) duration(key string) (time.Duration, bool, error) {
	v, ok := o.Raw(key)
	if !ok {
		return 0, false, nil
	}
	bad := func() error {
		return o.Errorf("%s must be a duration like 5s or 1m, got %q", o.Key(key), fmt.Sprint(v))
	}
	var secs float64
	switch t := v.(type) {
	case time.Duration:
		return t, true, nil
	case string:
		s := strings.TrimSpace(t)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			d, err := time.ParseDuration(s)
			if err != nil {
				return 0, true, bad()
			}
			return d, true, nil
		}
		secs = f
	case float32:
		secs = float64(t)
	case float64:
		secs = t
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return 0, true, bad()
		}
		secs = f
	default:
		n, err := ToInt64(v)
		if err != nil {
			return 0, true, bad()
		}
		secs = float64(n)
	}
	if math.IsNaN(secs) || math.Abs(secs) > maxDurationSeconds {
		return 0, true, bad()
	}
	return time.Duration(secs * float64(time.Second)), true, nil
}

// maxDurationSeconds keeps seconds-to-duration conversions from overflowing.
const maxDurationSeconds = float64(math.MaxInt64 / int64(time.Second))

// FileMode returns a key as a permission mode within 0..0777, or def when unset. See ParseFileMode
// for the accepted forms.
func (o *Options) FileMode(key string, def os.FileMode) (os.FileMode, error) {
	v, ok := o.Raw(key)
	if !ok {
		return def, nil
	}
	m, err := ParseFileMode(v)
	if err != nil {
		return 0, o.Errorf("%s %v", o.Key(key), err)
	}
	return m, nil
}

// ParseFileMode reads a permission mode. Numbers are taken as they are (YAML reads 0755 as the
// octal number 493; PHP's Declare sends the decimal string "493"). Strings with a leading zero or a
// 0o prefix ("0755", "0o755") are octal, other strings decimal. The mode must be within 0..0777.
// Errors start with "must be", to follow the key's name.
func ParseFileMode(v any) (os.FileMode, error) {
	bad := fmt.Errorf("must be a file mode (octal 0755 or decimal 493), got %q", fmt.Sprint(v))
	var n int64
	if s, ok := v.(string); ok {
		s = strings.TrimSpace(s)
		base := 10
		switch {
		case strings.HasPrefix(s, "0o"), strings.HasPrefix(s, "0O"):
			s, base = s[2:], 8
		case len(s) > 1 && s[0] == '0':
			s, base = s[1:], 8
		}
		parsed, err := strconv.ParseInt(s, base, 64)
		if err != nil {
			return 0, bad
		}
		n = parsed
	} else {
		parsed, err := ToInt64(v)
		if err != nil || !isWhole(v) {
			return 0, bad
		}
		n = parsed
	}
	if n < 0 || n > 0o777 {
		return 0, fmt.Errorf("must be a file mode between 0 and 0777 (decimal 511), got %q (decimal %d)", fmt.Sprint(v), n)
	}
	return os.FileMode(n), nil //nolint:gosec // range checked
}

// StringMap returns a map-valued key (a YAML map, or a JSON object string from Declare).
func (o *Options) StringMap(key string) (map[string]string, error) {
	out := map[string]string{}
	if _, ok := o.Raw(key); !ok {
		return out, nil
	}
	if v, ok := o.section[key]; ok {
		if err := (Pipeline{key: v}).Map(key, out); err != nil {
			return nil, o.Errorf("%s: %v", o.Key(key), err)
		}
		return out, nil
	}
	if err := o.pipe.Map(key, out); err != nil {
		return nil, o.Errorf("%s: %v", o.Key(key), err)
	}
	return out, nil
}

func isBlank(v any) bool {
	if v == nil {
		return true
	}
	s, ok := v.(string)
	return ok && strings.TrimSpace(s) == ""
}

// isWhole rejects fractional numbers that ToInt64 would truncate.
func isWhole(v any) bool {
	switch f := v.(type) {
	case float64:
		return f == math.Trunc(f)
	case float32:
		return float64(f) == math.Trunc(float64(f))
	case json.Number:
		_, err := f.Int64()
		return err == nil
	}
	return true
}
