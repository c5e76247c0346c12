package app

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/roadrunner-server/endure/v2"
	"github.com/spf13/viper"
)

// Version is the RoadRunner config version this binary speaks (.rr.yaml `version: "3"`).
const Version = "2025.1.15"

// DefaultGracePeriod is how long shutdown waits for running jobs (stock endure.grace_period).
const DefaultGracePeriod = 30 * time.Second

// NewContainer builds an endure container with the config plugin and plugins, registered and
// initialised, ready to Serve.
func NewContainer(cfgPath string, overrides []string, plugins []any) (*endure.Endure, error) {
	cfgPath, err := readableConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	grace, level, err := endureSettings(cfgPath, overrides)
	if err != nil {
		return nil, err
	}
	cont := endure.New(level, endure.GracefulShutdownTimeout(grace))
	all := append([]any{ConfigPlugin(cfgPath, overrides)}, plugins...)
	if err := cont.RegisterAll(all...); err != nil {
		return nil, fmt.Errorf("register plugins: %w", err)
	}
	if err := cont.Init(); err != nil {
		return nil, fmt.Errorf("init plugins: %w", err)
	}
	return cont, nil
}

// endureSettings reads `endure.grace_period` and `endure.log_level` (as RoadRunner does).
func endureSettings(cfgPath string, overrides []string) (time.Duration, slog.Level, error) {
	v, err := readConfig(cfgPath, overrides)
	if err != nil {
		return 0, 0, err
	}
	grace := DefaultGracePeriod
	if v.IsSet("endure.grace_period") {
		grace = v.GetDuration("endure.grace_period")
		if grace <= 0 {
			return 0, 0, fmt.Errorf("endure.grace_period must be a positive duration, got %q", v.GetString("endure.grace_period"))
		}
	}
	level := slog.LevelError
	if v.IsSet("endure.log_level") {
		if err := level.UnmarshalText([]byte(v.GetString("endure.log_level"))); err != nil {
			return 0, 0, fmt.Errorf("endure.log_level: %w", err)
		}
	}
	return grace, level, nil
}

// readConfig loads .rr.yaml with ${ENV} expansion and `key=value` overrides, for the few settings
// the binary needs before the config plugin runs.
func readConfig(cfgPath string, overrides []string) (*viper.Viper, error) {
	cfgPath, err := readableConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	v := viper.New()
	v.SetConfigFile(cfgPath)
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("read config %s: %w", cfgPath, err)
	}
	for _, o := range overrides {
		key, val, ok := strings.Cut(o, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("override %q must look like key=value", o)
		}
		v.Set(key, val)
	}
	return v, nil
}

// RPCAddress returns `rpc.listen` from the config (default tcp://127.0.0.1:6001), for CLI commands
// that talk to a running server.
func RPCAddress(cfgPath string, overrides []string) (network, addr string, err error) {
	v, err := readConfig(cfgPath, overrides)
	if err != nil {
		return "", "", err
	}
	listen := "tcp://127.0.0.1:6001"
	if s := expandEnv(v.GetString("rpc.listen")); s != "" {
		listen = s
	}
	network, addr, ok := strings.Cut(listen, "://")
	if !ok || (network != "tcp" && network != "unix") {
		return "", "", fmt.Errorf("rpc.listen %q must look like tcp://host:port or unix://path", listen)
	}
	return network, addr, nil
}
