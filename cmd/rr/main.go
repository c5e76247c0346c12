// Command rr is a RoadRunner server with the rrjobs jobs plugin and drivers.
//
//	rr serve -c .rr.yaml [-w workdir] [-o key=value ...]
//	rr jobs list|stat|pause|resume|destroy [pipelines...] -c .rr.yaml
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// globalFlags are shared by every command, as in the stock rr binary.
type globalFlags struct {
	config    string
	workDir   string
	overrides []string
}

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "rr",
		Short:         "RoadRunner with the rrjobs jobs plugin",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if g.workDir != "" {
				if err := os.Chdir(g.workDir); err != nil {
					return fmt.Errorf("-w %s: %w", g.workDir, err)
				}
			}
			return nil
		},
	}
	root.PersistentFlags().StringVarP(&g.config, "config", "c", ".rr.yaml", "config file")
	root.PersistentFlags().StringVarP(&g.workDir, "WorkDir", "w", "", "working directory")
	root.PersistentFlags().StringArrayVarP(&g.overrides, "override", "o", nil, "override a config value: key=value")
	root.AddCommand(newServeCommand(g), newJobsCommand(g))
	return root
}
