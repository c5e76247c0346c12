// Command rr-stock is the benchmark server with the stock RoadRunner jobs plugin (jobs/v5 v5.1.9),
// memory driver (memory/v5 v5.2.9), boltdb driver (boltdb/v5 v5.1.9) amqp driver (amqp/v5 v5.2.3)
// and nats driver (nats/v5 v5.1.9).
package main

import (
	stockamqp "github.com/roadrunner-server/amqp/v5"
	stockboltdb "github.com/roadrunner-server/boltdb/v5"
	stockjobs "github.com/roadrunner-server/jobs/v5"
	stockmemory "github.com/roadrunner-server/memory/v5"
	stocknats "github.com/roadrunner-server/nats/v5"

	"github.com/rrjobs/jobs/bench/internal/serve"
)

func main() {
	serve.Main(&stockjobs.Plugin{}, &stockmemory.Plugin{}, &stockboltdb.Plugin{}, &stockamqp.Plugin{}, &stocknats.Plugin{})
}
