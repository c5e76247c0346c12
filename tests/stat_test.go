package tests

import (
	"fmt"
	"testing"
	"time"

	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"

	"github.com/rrjobs/jobs/tests/helpers"
)

type stat = *jobsProto.Stat

// waitStat polls jobs.Stat until the pipeline's state satisfies ok, and returns it.
func waitStat(t *testing.T, c *helpers.Client, pipeline string, ok func(stat) bool) stat {
	t.Helper()
	var last stat
	helpers.Eventually(t, 15*time.Second, func() error {
		all, err := c.Stat()
		if err != nil {
			return err
		}
		last = all[pipeline]
		if last == nil {
			return fmt.Errorf("pipeline %s not in Stat", pipeline)
		}
		if !ok(last) {
			return fmt.Errorf("state %v", last)
		}
		return nil
	}, "stat of %s", pipeline)
	return last
}
