package amqp

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Config keys: the global `amqp:` section and the pipeline keys (the stock v5 flat layout).
const (
	globalSection = "amqp"

	keyAddr = "addr"
	keyTLS  = "tls"

	keyTLSRootCA   = "root_ca"
	keyTLSCA       = "ca" // alias of root_ca
	keyTLSKey      = "key"
	keyTLSCert     = "cert"
	keyTLSAuthType = "client_auth_type"

	keyExchange           = "exchange"
	keyExchangeType       = "exchange_type"
	keyQueue              = "queue"
	keyRoutingKey         = "routing_key"
	keyPrefetch           = "prefetch"
	keyPriority           = "priority"
	keyDurable            = "durable"
	keyExclusive          = "exclusive"
	keyMultipleAck        = "multiple_ack"
	keyRequeueOnFail      = "requeue_on_fail"
	keyRedialTimeout      = "redial_timeout"
	keyConsumerID         = "consumer_id"
	keyQueueHeaders       = "queue_headers"
	keyDeleteQueueOnStop  = "delete_queue_on_stop"
	keyExchangeDurable    = "exchange_durable"
	keyExchangeAutoDelete = "exchange_auto_delete"
	keyQueueAutoDelete    = "queue_auto_delete"
)

// Defaults (those of the stock driver).
const (
	DefaultAddr          = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultExchange      = "amqp.default"
	DefaultExchangeType  = amqp.ExchangeDirect
	DefaultPrefetch      = 10
	DefaultPriority      = int64(10)
	DefaultRedialTimeout = 60 * time.Second

	// maxPrefetch is the largest basic.qos prefetch count (an unsigned 16-bit field).
	maxPrefetch = math.MaxUint16
)

// clientAuthTypes are the accepted `tls.client_auth_type` values (as in the stock driver).
var clientAuthTypes = map[string]tls.ClientAuthType{
	"no_client_cert":                 tls.NoClientCert,
	"request_client_cert":            tls.RequestClientCert,
	"require_any_client_cert":        tls.RequireAnyClientCert,
	"verify_client_cert_if_given":    tls.VerifyClientCertIfGiven,
	"require_and_verify_client_cert": tls.RequireAndVerifyClientCert,
}

// Config is the resolved configuration of one amqp pipeline.
type Config struct {
	// Addr is the broker URI (amqp:// or amqps://).
	Addr string
	// TLS is the client TLS configuration (amqps:// only), nil without a `tls` section.
	TLS *tls.Config

	Exchange     string
	ExchangeType string
	// Queue is the queue to declare, bind and consume; empty for a push-only pipeline.
	Queue string
	// RoutingKey is the publish routing key and the queue's binding key.
	RoutingKey string

	Prefetch int
	Priority int64

	Durable            bool
	Exclusive          bool
	MultipleAck        bool
	RequeueOnFail      bool
	DeleteQueueOnStop  bool
	ExchangeDurable    bool
	ExchangeAutoDelete bool
	QueueAutoDelete    bool

	// RedialTimeout is how long reconnecting may take before it is logged as an error (the driver
	// keeps trying; the stock driver gave up and asked the plugin to restart the pipeline).
	RedialTimeout time.Duration
	// ConsumerID is the consumer tag.
	ConsumerID string
	// QueueHeaders are the queue-declare arguments (x-queue-type, x-max-length, x-dead-letter-...).
	QueueHeaders amqp.Table
}

