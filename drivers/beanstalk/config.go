package beanstalk

import (
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Config keys: the global `beanstalk:` section and the pipeline `config:` section (or the flat
// jobs.Declare map).
const (
	keyAddr           = "addr"
	keyTimeout        = "timeout"
	keyTube           = "tube"
	keyTubePriority   = "tube_priority"
	keyReserveTimeout = "reserve_timeout"
	keyPriority       = "priority"
	keyPrefetch       = "prefetch"

	// globalSection is the top-level .rr.yaml section shared by every beanstalk pipeline.
	globalSection = "beanstalk"
)

// Defaults (those of the stock driver where it has the key).
const (
	// DefaultAddr is the beanstalkd address.
	DefaultAddr = "tcp://127.0.0.1:11300"
	// DefaultTimeout is the dial and I/O timeout, and the TTR of every job put by this driver.
	DefaultTimeout = 30 * time.Second
	// DefaultTube is the tube a pipeline puts to and reserves from.
	DefaultTube = "default"
	// DefaultTubePriority is the beanstalkd `pri` of every job the pipeline puts (0 = most urgent).
	DefaultTubePriority uint32 = 0
	// DefaultReserveTimeout is how long one idle reserve-with-timeout waits on the server.
	DefaultReserveTimeout = time.Second
	// DefaultPriority is the pipeline priority in the plugin's priority queue (lower runs first).
	DefaultPriority int64 = 10
	// DefaultPrefetch is how many jobs of one pipeline this process holds reserved at once.
	DefaultPrefetch = 10

	minTimeout        = time.Second
	minReserveTimeout = time.Second
	maxReserveTimeout = time.Hour
	maxPrefetch       = 100_000
	// maxTubeName is beanstalkd's limit on tube names (200 bytes, exclusive).
	maxTubeName = 199
	// tubeNameChars are the characters beanstalkd accepts in a tube name.
	tubeNameChars = `-+/;.$_()0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz`
)

// Config is the resolved configuration of one beanstalk pipeline.
type Config struct {
	// Addr is the address as configured (for messages).
	Addr string
	// Network and Address are Addr split for net.Dial ("tcp", "127.0.0.1:11300" or "unix", path).
	Network, Address string
	// Timeout bounds dials and every command; rounded up to whole seconds it is also the TTR of
	// the jobs this driver puts.
	Timeout time.Duration
	// Tube is the beanstalkd tube.
	Tube string
	// TubePriority is the beanstalkd priority of every put (and of released jobs).
	TubePriority uint32
	// ReserveTimeout is how long an idle reserve waits on the server before it is reissued.
	ReserveTimeout time.Duration
	// Priority is the pipeline priority; jobs pushed with priority 0 (and foreign jobs) get it.
	Priority int64
	// Prefetch caps the jobs reserved by this pipeline at once (waiting in the plugin's queue or
	// at a worker).
	Prefetch int
}

// ttr is the time-to-run of the jobs this driver puts: Timeout in whole seconds, at least 1.
func (c Config) ttr() time.Duration {
	return max(time.Duration(math.Ceil(c.Timeout.Seconds()))*time.Second, time.Second)
}

// parseConfig builds the Config of a pipeline from o (its settings: typed from .rr.yaml, strings
// from Declare) and global (the `beanstalk:` section). addr and timeout are read from the global
// section first, then from the pipeline (the stock driver merged both into one struct, the global
// section winning). Errors name the pipeline, the key and the value.
func parseConfig(o, global *driverkit.Options) (Config, error) {
	var conf Config
	var err error

	conf.Addr = global.String(keyAddr, o.String(keyAddr, DefaultAddr))
	conf.Network, conf.Address, err = parseAddr(conf.Addr)
	if err != nil {
		key := o.Key(keyAddr)
		if _, set := global.Raw(keyAddr); set {
			key = global.Key(keyAddr)
		}
		return Config{}, o.Errorf("%s %v", key, err)
	}

	if _, set := global.Raw(keyTimeout); set {
		conf.Timeout, err = global.DurationMin(keyTimeout, DefaultTimeout, minTimeout)
	} else {
		conf.Timeout, err = o.DurationMin(keyTimeout, DefaultTimeout, minTimeout)
	}
	if err != nil {
		return Config{}, err
	}

	conf.Tube = o.String(keyTube, DefaultTube)
	if err := checkTubeName(conf.Tube); err != nil {
		return Config{}, o.Errorf("%s %v", keyTube, err)
	}
	tp, err := o.Int(keyTubePriority, int64(DefaultTubePriority), 0, math.MaxUint32)
	if err != nil {
		return Config{}, err
	}
	conf.TubePriority = uint32(tp) //nolint:gosec // range checked
	if conf.ReserveTimeout, err = o.DurationMin(keyReserveTimeout, DefaultReserveTimeout, minReserveTimeout); err != nil {
		return Config{}, err
	}
	if conf.ReserveTimeout > maxReserveTimeout {
		return Config{}, o.Errorf("%s must be at most %s, got %s", keyReserveTimeout, maxReserveTimeout, conf.ReserveTimeout)
	}
	// 0 means the default for priority and prefetch, as with the stock drivers.
	if conf.Priority, err = o.IntOrDefault(keyPriority, DefaultPriority, math.MaxInt64); err != nil {
		return Config{}, err
	}
	prefetch, err := o.IntOrDefault(keyPrefetch, DefaultPrefetch, maxPrefetch)
	if err != nil {
		return Config{}, err
	}
	conf.Prefetch = int(prefetch)
	return conf, nil
}

// parseAddr splits "tcp://host:port", "unix:///path/to/socket" or a bare "host:port" (tcp). The
// error starts with "must be", to follow the key's name.
func parseAddr(addr string) (network, address string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("must be tcp://host:port or unix:///path/to/beanstalkd.sock (%s), got %q", why, addr)
	}
	network, address = "tcp", strings.TrimSpace(addr)
	if i := strings.Index(address, "://"); i >= 0 {
		network, address = strings.ToLower(address[:i]), address[i+3:]
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		// An empty host means the local system, as for net.Dial.
		if _, port, err := net.SplitHostPort(address); err != nil || port == "" {
			return "", "", bad("no host:port")
		}
	case "unix":
		if address == "" {
			return "", "", bad("no socket path")
		}
	default:
		return "", "", bad("unknown network " + network)
	}
	return network, address, nil
}

// checkTubeName applies beanstalkd's rules (1..199 bytes of letters, digits and -+/;.$_(), not
// starting with a hyphen). The error starts with "must", to follow the key's name.
func checkTubeName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("must not be empty")
	case len(name) > maxTubeName:
		return fmt.Errorf("must be at most %d bytes long, got %d bytes", maxTubeName, len(name))
	case name[0] == '-':
		return fmt.Errorf("must not start with a hyphen, got %q", name)
	}
	for _, r := range name {
		if !strings.ContainsRune(tubeNameChars, r) {
			return fmt.Errorf("must contain only letters, digits and -+/;.$_(), got %q", name)
		}
	}
	return nil
}
