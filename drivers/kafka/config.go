package kafka

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Config keys: the global `kafka:` section, and a pipeline's `config:` section (or the flat Declare
// map, where the objects arrive as JSON strings).
const (
	globalSection = "kafka"

	keyBrokers = "brokers"
	keyTLS     = "tls"
	keySASL    = "sasl"
	keyPing    = "ping"

	keyPriority         = "priority"
	keyPrefetch         = "prefetch"
	keyAutoCreateTopics = "auto_create_topics_enable"
	keyCreateTopics     = "create_topics"
	keyProducerOptions  = "producer_options"
	keyConsumerOptions  = "consumer_options"
	keyGroupOptions     = "group_options"
	keySASLOptions      = "sasl_options"
)

// Defaults.
const (
	// DefaultPriority is the pipeline priority (lower runs first).
	DefaultPriority int64 = 10
	// DefaultPrefetch caps the records of one pipeline fetched and not yet finished (in the shared
	// queue or at a worker). Delayed records held until they are due do not count.
	DefaultPrefetch = 100
	// DefaultPingTimeout bounds the broker ping at pipeline start.
	DefaultPingTimeout = 10 * time.Second
	// DefaultTLSTimeout is the dial timeout of TLS connections.
	DefaultTLSTimeout = 10 * time.Second

	maxPrefetch = 100_000
)

// Offset types of consumer_offset and consume_partitions.
const (
	OffsetAtStart    = "AtStart"
	OffsetAtEnd      = "AtEnd"
	OffsetAt         = "At"
	OffsetAfterMilli = "AfterMilli"
	OffsetRelative   = "Relative"
	OffsetWithEpoch  = "WithEpoch"
)

var offsetTypes = []string{OffsetAtStart, OffsetAtEnd, OffsetAt, OffsetAfterMilli, OffsetRelative, OffsetWithEpoch}

// Required acks.
const (
	AcksNone   = "NoAck"
	AcksLeader = "LeaderAck"
	AcksAll    = "AllISRAck"
)

// Partitioning strategies.
const (
	PartitionManual      = "Manual"
	PartitionUniform     = "Uniform"
	PartitionRoundRobin  = "RoundRobin"
	PartitionLeastBackup = "LeastBackup"
	PartitionSticky      = "Sticky"
)

// SASL mechanisms (as the stock driver spells them; matched without regard to case).
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLAWSMSKIAM   = "aws_msk_iam"
)

// The AWS environment variables aws_msk_iam falls back to.
const (
	envAWSAccessKey    = "AWS_ACCESS_KEY_ID"
	envAWSSecretKey    = "AWS_SECRET_ACCESS_KEY"
	envAWSSessionToken = "AWS_SESSION_TOKEN"
)

// TLS client_auth_type values (accepted for compatibility; a client never verifies client certs).
var clientAuthTypes = []string{
	"no_client_cert", "request_client_cert", "require_any_client_cert",
	"verify_client_cert_if_given", "require_and_verify_client_cert",
}

// Config is the resolved configuration of one kafka pipeline.
type Config struct {
	// Brokers are the seed brokers (host:port).
	Brokers []string
	// TLS is nil for plaintext connections.
	TLS *TLSConfig
	// SASL is nil without authentication.
	SASL *SASLConfig
	// PingTimeout bounds the ping at start.
	PingTimeout time.Duration

	// Priority is the pipeline priority, inherited by jobs pushed with priority 0.
	Priority int64
	// Prefetch caps fetched, unfinished records of this pipeline in this process.
	Prefetch int
	// AutoCreateTopics lets the broker create topics that are produced to or consumed from.
	AutoCreateTopics bool
	// CreateTopics, when set, makes the driver create missing consumer topics at start.
	CreateTopics *CreateTopicsConfig
	Producer     ProducerConfig
	Consumer     ConsumerConfig
	// Group is nil without a consumer group (then no offset is ever committed).
	Group *GroupConfig
}

// TLSConfig is the `kafka.tls` section.
type TLSConfig struct {
	Key, Cert, RootCA string
	ClientAuthType    string
	Timeout           time.Duration
}

// SASLConfig is the `kafka.sasl` section (or a pipeline's `sasl_options`).
type SASLConfig struct {
	Mechanism string // one of the SASL* constants
	Username  string
	Password  string
	Zid       string
	Nonce     []byte
	IsToken   bool

	AccessKey, SecretKey, SessionToken, UserAgent string
}

