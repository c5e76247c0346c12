package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

// secureRoundTrip runs a pipeline with global settings g against addrs, creating its topic, and
// checks a job goes through.
func secureRoundTrip(t *testing.T, name string, g map[string]any) {
	t.Helper()
	topic := randName("rrt_sec_")
	section := consumerSection(topic, "g-"+topic, map[string]any{"create_topics": map[string]any{"partitions": 1}})
	conf, err := parseFor(name, g, section)
	require.NoError(t, err)
	q := drivertest.NewQueue(0)
	d, err := NewDriver(nil, name, conf, q)
	require.NoError(t, err)
	t.Cleanup(func() { stop(t, d) })
	require.NoError(t, d.Run(context.Background(), nil))
	pushID(t, d, name+"-job")
	it := take(t, q)
	require.Equal(t, name+"-job", it.ID())
	require.NoError(t, it.Ack())
}

func TestSASLMechanisms(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plainuser", "plainpass"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "pass256"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "pass512"),
	)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	brokers := []any{c.ListenAddrs()[0]}
	for _, sc := range []struct{ name, mech, user, pass string }{
		{"plain", "plain", "plainuser", "plainpass"},
		{"sha256", "SCRAM-SHA-256", "scram256", "pass256"},
		{"sha512", "SCRAM-SHA-512", "scram512", "pass512"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			secureRoundTrip(t, sc.name, map[string]any{"brokers": brokers,
				"sasl": map[string]any{"mechanism": sc.mech, "username": sc.user, "password": sc.pass}})
		})
	}

	// Bad credentials fail the start with a clear error.
	conf, err := parseFor("bad", map[string]any{"brokers": brokers, "ping": map[string]any{"timeout": "2s"},
		"sasl": map[string]any{"mechanism": "plain", "username": "plainuser", "password": "wrong"}}, nil)
	require.NoError(t, err)
	_, err = NewDriver(nil, "bad", conf, drivertest.NewQueue(0))
	require.ErrorContains(t, err, `kafka pipeline "bad": brokers`)
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	serverCert := issue(t, ca, caKey, "127.0.0.1", filepath.Join(dir, "server"))
	issue(t, ca, caKey, "client", filepath.Join(dir, "client"))

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	brokers := []any{c.ListenAddrs()[0]}

	secureRoundTrip(t, "mtls", map[string]any{"brokers": brokers, "tls": map[string]any{
		"root_ca": filepath.Join(dir, "ca.pem"), "key": filepath.Join(dir, "client.key"), "cert": filepath.Join(dir, "client.pem"),
		"client_auth_type": "require_and_verify_client_cert", "timeout": "5s",
	}})

	// Without the client certificate the broker refuses the connection.
	conf, err := parseFor("nocert", map[string]any{"brokers": brokers, "ping": map[string]any{"timeout": "1s"},
		"tls": map[string]any{"root_ca": filepath.Join(dir, "ca.pem")}}, nil)
	require.NoError(t, err)
	_, err = NewDriver(nil, "nocert", conf, drivertest.NewQueue(0))
	require.Error(t, err)

	// A missing file is named.
	conf, err = parseFor("missing", map[string]any{"brokers": brokers,
		"tls": map[string]any{"root_ca": filepath.Join(dir, "nope.pem")}}, nil)
	require.NoError(t, err)
	_, err = NewDriver(nil, "missing", conf, drivertest.NewQueue(0))
	require.ErrorContains(t, err, `kafka pipeline "missing": kafka.tls.root_ca:`)
	require.ErrorContains(t, err, "nope.pem")
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rrjobs test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return ca, key
}

// issue signs a certificate for name (an IP or a client name), writes base.pem and base.key, and
// returns it as a tls.Certificate.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name, base string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	writePEM(t, base+".pem", "CERTIFICATE", der)
	writePEM(t, base+".key", "EC PRIVATE KEY", keyDER)
	cert, err := tls.LoadX509KeyPair(base+".pem", base+".key")
	require.NoError(t, err)
	return cert
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}
