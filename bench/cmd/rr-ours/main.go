// Command rr-ours is the benchmark server with this repository's jobs plugin and its memory,
// boltdb, amqp and nats drivers.
package main

import (
	jobs "github.com/rrjobs/jobs"
	"github.com/rrjobs/jobs/drivers/amqp"
	"github.com/rrjobs/jobs/drivers/boltdb"
	"github.com/rrjobs/jobs/drivers/memory"
	"github.com/rrjobs/jobs/drivers/nats"

	"github.com/rrjobs/jobs/bench/internal/serve"
)

func main() {
	serve.Main(&jobs.Plugin{}, &memory.Plugin{}, &boltdb.Plugin{}, &amqp.Plugin{}, &nats.Plugin{})
}
