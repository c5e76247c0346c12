package drivertest

import (
	"net"
	"os"
	"testing"
	"time"
)

// RequireBrokersEnv is the variable CI sets so that a missing broker fails a test instead of
// skipping it.
const RequireBrokersEnv = "RRJOBS_REQUIRE_BROKERS"

// RequireService skips the test loudly when probe reports the service unreachable, or fails it under
// RRJOBS_REQUIRE_BROKERS=1 (CI must run everything). what names the service and its address, for
// example "RabbitMQ at 127.0.0.1:5672".
func RequireService(t testing.TB, what string, probe func() error) {
	t.Helper()
	err := probe()
	if err == nil {
		return
	}
	if os.Getenv(RequireBrokersEnv) == "1" {
		t.Fatalf("%s is required (%s=1): %v", what, RequireBrokersEnv, err)
	}
	t.Skipf("SKIPPED: %s is not reachable (start it with scripts/services.sh): %v", what, err)
}

// RequireTCP is RequireService for a server that only needs to accept TCP connections at addr
// (host:port).
func RequireTCP(t testing.TB, what, addr string) {
	t.Helper()
	RequireService(t, what+" at "+addr, func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// Env returns the environment variable name, or def when it is unset: tests read broker addresses
// through it so a developer can point them elsewhere (RRJOBS_AMQP_ADDR and the like).
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
