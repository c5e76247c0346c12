package amqp

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
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

// parse reads a pipeline's config the way the plugin does: section is the pipeline's `config:`
// (typed), pipe the pipeline map (Declare strings), global the `amqp:` section.
func parse(t *testing.T, section map[string]any, pipe map[string]any, global map[string]any) (Config, error) {
	t.Helper()
	p := drivertest.NewPipeline("p1", pluginName, pipe)
	o := driverkit.NewOptions(pluginName, p, section)
	return parseConfig(o, o.Global(globalSection, global))
}

func TestConfigDefaults(t *testing.T) {
	conf, err := parse(t, nil, nil, nil)
	require.NoError(t, err)
	require.Equal(t, DefaultAddr, conf.Addr)
	require.Nil(t, conf.TLS)
	require.Equal(t, "amqp.default", conf.Exchange)
	require.Equal(t, "direct", conf.ExchangeType)
	require.Empty(t, conf.Queue)
	require.Empty(t, conf.RoutingKey)
	require.Equal(t, 10, conf.Prefetch)
	require.Equal(t, int64(10), conf.Priority)
	require.Equal(t, 60*time.Second, conf.RedialTimeout)
	require.True(t, strings.HasPrefix(conf.ConsumerID, "roadrunner-"), conf.ConsumerID)
	require.Len(t, conf.ConsumerID, len("roadrunner-")+36)
	require.False(t, conf.Durable || conf.Exclusive || conf.MultipleAck || conf.RequeueOnFail || conf.DeleteQueueOnStop ||
		conf.ExchangeDurable || conf.ExchangeAutoDelete || conf.QueueAutoDelete)
	require.Nil(t, conf.QueueHeaders)

	// prefetch and priority 0 mean the default, as with stock.
	conf, err = parse(t, map[string]any{"prefetch": 0, "priority": 0}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, 10, conf.Prefetch)
	require.Equal(t, int64(10), conf.Priority)
}

func TestConfigFromYAMLAndDeclare(t *testing.T) {
	yaml := map[string]any{
		"exchange": "ex", "exchange_type": "topic", "queue": "q", "routing_key": "a.*",
		"prefetch": 50, "priority": 3, "durable": true, "exclusive": true, "multiple_ack": true,
		"requeue_on_fail": true, "redial_timeout": 5, "consumer_id": "me", "delete_queue_on_stop": true,
		"exchange_durable": true, "exchange_auto_delete": true, "queue_auto_delete": true,
		"queue_headers": map[string]any{"x-queue-type": "quorum", "x-max-length": 100, "x-nested": map[string]any{"a": 1.0}},
	}
	conf, err := parse(t, yaml, nil, map[string]any{"addr": "amqp://u:p@h:5673/vh"})
	require.NoError(t, err)
	want := Config{
		Addr: "amqp://u:p@h:5673/vh", Exchange: "ex", ExchangeType: "topic", Queue: "q", RoutingKey: "a.*",
		Prefetch: 50, Priority: 3, Durable: true, Exclusive: true, MultipleAck: true, RequeueOnFail: true,
		DeleteQueueOnStop: true, ExchangeDurable: true, ExchangeAutoDelete: true, QueueAutoDelete: true,
		RedialTimeout: 5 * time.Second, ConsumerID: "me",
		QueueHeaders: amqp.Table{"x-queue-type": "quorum", "x-max-length": int64(100), "x-nested": amqp.Table{"a": int64(1)}},
	}
	require.Equal(t, want, conf)

	// jobs.Declare: every value a string (the PHP client's AMQPCreateInfo), "topics" as it spells it.
	declare := map[string]any{
		"exchange": "ex", "exchange_type": "topics", "queue": "q", "routing_key": "a.*",
		"prefetch": "50", "priority": "3", "durable": "true", "exclusive": "true", "multiple_ack": "true",
		"requeue_on_fail": "true", "redial_timeout": "5", "consumer_id": "me", "delete_queue_on_stop": "true",
		"exchange_durable": "true", "exchange_auto_delete": "true", "queue_auto_delete": "true", "consume_all": "false",
		"queue_headers": `{"x-queue-type":"quorum","x-max-length":100,"x-nested":{"a":1}}`,
	}
	conf, err = parse(t, nil, declare, map[string]any{"addr": "amqp://u:p@h:5673/vh"})
	require.NoError(t, err)
	require.Equal(t, want, conf)

	for _, empty := range []string{"", "[]", "{}", "null"} {
		conf, err = parse(t, nil, map[string]any{"queue_headers": empty}, nil)
		require.NoError(t, err)
		require.Nil(t, conf.QueueHeaders)
	}
	conf, err = parse(t, nil, map[string]any{"redial_timeout": "1m", "queue_headers": `{"x-message-ttl": 1.5, "x-list": [1, "a"]}`}, nil)
	require.NoError(t, err)
	require.Equal(t, time.Minute, conf.RedialTimeout)
	require.Equal(t, amqp.Table{"x-message-ttl": 1.5, "x-list": []any{int64(1), "a"}}, conf.QueueHeaders)
}