// parseConfig builds the Config of a pipeline from o (its settings: typed from .rr.yaml, strings
// from Declare) and global (the `amqp:` section). Errors name the pipeline, the key and the value.
func parseConfig(o, global *driverkit.Options) (Config, error) {
	var err error
	conf := Config{
		Addr:       global.String(keyAddr, DefaultAddr),
		Exchange:   o.String(keyExchange, DefaultExchange),
		Queue:      o.String(keyQueue, ""),
		RoutingKey: o.String(keyRoutingKey, ""),
		ConsumerID: o.String(keyConsumerID, ""),
	}
	uri, err := amqp.ParseURI(conf.Addr)
	if err != nil {
		return Config{}, o.Errorf("%s must be an AMQP URI like amqp://user:pass@host:5672/vhost, got %q: %v", global.Key(keyAddr), redactAddr(conf.Addr), err)
	}
	tlsRaw, _ := global.Raw(keyTLS)
	if conf.TLS, err = parseTLS(o, tlsRaw); err != nil {
		return Config{}, err
	}
	if conf.TLS != nil && uri.Scheme != "amqps" {
		return Config{}, o.Errorf("%s is set but %s %q is not amqps://: the connection would not use TLS", global.Key(keyTLS), global.Key(keyAddr), redactAddr(conf.Addr))
	}

	typ := strings.ToLower(o.String(keyExchangeType, DefaultExchangeType))
	if typ == "topics" { // the PHP client's Declare spelling
		typ = amqp.ExchangeTopic
	}
	switch typ {
	case amqp.ExchangeDirect, amqp.ExchangeTopic, amqp.ExchangeFanout, amqp.ExchangeHeaders:
		conf.ExchangeType = typ
	default:
		return Config{}, o.Errorf("%s must be one of direct, topic, fanout, headers, got %q", keyExchangeType, o.String(keyExchangeType, ""))
	}
	if strings.HasPrefix(conf.Exchange, "amq.") {
		return Config{}, o.Errorf("%s %q: names starting with amq. are reserved by RabbitMQ", keyExchange, conf.Exchange)
	}
	for key, v := range map[string]string{keyExchange: conf.Exchange, keyQueue: conf.Queue, keyRoutingKey: conf.RoutingKey, keyConsumerID: conf.ConsumerID} {
		if len(v) > 255 {
			return Config{}, o.Errorf("%s must be at most 255 bytes, got %d", key, len(v))
		}
	}
	if conf.ConsumerID == "" {
		conf.ConsumerID = "roadrunner-" + newUUID()
	}

	prefetch, err := o.IntOrDefault(keyPrefetch, DefaultPrefetch, maxPrefetch)
	if err != nil {
		return Config{}, err
	}
	conf.Prefetch = int(prefetch)
	if conf.Priority, err = o.IntOrDefault(keyPriority, DefaultPriority, math.MaxInt64); err != nil {
		return Config{}, err
	}
	if conf.RedialTimeout, err = o.DurationMin(keyRedialTimeout, DefaultRedialTimeout, time.Second); err != nil {
		return Config{}, err
	}

	bools := []struct {
		key string
		dst *bool
	}{
		{keyDurable, &conf.Durable},
		{keyExclusive, &conf.Exclusive},
		{keyMultipleAck, &conf.MultipleAck},
		{keyRequeueOnFail, &conf.RequeueOnFail},
		{keyDeleteQueueOnStop, &conf.DeleteQueueOnStop},
		{keyExchangeDurable, &conf.ExchangeDurable},
		{keyExchangeAutoDelete, &conf.ExchangeAutoDelete},
		{keyQueueAutoDelete, &conf.QueueAutoDelete},
	}
	for _, b := range bools {
		if *b.dst, err = o.Bool(b.key, false); err != nil {
			return Config{}, err
		}
	}

	raw, _ := o.Raw(keyQueueHeaders)
	if conf.QueueHeaders, err = parseTable(raw); err != nil {
		return Config{}, o.Errorf("%s: %v", keyQueueHeaders, err)
	}
	if err := conf.QueueHeaders.Validate(); err != nil {
		return Config{}, o.Errorf("%s: %v", keyQueueHeaders, err)
	}
	return conf, nil
}

