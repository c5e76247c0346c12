// Package serve is the main of the two benchmark servers. Both are built by the same code from the
// same stock RoadRunner v5 plugins (config, logger, server, rpc, metrics) and a no-op RPC method
// (floor.go); they differ only in the jobs plugin and the driver plugins handed to Main.
package serve

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	configPlugin "github.com/roadrunner-server/config/v5"
	"github.com/roadrunner-server/endure/v2"
	"github.com/roadrunner-server/logger/v5"
	"github.com/roadrunner-server/metrics/v5"
	rpcPlugin "github.com/roadrunner-server/rpc/v5"
	"github.com/roadrunner-server/server/v5"
)

// rrVersion is the RoadRunner version the config plugin checks `version: "3"` against.
const rrVersion = "2025.1.15"

// Main serves the config given with -c until SIGTERM/SIGINT, then stops gracefully within -grace
// (RoadRunner's endure.grace_period, default 30 s) and exits 0 when the stop completed.
func Main(jobsPlugin any, driverPlugins ...any) {
	cfg := flag.String("c", ".rr.yaml", "config file")
	grace := flag.Duration("grace", 30*time.Second, "graceful shutdown timeout (endure.grace_period)")
	flag.Parse()
	if err := run(*cfg, *grace, jobsPlugin, driverPlugins); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(cfg string, grace time.Duration, jobsPlugin any, driverPlugins []any) error {
	cont := endure.New(slog.LevelError, endure.GracefulShutdownTimeout(grace))
	plugins := []any{
		&configPlugin.Plugin{Path: cfg, Version: rrVersion, Timeout: grace},
		&logger.Plugin{}, &server.Plugin{}, &rpcPlugin.Plugin{}, &metrics.Plugin{}, &floorPlugin{},
		jobsPlugin,
	}
	err := cont.RegisterAll(append(plugins, driverPlugins...)...)
	if err != nil {
		return fmt.Errorf("register plugins: %w", err)
	}
	if err := cont.Init(); err != nil {
		return fmt.Errorf("init plugins: %w", err)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	if path := os.Getenv("RRBENCH_CPUPROFILE"); path != "" {
		stop, err := cpuProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}
	results, err := cont.Serve()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	select {
	case r := <-results:
		_ = cont.Stop()
		return fmt.Errorf("plugin %s: %w", r.VertexID, r.Error)
	case <-signals:
		return cont.Stop()
	}
}

// cpuProfile profiles the process into path until SIGUSR1 (sent by the bench runner before it kills
// the server) or until the returned stop is called.
func cpuProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		<-usr1
		stop()
		fmt.Fprintln(os.Stderr, "cpu profile written to", path)
	}()
	return stop, nil
}