func TestConfigErrorsNameKeyAndValue(t *testing.T) {
	cases := []struct {
		pipe   map[string]any
		global map[string]any
		want   string
	}{
		{map[string]any{"exchange_type": "bogus"}, nil, `amqp pipeline "p1": exchange_type must be one of direct, topic, fanout, headers, got "bogus"`},
		{map[string]any{"prefetch": "many"}, nil, `amqp pipeline "p1": prefetch must be an integer, got "many"`},
		{map[string]any{"prefetch": "70000"}, nil, `amqp pipeline "p1": prefetch must be <= 65535, got 70000`},
		{map[string]any{"prefetch": "-1"}, nil, `amqp pipeline "p1": prefetch must be >= 0, got -1`},
		{map[string]any{"priority": "high"}, nil, `amqp pipeline "p1": priority must be an integer, got "high"`},
		{map[string]any{"durable": "maybe"}, nil, `amqp pipeline "p1": durable must be true or false, got "maybe"`},
		{map[string]any{"multiple_ack": "2"}, nil, `amqp pipeline "p1": multiple_ack must be true or false, got "2"`},
		{map[string]any{"redial_timeout": "soon"}, nil, `amqp pipeline "p1": redial_timeout must be a duration like 5s or 1m, got "soon"`},
		{map[string]any{"redial_timeout": "100ms"}, nil, `amqp pipeline "p1": redial_timeout must be at least 1s, got 100ms`},
		{map[string]any{"queue_headers": "[1,2]"}, nil, `amqp pipeline "p1": queue_headers: not a JSON object`},
		{map[string]any{"queue_headers": "{bad"}, nil, `amqp pipeline "p1": queue_headers: not a JSON object`},
		{map[string]any{"exchange": "amq.topic"}, nil, `amqp pipeline "p1": exchange "amq.topic": names starting with amq. are reserved`},
		{map[string]any{"queue": strings.Repeat("q", 256)}, nil, `amqp pipeline "p1": queue must be at most 255 bytes, got 256`},
		{nil, map[string]any{"addr": "http://h/"}, `amqp pipeline "p1": amqp.addr must be an AMQP URI like amqp://user:pass@host:5672/vhost, got "http://h/"`},
		{nil, map[string]any{"addr": "amqps://u:secret@h/", "tls": map[string]any{"key": "/k"}}, `amqp pipeline "p1": amqp.tls.key and amqp.tls.cert must be set together`},
		{nil, map[string]any{"addr": "amqps://u:secret@h/", "tls": map[string]any{"key": "/nonexistent/k", "cert": "/nonexistent/c"}}, `amqp.tls.`},
		{nil, map[string]any{"addr": "amqps://u:secret@h/", "tls": map[string]any{"root_ca": "/nonexistent/ca"}}, `amqp pipeline "p1": amqp.tls.root_ca: open /nonexistent/ca`},
		{nil, map[string]any{"addr": "amqps://u:secret@h/", "tls": map[string]any{"client_auth_type": "any"}}, `amqp pipeline "p1": amqp.tls.client_auth_type must be one of no_client_cert, request_client_cert, require_and_verify_client_cert, require_any_client_cert, verify_client_cert_if_given, got "any"`},
		{nil, map[string]any{"addr": "amqp://u:secret@h/", "tls": map[string]any{"client_auth_type": "no_client_cert"}}, `amqp pipeline "p1": amqp.tls is set but amqp.addr "amqp://u@h:5672/" is not amqps://`},
		{nil, map[string]any{"tls": "yes"}, `amqp pipeline "p1": amqp.tls: expected a map`},
	}
	for _, c := range cases {
		_, err := parse(t, nil, c.pipe, c.global)
		require.Error(t, err, "%v %v", c.pipe, c.global)
		require.Contains(t, err.Error(), c.want)
		require.NotContains(t, err.Error(), "secret", "passwords never show in errors")
	}
}

func TestRedactAddr(t *testing.T) {
	require.Equal(t, "amqp://guest@127.0.0.1:5672/", redactAddr("amqp://guest:guest@127.0.0.1:5672/"))
	require.Equal(t, "amqps://u@h:5671/vh", redactAddr("amqps://u:p@h/vh"))
	require.Equal(t, "x://***@h", redactAddr("x://u:p@h"))
	require.Equal(t, "nothing", redactAddr("nothing"))
}

