package jobs

import (
	"fmt"
	"runtime"
	"sort"

	"github.com/roadrunner-server/pool/pool"
)

// Defaults of the stock RoadRunner jobs plugin (v5), kept so an existing .rr.yaml behaves the same.
const (
	defaultPipelineSize uint64 = 1_000_000
	defaultTimeout             = 60 // seconds
	// Stock quirk kept on purpose: parallelism is 10 without an `options` section and 5 when the
	// section is present but leaves parallelism at 0.
	defaultParallelism        = 10
	defaultParallelismOptions = 5
	// defaultPoolName names the pool built from `jobs.pool` (or the only pool when `pools` has one).
	defaultPoolName = "default"
)

// Config is the `jobs` section of .rr.yaml.
type Config struct {
	// NumPollers is the number of goroutines that take jobs from a pool's queue and hand them to its
	// workers. 0 means the pool's num_workers + 2. With named pools it applies to each pool.
	NumPollers int `mapstructure:"num_pollers"`
	// PipelineSize caps the priority queue of a pool. Drivers block (without spinning) while it is full.
	PipelineSize uint64 `mapstructure:"pipeline_size"`
	// Timeout, in seconds, bounds every driver call made on behalf of an RPC or the lifecycle.
	Timeout int `mapstructure:"timeout"`
	// Options holds the concurrency of pipeline start, stop and destroy.
	Options *Options `mapstructure:"options"`
	// Pool is the worker pool (stock layout). Mutually exclusive with Pools.
	Pool *pool.Config `mapstructure:"pool"`
	// Pools are named worker pools (RoadRunner v6 layout, roadrunner#1679). A pipeline picks one with
	// a top-level `pool: <name>` key.
	Pools map[string]*pool.Config `mapstructure:"pools"`
	// Pipelines are the static pipelines, created at Serve.
	Pipelines map[string]Pipeline `mapstructure:"pipelines"`
	// Consume lists the pipelines that start consuming at Serve (and on Declare, by name).
	Consume []string `mapstructure:"consume"`

	// retryPolicies are the parsed retry policies of the static pipelines, by name.
	retryPolicies map[string]*retryPolicy
}

// Options is `jobs.options`.
type Options struct {
	Parallelism int `mapstructure:"parallelism"`
}

// InitDefaults fills in the stock defaults and validates the section. Errors name the offending key.
func (c *Config) InitDefaults() error {
	if c.PipelineSize == 0 {
		c.PipelineSize = defaultPipelineSize
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.Timeout < 0 {
		return fmt.Errorf("jobs.timeout must be a positive number of seconds, got %d", c.Timeout)
	}
	if c.NumPollers < 0 {
		return fmt.Errorf("jobs.num_pollers must be >= 0, got %d", c.NumPollers)
	}
	if err := c.initParallelism(); err != nil {
		return err
	}
	if err := c.initPools(); err != nil {
		return err
	}
	return c.initPipelines()
}

func (c *Config) initParallelism() error {
	switch {
	case c.Options == nil:
		c.Options = &Options{Parallelism: defaultParallelism}
	case c.Options.Parallelism == 0:
		c.Options.Parallelism = defaultParallelismOptions
	case c.Options.Parallelism < 0:
		return fmt.Errorf("jobs.options.parallelism must be > 0, got %d", c.Options.Parallelism)
	}
	return nil
}

// initPools normalises `pool` and `pools` into Pools, so the rest of the plugin sees named pools only.
func (c *Config) initPools() error {
	if c.Pool != nil && len(c.Pools) > 0 {
		return fmt.Errorf("jobs.pool and jobs.pools are mutually exclusive: use one of them")
	}
	if len(c.Pools) == 0 {
		if c.Pool == nil {
			c.Pool = &pool.Config{}
		}
		c.Pools = map[string]*pool.Config{defaultPoolName: c.Pool}
	}
	for name, pc := range c.Pools {
		if pc == nil {
			pc = &pool.Config{}
			c.Pools[name] = pc
		}
		pc.InitDefaults()
		if pc.NumWorkers > 500 {
			return fmt.Errorf("jobs.pools.%s.num_workers must be at most 500, got %d", name, pc.NumWorkers)
		}
		if pc.Supervisor != nil && pc.Supervisor.ExecTTL < 0 {
			return fmt.Errorf("jobs.pools.%s.supervisor.exec_ttl must be >= 0, got %s", name, pc.Supervisor.ExecTTL)
		}
	}
	return nil
}

func (c *Config) initPipelines() error {
	for _, name := range c.pipelineNames() {
		p := c.Pipelines[name]
		if p == nil {
			return fmt.Errorf("jobs.pipelines.%s must be a map with at least a driver key", name)
		}
		p.With(keyName, name)
		if p.Driver() == "" {
			return fmt.Errorf("jobs.pipelines.%s.driver is required", name)
		}
		prio, err := priorityFromConfig(p)
		if err != nil {
			return fmt.Errorf("jobs.pipelines.%s.config.priority: %w", name, err)
		}
		p.With(keyPriority, prio)
		p.With(keyCreatedWithConfig, "jobs.pipelines."+name+".config")
		if _, err := c.poolFor(p); err != nil {
			return fmt.Errorf("jobs.pipelines.%s.pool: %w", name, err)
		}
		if err := c.initRetry(name, p); err != nil {
			return err
		}
	}
	return nil
}

// initRetry parses a static pipeline's retry policy; its dead-letter pipeline must be configured too.
func (c *Config) initRetry(name string, p Pipeline) error {
	where := "jobs.pipelines." + name + ".config."
	policy, err := parseRetryPolicy(p, where)
	if err != nil {
		return err
	}
	if policy == nil {
		return nil
	}
	if dl := policy.deadLetter; dl != "" {
		if _, ok := c.Pipelines[dl]; !ok {
			return fmt.Errorf("%s%s: no such pipeline %q in jobs.pipelines", where, keyDeadLetter, dl)
		}
	}
	if c.retryPolicies == nil {
		c.retryPolicies = make(map[string]*retryPolicy)
	}
	c.retryPolicies[name] = policy
	return nil
}

// poolFor returns the name of the worker pool that runs a pipeline's jobs.
func (c *Config) poolFor(p Pipeline) (string, error) {
	name := p.String(keyPool, "")
	if name == "" {
		if len(c.Pools) == 1 {
			for only := range c.Pools {
				return only, nil
			}
		}
		if _, ok := c.Pools[defaultPoolName]; ok {
			return defaultPoolName, nil
		}
		return "", fmt.Errorf("several pools are configured (%v): the pipeline must name one", c.poolNames())
	}
	if _, ok := c.Pools[name]; !ok {
		return "", fmt.Errorf("no such pool %q (configured: %v)", name, c.poolNames())
	}
	return name, nil
}

func (c *Config) pollersFor(pc *pool.Config) int {
	if c.NumPollers > 0 {
		return c.NumPollers
	}
	n := int(pc.NumWorkers) //nolint:gosec // capped at 500 by InitDefaults
	if n == 0 {
		n = runtime.NumCPU()
	}
	return n + 2
}

func (c *Config) pipelineNames() []string {
	names := make([]string, 0, len(c.Pipelines))
	for n := range c.Pipelines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *Config) poolNames() []string {
	names := make([]string, 0, len(c.Pools))
	for n := range c.Pools {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *Config) consumes(pipeline string) bool {
	for _, n := range c.Consume {
		if n == pipeline {
			return true
		}
	}
	return false
}
