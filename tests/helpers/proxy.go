package helpers

import (
	"testing"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// Proxy is an in-process TCP proxy (toxiproxy) between a driver and its broker, so a test can cut
// the connection and restore it without stopping the shared server.
type Proxy struct {
	// Addr is where the driver should connect (host:port); it stays the same across Cut/Restore.
	Addr  string
	proxy *toxiproxy.Proxy
}

// StartProxy listens on a free loopback port and forwards to upstream (host:port). It is stopped
// when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, t.Name(), FreeAddr(t), upstream)
	require.NoError(t, p.Start(), "start proxy to %s", upstream)
	t.Cleanup(p.Stop)
	return &Proxy{Addr: p.Listen, proxy: p}
}

// Cut closes every connection through the proxy and refuses new ones, like a broker that went away.
func (p *Proxy) Cut() { p.proxy.Stop() }

// Restore accepts connections again on the same address.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	require.NoError(t, p.proxy.Start(), "restore proxy %s", p.Addr)
}
