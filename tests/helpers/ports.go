package helpers

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
)

// Ports handed to servers come from below the kernel's ephemeral range (32768-60999 on Linux).
// A port taken from ":0" and closed again can be handed by the kernel to any outgoing connection
// (a PHP worker dialling RPC, a pgx pool) before the server under test binds it; a port below the
// ephemeral range can only be taken by another listener, which FreeAddr checks for.
const (
	portRangeStart = 20000
	portRangeSize  = 12000
)

// nextPort walks the range; each test process starts at its own offset so parallel packages
// (go test ./... runs several binaries at once) rarely probe the same ports.
var nextPort atomic.Uint32

func init() {
	nextPort.Store(uint32(os.Getpid()*389) % portRangeSize)
}

// FreeAddr returns a loopback address whose port no one listens on and that outgoing connections
// cannot take, so the server under test can bind it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range portRangeSize {
		port := portRangeStart + int(nextPort.Add(1)%portRangeSize)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		if err := l.Close(); err != nil {
			t.Fatalf("close probe listener %s: %v", addr, err)
		}
		return addr
	}
	t.Fatalf("no free port in 127.0.0.1:%d-%d", portRangeStart, portRangeStart+portRangeSize-1)
	return ""
}