// CreateTopicsConfig is `create_topics`: how the driver creates the consumer topics that are missing.
type CreateTopicsConfig struct {
	// Partitions and ReplicationFactor are -1 for the broker defaults.
	Partitions        int32
	ReplicationFactor int16
	// Configs are topic configs such as retention.ms.
	Configs map[string]string
}

// ProducerConfig is `producer_options`. Zero values mean the client defaults.
type ProducerConfig struct {
	DisableIdempotent    bool
	RequiredAcks         string
	MaxMessageBytes      int32
	RequestTimeout       time.Duration
	DeliveryTimeout      time.Duration
	TransactionTimeout   time.Duration
	CompressionCodec     string
	PartitioningStrategy string
}

// ConsumerConfig is `consumer_options`.
type ConsumerConfig struct {
	Topics              []string
	ConsumeRegexp       bool
	MaxFetchMessageSize int32
	MinFetchMessageSize int32
	// ConsumePartitions is topic -> partition -> where to start.
	ConsumePartitions map[string]map[int32]OffsetSpec
	// ConsumerOffset is nil for the client default (the start of the log).
	ConsumerOffset *OffsetSpec
}

// OffsetSpec is a start position: {type, value}.
type OffsetSpec struct {
	Type  string
	Value int64
}

// GroupConfig is `group_options`.
type GroupConfig struct {
	GroupID              string
	InstanceID           string
	BlockRebalanceOnPoll bool
}

// consumes reports whether the pipeline consumes anything.
func (c *Config) consumes() bool {
	return len(c.Consumer.Topics) > 0 || len(c.Consumer.ConsumePartitions) > 0
}

