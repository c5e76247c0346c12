package drivertest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy between a driver and its broker, so a test can take the broker away and
// give it back without touching the shared server: Cut closes every connection and refuses new
// ones, Restore accepts them again on the same address, Freeze stalls traffic without closing
// anything (a broker that hangs).
type Proxy struct {
	t        testing.TB
	upstream string
	addr     string
	frozen   atomic.Bool

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns map[net.Conn]struct{}
}

// StartProxy listens on a loopback port and forwards every connection to upstream (host:port).
// It is cut when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy to %s: %v", upstream, err)
	}
	p := &Proxy{t: t, upstream: upstream, ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	go p.serve(ln)
	t.Cleanup(p.Cut)
	return p
}

// Addr is where the driver should connect (host:port); it stays the same across Cut and Restore.
func (p *Proxy) Addr() string { return p.addr }

// Cut closes every connection through the proxy and refuses new ones. Idempotent.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

// Restore accepts connections again on the same address (retrying while the port is released).
func (p *Proxy) Restore() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.ln = ln
			go p.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("proxy could not listen on %s again: %v", p.addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Freeze stops forwarding data (on) without closing anything, or forwards it again (off).
func (p *Proxy) Freeze(on bool) { p.frozen.Store(on) }

func (p *Proxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.ln != ln { // cut meanwhile
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			return
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// pipe copies src to dst, holding data back while the proxy is frozen.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		for n > 0 && p.frozen.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
