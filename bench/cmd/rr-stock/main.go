// Command rr-stock is the benchmark server with the stock RoadRunner jobs plugin (jobs/v5 v5.1.9),
// memory driver (memory/v5 v5.2.9) and boltdb driver (boltdb/v5 v5.1.9).
package main

import (
	stockboltdb "github.com/roadrunner-server/boltdb/v5"
	stockjobs "github.com/roadrunner-server/jobs/v5"
	stockmemory "github.com/roadrunner-server/memory/v5"

	"github.com/rrjobs/jobs/bench/internal/serve"
)

func main() {
	serve.Main(&stockjobs.Plugin{}, &stockmemory.Plugin{}, &stockboltdb.Plugin{})
}