// topicNames returns the topics the pipeline consumes by name (not the regular expressions), sorted.
func (c *Config) topicNames() []string {
	if c.Consumer.ConsumeRegexp {
		return nil
	}
	if len(c.Consumer.Topics) > 0 {
		return append([]string(nil), c.Consumer.Topics...)
	}
	out := make([]string, 0, len(c.Consumer.ConsumePartitions))
	for t := range c.Consumer.ConsumePartitions {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// defaultTopic is where Push sends a job that names no topic: the first consumed topic.
func (c *Config) defaultTopic() string {
	if names := c.topicNames(); len(names) > 0 {
		return names[0]
	}
	return ""
}

// queueName is what State reports as Queue: the consumed topics (or patterns), comma-separated.
func (c *Config) queueName() string {
	if len(c.Consumer.Topics) > 0 {
		return strings.Join(c.Consumer.Topics, ",")
	}
	return strings.Join(c.topicNames(), ",")
}

// parseConfig builds the Config of a pipeline from o (its settings: typed from .rr.yaml, strings from
// Declare) and global (the `kafka:` section). Errors name the pipeline, the key and the value.
func parseConfig(o, global *driverkit.Options) (Config, error) {
	var conf Config
	var err error

	if conf.Brokers, err = brokers(global, o); err != nil {
		return Config{}, err
	}
	if conf.TLS, err = parseTLS(global); err != nil {
		return Config{}, err
	}
	// A pipeline's sasl_options (the only way from Declare) win over kafka.sasl.
	if conf.SASL, err = parseSASL(o, keySASLOptions); err != nil {
		return Config{}, err
	}
	if conf.SASL == nil {
		if conf.SASL, err = parseSASL(global, keySASL); err != nil {
			return Config{}, err
		}
	}
	ping, err := object(global, keyPing)
	if err != nil {
		return Config{}, err
	}
	if conf.PingTimeout, err = global.Global(global.Key(keyPing), ping).Duration("timeout", DefaultPingTimeout); err != nil {
		return Config{}, err
	}

	// 0 means the default, as with stock.
	if conf.Priority, err = o.IntOrDefault(keyPriority, DefaultPriority, math.MaxInt64); err != nil {
		return Config{}, err
	}
	prefetch, err := o.IntOrDefault(keyPrefetch, DefaultPrefetch, maxPrefetch)
	if err != nil {
		return Config{}, err
	}
	conf.Prefetch = int(prefetch)
	if conf.AutoCreateTopics, err = o.Bool(keyAutoCreateTopics, false); err != nil {
		return Config{}, err
	}
	if conf.CreateTopics, err = parseCreateTopics(o); err != nil {
		return Config{}, err
	}
	if conf.Producer, err = parseProducer(o); err != nil {
		return Config{}, err
	}
	if conf.Consumer, err = parseConsumer(o); err != nil {
		return Config{}, err
	}
	if conf.Group, err = parseGroup(o); err != nil {
		return Config{}, err
	}
	if conf.Group != nil && len(conf.Consumer.ConsumePartitions) > 0 {
		return Config{}, o.Errorf("%s.consume_partitions cannot be used with %s (a group assigns partitions itself); use %s.topics",
			keyConsumerOptions, keyGroupOptions, keyConsumerOptions)
	}
	if conf.CreateTopics != nil && conf.Consumer.ConsumeRegexp {
		return Config{}, o.Errorf("%s needs topic names, but %s.consume_regexp is true", keyCreateTopics, keyConsumerOptions)
	}
	return conf, nil
}

// brokers reads kafka.brokers (a list, or a comma-separated string); a pipeline's own `brokers` is
// used when the global section has none.
func brokers(global, o *driverkit.Options) ([]string, error) {
	for _, src := range []*driverkit.Options{global, o} {
		v, ok := src.Raw(keyBrokers)
		if !ok {
			continue
		}
		list, err := stringList(v)
		if err != nil {
			return nil, src.Errorf("%s must be a list of host:port addresses, got %q", src.Key(keyBrokers), fmt.Sprint(v))
		}
		for _, b := range list {
			if !strings.Contains(b, ":") {
				return nil, src.Errorf("%s: %q is not a host:port address", src.Key(keyBrokers), b)
			}
		}
		if len(list) > 0 {
			return list, nil
		}
	}
	return nil, o.Errorf("no brokers: set %s.%s in .rr.yaml (a list of host:port addresses)", globalSection, keyBrokers)
}

func parseTLS(global *driverkit.Options) (*TLSConfig, error) {
	m, err := object(global, keyTLS)
	if err != nil || m == nil {
		return nil, err
	}
	s := global.Global(global.Key(keyTLS), m)
	c := &TLSConfig{
		Key:            s.String("key", ""),
		Cert:           s.String("cert", ""),
		RootCA:         s.String("root_ca", ""),
		ClientAuthType: s.String("client_auth_type", ""),
	}
	if c.Timeout, err = s.Duration("timeout", DefaultTLSTimeout); err != nil {
		return nil, err
	}
	if (c.Key == "") != (c.Cert == "") {
		return nil, s.Errorf("%s and %s must be set together", s.Key("key"), s.Key("cert"))
	}
	if c.ClientAuthType != "" && !contains(clientAuthTypes, c.ClientAuthType) {
		return nil, s.Errorf("%s must be one of %s, got %q", s.Key("client_auth_type"), strings.Join(clientAuthTypes, ", "), c.ClientAuthType)
	}
	// The stock driver turns TLS on with a key pair or a root CA; `enabled: true` turns it on with
	// the system roots (brokers with a public certificate), `enabled: false` turns it off.
	on, err := s.Bool("enabled", c.Key != "" || c.RootCA != "")
	if err != nil {
		return nil, err
	}
	if !on {
		return nil, nil
	}
	return c, nil
}

func parseSASL(src *driverkit.Options, key string) (*SASLConfig, error) {
	m, err := object(src, key)
	if err != nil || m == nil {
		return nil, err
	}
	s := src.Global(src.Key(key), m)
	c := &SASLConfig{
		Username:     s.String("username", ""),
		Password:     s.String("password", ""),
		Zid:          s.String("zid", ""),
		AccessKey:    s.String("access_key", ""),
		SecretKey:    s.String("secret_key", ""),
		SessionToken: s.String("session_token", ""),
		UserAgent:    s.String("user_agent", ""),
	}
	if nonce := s.String("nonce", ""); nonce != "" {
		c.Nonce = []byte(nonce)
	}
	if c.IsToken, err = s.Bool("is_token", false); err != nil {
		return nil, err
	}
	mech := s.String("mechanism", "")
	norm := strings.ReplaceAll(strings.ToLower(mech), "_", "-")
	switch norm {
	case "plain":
		c.Mechanism = SASLPlain
	case "scram-sha-256":
		c.Mechanism = SASLScramSHA256
	case "scram-sha-512":
		c.Mechanism = SASLScramSHA512
	case "aws-msk-iam":
		c.Mechanism = SASLAWSMSKIAM
	case "":
		return nil, s.Errorf("%s is required (plain, SCRAM-SHA-256, SCRAM-SHA-512 or aws_msk_iam)", s.Key("mechanism"))
	default:
		return nil, s.Errorf("%s must be plain, SCRAM-SHA-256, SCRAM-SHA-512 or aws_msk_iam, got %q", s.Key("mechanism"), mech)
	}
	if c.Mechanism != SASLAWSMSKIAM && c.Username == "" {
		return nil, s.Errorf("%s is required for SASL %s", s.Key("username"), c.Mechanism)
	}
	if c.Mechanism == SASLAWSMSKIAM {
		if (c.AccessKey == "") != (c.SecretKey == "") {
			return nil, s.Errorf("%s and %s must be set together (or both left out to use %s and %s)",
				s.Key("access_key"), s.Key("secret_key"), envAWSAccessKey, envAWSSecretKey)
		}
		if c.AccessKey == "" && (os.Getenv(envAWSAccessKey) == "" || os.Getenv(envAWSSecretKey) == "") {
			return nil, s.Errorf("aws_msk_iam needs %s and %s, or %s and %s in the environment "+
				"(the AWS default credential chain: profiles, web identity, instance metadata, is not supported)",
				s.Key("access_key"), s.Key("secret_key"), envAWSAccessKey, envAWSSecretKey)
		}
	}
	return c, nil
}

func parseCreateTopics(o *driverkit.Options) (*CreateTopicsConfig, error) {
	m, err := object(o, keyCreateTopics)
	if err != nil || m == nil {
		return nil, err
	}
	s := o.Global(keyCreateTopics, m)
	c := &CreateTopicsConfig{Configs: map[string]string{}}
	parts, err := s.Int("partitions", -1, -1, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	if parts == 0 {
		return nil, s.Errorf("%s must be at least 1 (or -1 for the broker default), got 0", s.Key("partitions"))
	}
	c.Partitions = int32(parts)
	rf, err := s.Int("replication_factor", -1, -1, math.MaxInt16)
	if err != nil {
		return nil, err
	}
	if rf == 0 {
		return nil, s.Errorf("%s must be at least 1 (or -1 for the broker default), got 0", s.Key("replication_factor"))
	}
	c.ReplicationFactor = int16(rf)
	if v, ok := m["config"]; ok && v != nil {
		cm, err := toMap(v)
		if err != nil {
			return nil, s.Errorf("%s must be a map of topic configs (retention.ms: 86400000 ...): %v", s.Key("config"), err)
		}
		flattenConfig("", cm, c.Configs)
	}
	return c, nil
}

// flattenConfig turns nested maps into dotted keys: a config loader that splits `retention.ms` at
// the dot gives {retention: {ms: ...}}, which is retention.ms again here.
func flattenConfig(prefix string, in map[string]any, out map[string]string) {
	for k, v := range in {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, err := toMap(v); err == nil && sub != nil {
			if _, isMap := v.(string); !isMap {
				flattenConfig(key, sub, out)
				continue
			}
		}
		out[key] = scalar(v)
	}
}

func parseProducer(o *driverkit.Options) (ProducerConfig, error) {
	var c ProducerConfig
	m, err := object(o, keyProducerOptions)
	if err != nil || m == nil {
		return c, err
	}
	s := o.Global(keyProducerOptions, m)
	if c.DisableIdempotent, err = s.Bool("disable_idempotent", false); err != nil {
		return c, err
	}
	if c.RequiredAcks, err = oneOf(s, "required_acks", AcksNone, AcksLeader, AcksAll); err != nil {
		return c, err
	}
	if c.RequiredAcks != "" && c.RequiredAcks != AcksAll && !c.DisableIdempotent {
		return c, s.Errorf("%s %s needs %s: true (idempotent writes require AllISRAck)", s.Key("required_acks"), c.RequiredAcks, s.Key("disable_idempotent"))
	}
	mb, err := s.Int("max_message_bytes", 0, 0, math.MaxInt32)
	if err != nil {
		return c, err
	}
	c.MaxMessageBytes = int32(mb)
	if c.RequestTimeout, err = s.Duration("request_timeout", 0); err != nil {
		return c, err
	}
	if c.DeliveryTimeout, err = s.Duration("delivery_timeout", 0); err != nil {
		return c, err
	}
	if c.TransactionTimeout, err = s.Duration("transaction_timeout", 0); err != nil {
		return c, err
	}
	if c.CompressionCodec, err = oneOf(s, "compression_codec", "gzip", "snappy", "lz4", "zstd"); err != nil {
		return c, err
	}
	c.CompressionCodec = strings.ToLower(c.CompressionCodec)
	if c.PartitioningStrategy, err = oneOf(s, "partitioning_strategy",
		PartitionManual, PartitionUniform, PartitionRoundRobin, PartitionLeastBackup, PartitionSticky); err != nil {
		return c, err
	}
	return c, nil
}

func parseConsumer(o *driverkit.Options) (ConsumerConfig, error) {
	var c ConsumerConfig
	m, err := object(o, keyConsumerOptions)
	if err != nil || m == nil {
		return c, err
	}
	s := o.Global(keyConsumerOptions, m)
	if v, ok := s.Raw("topics"); ok {
		if c.Topics, err = stringList(v); err != nil {
			return c, s.Errorf("%s must be a list of topic names, got %q", s.Key("topics"), fmt.Sprint(v))
		}
	}
	if c.ConsumeRegexp, err = s.Bool("consume_regexp", false); err != nil {
		return c, err
	}
	maxFetch, err := s.Int("max_fetch_message_size", 0, 0, math.MaxInt32)
	if err != nil {
		return c, err
	}
	minFetch, err := s.Int("min_fetch_message_size", 0, 0, math.MaxInt32)
	if err != nil {
		return c, err
	}
	c.MaxFetchMessageSize, c.MinFetchMessageSize = int32(maxFetch), int32(minFetch)

	if v, ok := s.Raw("consumer_offset"); ok {
		om, err := toMap(v)
		if err != nil {
			return c, s.Errorf("%s must be an object {type, value}: %v", s.Key("consumer_offset"), err)
		}
		spec, err := parseOffset(s.Global(s.Key("consumer_offset"), om))
		if err != nil {
			return c, err
		}
		c.ConsumerOffset = &spec
	}

	if v, ok := s.Raw("consume_partitions"); ok {
		tm, err := toMap(v)
		if err != nil {
			return c, s.Errorf("%s must be a map topic -> partition -> {type, value}: %v", s.Key("consume_partitions"), err)
		}
		c.ConsumePartitions = make(map[string]map[int32]OffsetSpec, len(tm))
		for topic, pv := range tm {
			pm, err := toMap(pv)
			if err != nil || len(pm) == 0 {
				return c, s.Errorf("%s.%s must be a map partition -> {type, value}", s.Key("consume_partitions"), topic)
			}
			parts := make(map[int32]OffsetSpec, len(pm))
			for ps, ov := range pm {
				p, err := strconv.ParseInt(strings.TrimSpace(ps), 10, 32)
				if err != nil || p < 0 {
					return c, s.Errorf("%s.%s: partition %q is not a partition number", s.Key("consume_partitions"), topic, ps)
				}
				om, err := toMap(ov)
				if err != nil {
					return c, s.Errorf("%s.%s.%s must be an object {type, value}: %v", s.Key("consume_partitions"), topic, ps, err)
				}
				spec, err := parseOffset(s.Global(fmt.Sprintf("%s.%s.%s", s.Key("consume_partitions"), topic, ps), om))
				if err != nil {
					return c, err
				}
				parts[int32(p)] = spec
			}
			c.ConsumePartitions[topic] = parts
		}
	}
	if len(c.Topics) > 0 && len(c.ConsumePartitions) > 0 {
		return c, s.Errorf("%s and %s are mutually exclusive", s.Key("topics"), s.Key("consume_partitions"))
	}
	if c.ConsumeRegexp && len(c.Topics) == 0 {
		return c, s.Errorf("%s needs %s (the regular expressions)", s.Key("consume_regexp"), s.Key("topics"))
	}
	for _, t := range c.Topics {
		if t == "" {
			return c, s.Errorf("%s has an empty topic name", s.Key("topics"))
		}
	}
	return c, nil
}

func parseOffset(s *driverkit.Options) (OffsetSpec, error) {
	typ, err := oneOf(s, "type", offsetTypes...)
	if err != nil {
		return OffsetSpec{}, err
	}
	if typ == "" {
		return OffsetSpec{}, s.Errorf("%s is required (%s)", s.Key("type"), strings.Join(offsetTypes, ", "))
	}
	val, err := s.Int("value", 0, math.MinInt64, math.MaxInt64)
	if err != nil {
		return OffsetSpec{}, err
	}
	if typ == OffsetWithEpoch && (val < math.MinInt32 || val > math.MaxInt32) {
		return OffsetSpec{}, s.Errorf("%s must be an epoch (a 32-bit integer) for WithEpoch, got %d", s.Key("value"), val)
	}
	return OffsetSpec{Type: typ, Value: val}, nil
}

func parseGroup(o *driverkit.Options) (*GroupConfig, error) {
	m, err := object(o, keyGroupOptions)
	if err != nil || m == nil {
		return nil, err
	}
	s := o.Global(keyGroupOptions, m)
	c := &GroupConfig{GroupID: s.String("group_id", ""), InstanceID: s.String("instance_id", "")}
	if c.GroupID == "" {
		return nil, s.Errorf("%s is required when %s is set", s.Key("group_id"), keyGroupOptions)
	}
	if c.BlockRebalanceOnPoll, err = s.Bool("block_rebalance_on_poll", false); err != nil {
		return nil, err
	}
	return c, nil
}

// oneOf reads a string key that must be one of allowed (matched without regard to case) and returns
// the allowed spelling, or "" when unset.
func oneOf(s *driverkit.Options, key string, allowed ...string) (string, error) {
	v := s.String(key, "")
	if v == "" {
		return "", nil
	}
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, nil
		}
	}
	return "", s.Errorf("%s must be one of %s, got %q", s.Key(key), strings.Join(allowed, ", "), v)
}

// object returns key's value as a map: a YAML map, or a JSON object string (Declare). nil when unset
// or empty.
func object(o *driverkit.Options, key string) (map[string]any, error) {
	v, ok := o.Raw(key)
	if !ok {
		return nil, nil
	}
	m, err := toMap(v)
	if err != nil {
		return nil, o.Errorf("%s must be an object: %v", o.Key(key), err)
	}
	if len(m) == 0 {
		// An empty object still means "present" for group_options and the like only when it has
		// keys; `{}` and `[]` from PHP are treated as unset.
		return nil, nil
	}
	return m, nil
}

// toMap converts the map forms config loaders and JSON produce into map[string]any.
func toMap(v any) (map[string]any, error) {
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
		for k, s := range t {
			out[fmt.Sprint(k)] = s
		}
		return out, nil
	case map[int]any:
		out := make(map[string]any, len(t))
		for k, s := range t {
			out[strconv.Itoa(k)] = s
		}
		return out, nil
	case string:
		s := strings.TrimSpace(t)
		if s == "" || s == "[]" || s == "{}" {
			return nil, nil
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(s)))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("not a JSON object: %w", err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("expected an object, got %T", v)
}

// stringList reads a list of strings: a YAML or JSON list, or a comma-separated string.
func stringList(v any) ([]string, error) {
	var raw []string
	switch t := v.(type) {
	case []string:
		raw = t
	case []any:
		for _, e := range t {
			switch s := e.(type) {
			case string:
				raw = append(raw, s)
			case json.Number, int, int64, float64:
				raw = append(raw, fmt.Sprint(s))
			default:
				return nil, fmt.Errorf("element %v is not a string", e)
			}
		}
	case string:
		s := strings.TrimSpace(t)
		if strings.HasPrefix(s, "[") {
			var list []string
			if err := json.Unmarshal([]byte(s), &list); err != nil {
				return nil, err
			}
			raw = list
			break
		}
		raw = strings.Split(s, ",")
	default:
		return nil, fmt.Errorf("not a list: %T", v)
	}
	out := make([]string, 0, len(raw))
	for _, s := range raw {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func scalar(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	default:
		return fmt.Sprint(t)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