// parseTLS reads the `amqp.tls` section: a client certificate (key and cert, both or neither) and
// a CA to trust besides the system pool (root_ca, or its alias ca). nil without a section.
func parseTLS(o *driverkit.Options, raw any) (*tls.Config, error) {
	section, err := toStringAnyMap(raw)
	if err != nil {
		return nil, o.Errorf("%s.%s: %v", globalSection, keyTLS, err)
	}
	if len(section) == 0 {
		return nil, nil
	}
	t := o.Global(globalSection+"."+keyTLS, section)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}

	if auth := t.String(keyTLSAuthType, ""); auth != "" {
		if _, ok := clientAuthTypes[auth]; !ok {
			names := make([]string, 0, len(clientAuthTypes))
			for n := range clientAuthTypes {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, t.Errorf("%s must be one of %s, got %q", t.Key(keyTLSAuthType), strings.Join(names, ", "), auth)
		}
	}

	key, cert := t.String(keyTLSKey, ""), t.String(keyTLSCert, "")
	switch {
	case key == "" && cert == "":
	case key == "" || cert == "":
		return nil, t.Errorf("%s and %s must be set together (a client certificate and its key)", t.Key(keyTLSKey), t.Key(keyTLSCert))
	default:
		for k, path := range map[string]string{keyTLSKey: key, keyTLSCert: cert} {
			if _, err := os.Stat(path); err != nil {
				return nil, t.Errorf("%s: %v", t.Key(k), err)
			}
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, t.Errorf("%s / %s: load the client certificate: %v", t.Key(keyTLSCert), t.Key(keyTLSKey), err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}

	caKey := keyTLSRootCA
	ca := t.String(keyTLSRootCA, "")
	if ca == "" {
		caKey, ca = keyTLSCA, t.String(keyTLSCA, "")
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, t.Errorf("%s: %v", t.Key(caKey), err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, t.Errorf("%s: %s holds no PEM certificate", t.Key(caKey), ca)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// parseTable reads queue-declare arguments: a YAML map, or a JSON object string (jobs.Declare).
// Whole numbers become int64 (RabbitMQ rejects x-max-priority: 10.0), nested maps become tables.
func parseTable(raw any) (amqp.Table, error) {
	switch t := raw.(type) {
	case nil:
		return nil, nil
	case string:
		s := strings.TrimSpace(t)
		if s == "" || s == "[]" || s == "{}" || s == "null" {
			return nil, nil
		}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("not a JSON object: %w", err)
		}
		raw = m
	}
	m, err := toStringAnyMap(raw)
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := make(amqp.Table, len(m))
	for k, v := range m {
		if v == nil {
			continue
		}
		cv, err := tableValue(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = cv
	}
	return out, nil
}

func tableValue(v any) (any, error) {
	switch t := v.(type) {
	case string, bool, int64, []byte:
		return t, nil
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return n, nil
		}
		f, err := t.Float64()
		if err != nil {
			return nil, fmt.Errorf("not a number: %q", string(t))
		}
		return f, nil
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return int64(t), nil
		}
		return t, nil
	case float32:
		return tableValue(float64(t))
	case int, int8, int16, int32, uint, uint8, uint16, uint32, uint64:
		n, err := driverkit.ToInt64(t)
		if err != nil {
			return nil, err
		}
		return n, nil
	case []any:
		out := make([]any, 0, len(t))
		for _, e := range t {
			cv, err := tableValue(e)
			if err != nil {
				return nil, err
			}
			out = append(out, cv)
		}
		return out, nil
	default:
		m, err := toStringAnyMap(v)
		if err != nil {
			return nil, fmt.Errorf("unsupported value %v (%T)", v, v)
		}
		return parseTable(m)
	}
}

// toStringAnyMap accepts the map shapes config readers produce.
func toStringAnyMap(v any) (map[string]any, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return t, nil
	case driverkit.Pipeline:
		return map[string]any(t), nil
	case map[string]string:
		out := make(map[string]any, len(t))
		for k, s := range t {
			out[k] = s
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = e
		}
		return out, nil
	case string:
		if strings.TrimSpace(t) == "" {
			return nil, nil
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(t), &m); err != nil {
			return nil, fmt.Errorf("expected a map, got %q", t)
		}
		return m, nil
	}
	return nil, fmt.Errorf("expected a map, got %T", v)
}

// redactAddr hides the password of an AMQP URI for logs and errors.
func redactAddr(addr string) string {
	uri, err := amqp.ParseURI(addr)
	if err != nil {
		if i := strings.LastIndex(addr, "@"); i >= 0 {
			if j := strings.Index(addr, "://"); j >= 0 && j < i {
				return addr[:j+3] + "***" + addr[i:]
			}
			return "***" + addr[i:]
		}
		return addr
	}
	return fmt.Sprintf("%s://%s@%s:%d/%s", uri.Scheme, uri.Username, uri.Host, uri.Port, strings.TrimPrefix(uri.Vhost, "/"))
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