// writeCert writes a self-signed CA and a client certificate signed by it, PEM-encoded.
func writeCerts(t *testing.T) (dir string, caPool *x509.CertPool) {
	t.Helper()
	dir = t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rrjobs test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	write := func(name, typ string, der []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	}
	write("ca.pem", "CERTIFICATE", caDER)
	issue := func(name, cn string, usage x509.ExtKeyUsage, ip bool) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		write(name+".pem", "CERTIFICATE", der)
		write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	issue("client", "rrjobs-client", x509.ExtKeyUsageClientAuth, false)
	issue("server", "127.0.0.1", x509.ExtKeyUsageServerAuth, true)
	caPool = x509.NewCertPool()
	caPool.AddCert(caCert)
	return dir, caPool
}

// The tls section reaches the connection: the client presents its certificate and trusts root_ca.
func TestTLSConnection(t *testing.T) {
	dir, caPool := writeCerts(t)
	serverCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientCAs: caPool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	})
	require.NoError(t, err)
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- "handshake: " + err.Error()
			return
		}
		peer <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()

	global := map[string]any{
		"addr": "amqps://guest:guest@" + ln.Addr().String() + "/",
		"tls": map[string]any{
			"key": filepath.Join(dir, "client-key.pem"), "cert": filepath.Join(dir, "client.pem"),
			"root_ca": filepath.Join(dir, "ca.pem"), "client_auth_type": "require_and_verify_client_cert",
		},
	}
	conf, err := parse(t, map[string]any{"queue": "q", "routing_key": "q"}, nil, global)
	require.NoError(t, err)
	require.NotNil(t, conf.TLS)
	require.Len(t, conf.TLS.Certificates, 1)
	_, err = NewDriver(nil, "p1", conf, drivertest.NewQueue(0))
	require.Error(t, err, "the fake server speaks TLS but not AMQP")
	select {
	case cn := <-peer:
		require.Equal(t, "rrjobs-client", cn)
	case <-time.After(10 * time.Second):
		t.Fatal("no TLS connection")
	}

	// `ca` is accepted as an alias of root_ca.
	global["tls"] = map[string]any{"ca": filepath.Join(dir, "ca.pem")}
	conf, err = parse(t, nil, nil, global)
	require.NoError(t, err)
	require.NotNil(t, conf.TLS.RootCAs)
	// A file that is not PEM is refused.
	global["tls"] = map[string]any{"root_ca": filepath.Join(dir, "client-key.pem")}
	_, err = parse(t, nil, nil, global)
	require.ErrorContains(t, err, "amqp.tls.root_ca")
	require.ErrorContains(t, err, "holds no PEM certificate")
}

func TestPluginBuildsDrivers(t *testing.T) {
	requireRabbit(t)
	a := newAdmin(t)
	n := uniqueNames(t, a)
	cfg := drivertest.Configurer{
		"amqp": map[string]any{"addr": testAddr()},
		"jobs": map[string]any{"pipelines": map[string]any{"p1": map[string]any{
			"driver": "amqp",
			"config": map[string]any{"exchange": n.exchange, "queue": n.queue, "routing_key": n.queue, "prefetch": 5},
		}}},
	}
	p := &Plugin{}
	require.Error(t, p.Init(nil, cfg))
	require.NoError(t, p.Init(drivertest.TestLogger(t), cfg))
	require.Equal(t, "amqp", p.Name())
	q := drivertest.NewQueue(0)

	drv, err := p.DriverFromConfig("jobs.pipelines.p1.config", q, drivertest.NewPipeline("p1", "amqp", nil))
	require.NoError(t, err)
	d := drv.(*Driver)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	require.Equal(t, 5, d.conf.Prefetch)
	require.Equal(t, n.queue, d.conf.Queue)

	declared, err := p.DriverFromPipeline(drivertest.NewPipeline("dyn", "amqp", map[string]any{
		"exchange": n.exchange, "queue": n.queue, "routing_key": n.queue, "priority": "3", "prefetch": "100",
		"exchange_type": "direct", "queue_headers": "{}",
	}), q)
	require.NoError(t, err)
	dd := declared.(*Driver)
	t.Cleanup(func() { _ = dd.Stop(context.Background()) })
	require.Equal(t, int64(3), dd.conf.Priority)
	require.Equal(t, 100, dd.conf.Prefetch)

	push(t, dd, "via-declared", "x")
	run(t, d)
	it := take(t, q)
	require.Equal(t, "via-declared", it.ID())
	require.NoError(t, it.Ack())

	_, err = p.DriverFromPipeline(nil, q)
	require.Error(t, err)
	_, err = p.DriverFromConfig("jobs.pipelines.p1.config", q, nil)
	require.Error(t, err)
	_, err = p.DriverFromPipeline(drivertest.NewPipeline("bad", "amqp", map[string]any{"prefetch": "x"}), q)
	require.ErrorContains(t, err, `amqp pipeline "bad": prefetch must be an integer, got "x"`)
	_, err = p.DriverFromPipeline(drivertest.NewPipeline("p", "amqp", nil), nil)
	require.ErrorContains(t, err, "nil queue")
}
