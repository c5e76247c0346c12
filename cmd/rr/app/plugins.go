// Package app assembles the rr binary: the stock RoadRunner v5 plugins, this jobs plugin and every
// driver of this repository, in one endure container. Tests use it to boot exactly what users run.
package app

import (
	configPlugin "github.com/roadrunner-server/config/v5"
	"github.com/roadrunner-server/informer/v5"
	"github.com/roadrunner-server/logger/v5"
	"github.com/roadrunner-server/metrics/v5"
	"github.com/roadrunner-server/otel/v5"
	"github.com/roadrunner-server/resetter/v5"
	rpcPlugin "github.com/roadrunner-server/rpc/v5"
	"github.com/roadrunner-server/server/v5"
	"github.com/roadrunner-server/status/v5"

	jobs "github.com/rrjobs/jobs"
	"github.com/rrjobs/jobs/drivers/amqp"
	"github.com/rrjobs/jobs/drivers/beanstalk"
	"github.com/rrjobs/jobs/drivers/boltdb"
	"github.com/rrjobs/jobs/drivers/googlepubsub"
	"github.com/rrjobs/jobs/drivers/kafka"
	"github.com/rrjobs/jobs/drivers/memory"
	"github.com/rrjobs/jobs/drivers/nats"
	"github.com/rrjobs/jobs/drivers/postgres"
	"github.com/rrjobs/jobs/drivers/sqs"
)

// Plugins returns fresh instances of every plugin the rr binary registers, except the config plugin
// (it needs the config path, see NewContainer).
func Plugins() []any {
	plugins := append(StockPlugins(), &jobs.Plugin{})
	return append(plugins, Drivers()...)
}

// StockPlugins are the RoadRunner v5 plugins the jobs plugin works with.
func StockPlugins() []any {
	return []any{
		&logger.Plugin{},
		&server.Plugin{},
		&rpcPlugin.Plugin{},
		&metrics.Plugin{},
		&status.Plugin{},
		&informer.Plugin{},
		&resetter.Plugin{},
		&otel.Plugin{},
	}
}

// Drivers are this repository's job drivers.
func Drivers() []any {
	return []any{
		&memory.Plugin{},
		&boltdb.Plugin{},
		&postgres.Plugin{},
		&sqs.Plugin{},
		&amqp.Plugin{},
		&beanstalk.Plugin{},
		&nats.Plugin{},
		&kafka.Plugin{},
		&googlepubsub.Plugin{},
	}
}

// ConfigPlugin reads .rr.yaml at path, with `-o key=value` overrides applied on top.
func ConfigPlugin(path string, overrides []string) *configPlugin.Plugin {
	return &configPlugin.Plugin{Path: path, Flags: overrides, Version: Version, Timeout: DefaultGracePeriod}
}
