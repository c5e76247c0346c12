package boltdb

import (
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Config keys and defaults.
const (
	keyPriority    = "priority"
	keyPrefetch    = "prefetch"
	keyFile        = "file"
	keyPermissions = "permissions"

	// globalSection is the top-level .rr.yaml section whose `permissions` applies to every boltdb
	// pipeline that does not set its own (the stock documentation puts it there).
	globalSection = "boltdb"

	// DefaultPriority is the pipeline priority when none is configured (lower = served first).
	DefaultPriority int64 = 10
	// DefaultPrefetch is the number of jobs of one pipeline allowed in the shared queue or at a
	// worker at once when `prefetch` is absent or 0 (the stock driver's default).
	DefaultPrefetch = 1000
	// DefaultFile is the database file when `file` is absent or empty.
	DefaultFile = "rr.db"
	// DefaultPermissions is the mode of a database file created by the driver.
	DefaultPermissions os.FileMode = 0o755
)

// Config is the resolved configuration of one boltdb pipeline.
type Config struct {
	// Priority is the pipeline priority, inherited by jobs pushed with priority 0.
	Priority int64
	// Prefetch caps the jobs of this pipeline that sit in the shared queue or at a worker.
	Prefetch int
	// File is the bbolt database file (relative paths are relative to the working directory).
	File string
	// Permissions is the mode of the file when the driver creates it.
	Permissions os.FileMode
}

// defaultConfig returns the defaults.
func defaultConfig() Config {
	return Config{Priority: DefaultPriority, Prefetch: DefaultPrefetch, File: DefaultFile, Permissions: DefaultPermissions}
}

// parseConfig resolves a pipeline's settings from o, and `permissions` from global (the `boltdb:`
// section) when the pipeline does not set it. Values may be typed (from .rr.yaml) or strings (from
// the Declare RPC); 0 or blank means the default. Errors name the pipeline, key and value.
func parseConfig(o, global *driverkit.Options) (Config, error) {
	conf := defaultConfig()

	var err error
	if conf.Priority, err = o.IntOrDefault(keyPriority, DefaultPriority, math.MaxInt64); err != nil {
		return Config{}, err
	}
	prefetch, err := o.IntOrDefault(keyPrefetch, DefaultPrefetch, math.MaxInt32)
	if err != nil {
		return Config{}, err
	}
	conf.Prefetch = int(prefetch)

	// Not o.String: a path is taken as written (no trimming), and must be a string.
	if v, ok := o.Raw(keyFile); ok {
		s, isStr := v.(string)
		if !isStr || strings.ContainsRune(s, 0) {
			return Config{}, o.Errorf("%s must be a file path, got %q", keyFile, fmt.Sprint(v))
		}
		conf.File = s
	}

	perms := o
	if _, ok := o.Raw(keyPermissions); !ok && global != nil {
		perms = global
	}
	mode, err := perms.FileMode(keyPermissions, 0)
	if err != nil {
		return Config{}, err
	}
	if mode != 0 {
		conf.Permissions = mode
	}
	return conf, nil
}
