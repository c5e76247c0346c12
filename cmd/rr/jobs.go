package main

import (
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"strings"
	"text/tabwriter"

	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
	goridgeRPC "github.com/roadrunner-server/goridge/v3/pkg/rpc"
	"github.com/spf13/cobra"

	"github.com/rrjobs/jobs/cmd/rr/app"
)

func newJobsCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "Manage the pipelines of a running server over RPC",
	}
	cmd.AddCommand(
		&cobra.Command{
			Use: "list", Short: "List pipelines", Args: cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return withClient(g, func(cl *rpc.Client) error { return listPipelines(cl, c.OutOrStdout()) })
			},
		},
		&cobra.Command{
			Use: "stat", Short: "Show the state of every pipeline", Args: cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return withClient(g, func(cl *rpc.Client) error { return statPipelines(cl, c.OutOrStdout()) })
			},
		},
		pipelinesCommand(g, "pause", "Pause pipelines", "jobs.Pause", "paused"),
		pipelinesCommand(g, "resume", "Resume pipelines", "jobs.Resume", "resumed"),
		pipelinesCommand(g, "destroy", "Stop and remove pipelines", "jobs.Destroy", "destroyed"),
	)
	return cmd
}

// pipelinesCommand runs an RPC that takes pipeline names (space or comma separated).
func pipelinesCommand(g *globalFlags, use, short, method, result string) *cobra.Command {
	return &cobra.Command{
		Use: use + " PIPELINE...", Short: short, Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			names := splitNames(args)
			return withClient(g, func(cl *rpc.Client) error {
				reply := &jobsProto.Pipelines{}
				if err := cl.Call(method, &jobsProto.Pipelines{Pipelines: names}, reply); err != nil {
					return fmt.Errorf("%s: %w", method, err)
				}
				done := names
				if method == "jobs.Destroy" {
					done = reply.GetPipelines()
				}
				return printTable(c.OutOrStdout(), []string{"PIPELINE", "RESULT"}, rowsOf(done, result))
			})
		},
	}
}

func listPipelines(cl *rpc.Client, out io.Writer) error {
	reply := &jobsProto.Pipelines{}
	if err := cl.Call("jobs.List", &jobsProto.Empty{}, reply); err != nil {
		return fmt.Errorf("jobs.List: %w", err)
	}
	rows := make([][]string, 0, len(reply.GetPipelines()))
	for _, p := range reply.GetPipelines() {
		rows = append(rows, []string{p})
	}
	return printTable(out, []string{"PIPELINE"}, rows)
}

func statPipelines(cl *rpc.Client, out io.Writer) error {
	reply := &jobsProto.Stats{}
	if err := cl.Call("jobs.Stat", &jobsProto.Empty{}, reply); err != nil {
		return fmt.Errorf("jobs.Stat: %w", err)
	}
	rows := make([][]string, 0, len(reply.GetStats()))
	for _, s := range reply.GetStats() {
		rows = append(rows, []string{
			s.GetPipeline(), s.GetDriver(), s.GetQueue(), fmt.Sprint(s.GetPriority()), fmt.Sprint(s.GetReady()),
			fmt.Sprint(s.GetActive()), fmt.Sprint(s.GetDelayed()), fmt.Sprint(s.GetReserved()),
		})
	}
	return printTable(out, []string{"PIPELINE", "DRIVER", "QUEUE", "PRIORITY", "READY", "ACTIVE", "DELAYED", "RESERVED"}, rows)
}

func withClient(g *globalFlags, fn func(*rpc.Client) error) error {
	network, addr, err := app.RPCAddress(g.config, g.overrides)
	if err != nil {
		return err
	}
	conn, err := net.Dial(network, addr)
	if err != nil {
		return fmt.Errorf("connect to the rr RPC at %s://%s (is the server running?): %w", network, addr, err)
	}
	cl := rpc.NewClientWithCodec(goridgeRPC.NewClientCodec(conn))
	defer cl.Close()
	return fn(cl)
}

func splitNames(args []string) []string {
	var out []string
	for _, a := range args {
		for _, n := range strings.Split(a, ",") {
			if n = strings.TrimSpace(n); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}

func rowsOf(names []string, result string) [][]string {
	rows := make([][]string, 0, len(names))
	for _, n := range names {
		rows = append(rows, []string{n, result})
	}
	return rows
}

func printTable(out io.Writer, header []string, rows [][]string) error {
	if out == nil {
		out = os.Stdout
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
