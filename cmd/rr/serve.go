package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rrjobs/jobs/cmd/rr/app"
)

func newServeCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Start the server",
		RunE: func(*cobra.Command, []string) error {
			return serve(g)
		},
	}
}

// serve runs until SIGINT/SIGTERM (graceful stop; a second signal exits at once) or a plugin error.
func serve(g *globalFlags) error {
	cont, err := app.NewContainer(g.config, g.overrides, app.Plugins())
	if err != nil {
		return err
	}
	results, err := cont.Serve()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)

	select {
	case r := <-results:
		stopErr := cont.Stop()
		return errors.Join(fmt.Errorf("plugin %s: %w", r.VertexID, r.Error), stopErr)
	case <-signals:
		stopped := make(chan error, 1)
		go func() { stopped <- cont.Stop() }()
		select {
		case err := <-stopped:
			return err
		case <-signals:
			return errors.New("second signal received, exiting without waiting for the graceful stop")
		}
	}
}
