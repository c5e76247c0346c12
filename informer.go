package jobs

import (
	"context"
	"errors"

	"github.com/roadrunner-server/pool/state/process"
)

// Workers lists the PHP workers of every pool (informer plugin, `rr workers jobs`).
func (p *Plugin) Workers() []*process.State {
	workers := p.allWorkers()
	out := make([]*process.State, 0, len(workers))
	for _, w := range workers {
		st, err := process.WorkerProcessState(w)
		if err != nil {
			// The process may have exited between listing and probing it.
			continue
		}
		out = append(out, st)
	}
	return out
}

// AddWorker adds a worker to the first pool (informer plugin). With named pools it is the pool
// named "default" when there is one, else the first by name.
func (p *Plugin) AddWorker() error {
	g, err := p.managedGroup()
	if err != nil {
		return err
	}
	return g.pool.AddWorker()
}

// RemoveWorker removes a worker from the same pool AddWorker grows.
func (p *Plugin) RemoveWorker(ctx context.Context) error {
	g, err := p.managedGroup()
	if err != nil {
		return err
	}
	return g.pool.RemoveWorker(ctx)
}

// Reset replaces every worker of every pool (resetter plugin, `rr reset jobs`). Jobs keep flowing:
// pollers wait for the new workers.
func (p *Plugin) Reset() error {
	var errs []error
	for _, g := range p.groupList() {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.ResetTimeout)
		if err := g.reset(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	return errors.Join(errs...)
}

func (p *Plugin) managedGroup() (*workerGroup, error) {
	groups := p.groupList()
	if len(groups) == 0 {
		return nil, errors.New("jobs: no worker pool is running")
	}
	for _, g := range groups {
		if g.name == defaultPoolName {
			return g, nil
		}
	}
	return groups[0], nil
}
