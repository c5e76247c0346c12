package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
	"github.com/twmb/franz-go/pkg/sasl"
	kaws "github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// baseOpts are the options of every client of a pipeline: brokers, TLS, SASL, logging.
func baseOpts(conf *Config, log *zap.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(conf.Brokers...),
		kgo.MaxVersions(kversion.Stable()),
		kgo.WithLogger(kgoLogger{log: log}),
	}
	if conf.AutoCreateTopics {
		opts = append(opts, kgo.AllowAutoTopicCreation())
	}
	if conf.TLS != nil {
		tc, err := tlsConfig(conf.TLS)
		if err != nil {
			return nil, err
		}
		dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: conf.TLS.Timeout}, Config: tc}
		opts = append(opts, kgo.Dialer(dialer.DialContext))
	}
	if conf.SASL != nil {
		opts = append(opts, kgo.SASL(saslMechanism(conf.SASL)))
	}
	return opts, nil
}

// producerOpts are the producer_options.
func producerOpts(p ProducerConfig) []kgo.Opt {
	var opts []kgo.Opt
	if p.DisableIdempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	switch p.RequiredAcks {
	case AcksNone:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	case AcksLeader:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	case AcksAll:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	if p.MaxMessageBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(p.MaxMessageBytes))
	}
	if p.RequestTimeout > 0 {
		opts = append(opts, kgo.ProduceRequestTimeout(p.RequestTimeout))
	}
	if p.DeliveryTimeout > 0 {
		opts = append(opts, kgo.RecordDeliveryTimeout(p.DeliveryTimeout))
	}
	if p.TransactionTimeout > 0 {
		opts = append(opts, kgo.TransactionTimeout(p.TransactionTimeout))
	}
	switch p.CompressionCodec {
	case "gzip":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression()))
	case "snappy":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	}
	switch p.PartitioningStrategy {
	case PartitionManual:
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	case PartitionRoundRobin:
		opts = append(opts, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	case PartitionLeastBackup:
		opts = append(opts, kgo.RecordPartitioner(kgo.LeastBackupPartitioner()))
	case PartitionSticky:
		opts = append(opts, kgo.RecordPartitioner(kgo.StickyPartitioner()))
	}
	return opts
}

// consumerOpts are the consumer_options (without the group: see Driver.groupOpts).
func consumerOpts(c ConsumerConfig) []kgo.Opt {
	var opts []kgo.Opt
	switch {
	case len(c.Topics) > 0:
		opts = append(opts, kgo.ConsumeTopics(c.Topics...))
	case len(c.ConsumePartitions) > 0:
		parts := make(map[string]map[int32]kgo.Offset, len(c.ConsumePartitions))
		for topic, ps := range c.ConsumePartitions {
			m := make(map[int32]kgo.Offset, len(ps))
			for p, spec := range ps {
				m[p] = spec.kgo()
			}
			parts[topic] = m
		}
		opts = append(opts, kgo.ConsumePartitions(parts))
	}
	if c.ConsumeRegexp {
		opts = append(opts, kgo.ConsumeRegex())
	}
	if c.ConsumerOffset != nil {
		// As the stock driver: where to start without a committed offset, and where to resume after
		// the broker lost data.
		opts = append(opts, kgo.ConsumeResetOffset(c.ConsumerOffset.kgo()))
	}
	if c.MaxFetchMessageSize > 0 {
		opts = append(opts, kgo.FetchMaxBytes(c.MaxFetchMessageSize))
	}
	if c.MinFetchMessageSize > 0 {
		opts = append(opts, kgo.FetchMinBytes(c.MinFetchMessageSize))
	}
	return opts
}

// kgo converts the offset spec.
func (s OffsetSpec) kgo() kgo.Offset {
	switch s.Type {
	case OffsetAt:
		return kgo.NewOffset().At(s.Value)
	case OffsetAfterMilli:
		return kgo.NewOffset().AfterMilli(s.Value)
	case OffsetAtEnd:
		return kgo.NewOffset().AtEnd()
	case OffsetRelative:
		return kgo.NewOffset().Relative(s.Value)
	case OffsetWithEpoch:
		return kgo.NewOffset().WithEpoch(int32(s.Value)) //nolint:gosec // validated
	default:
		return kgo.NewOffset().AtStart()
	}
}

func tlsConfig(c *TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	for _, f := range []struct{ key, path string }{{"key", c.Key}, {"cert", c.Cert}, {"root_ca", c.RootCA}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("%s.tls.%s: %w", globalSection, f.key, err)
		}
	}
	if c.Key != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("%s.tls: load the key pair (cert %s, key %s): %w", globalSection, c.Cert, c.Key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if c.RootCA != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(c.RootCA)
		if err != nil {
			return nil, fmt.Errorf("%s.tls.root_ca: %w", globalSection, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.tls.root_ca: no PEM certificate in %s", globalSection, c.RootCA)
		}
		tc.RootCAs = pool
	}
	// client_auth_type is a server-side setting; the stock driver sets it on its client config too,
	// where it has no effect. It is accepted and validated for compatibility.
	switch c.ClientAuthType {
	case "request_client_cert":
		tc.ClientAuth = tls.RequestClientCert
	case "require_any_client_cert":
		tc.ClientAuth = tls.RequireAnyClientCert
	case "verify_client_cert_if_given":
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case "require_and_verify_client_cert":
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

func saslMechanism(c *SASLConfig) sasl.Mechanism {
	switch c.Mechanism {
	case SASLScramSHA256, SASLScramSHA512:
		auth := scram.Auth{Zid: c.Zid, User: c.Username, Pass: c.Password, Nonce: c.Nonce, IsToken: c.IsToken}
		if c.Mechanism == SASLScramSHA256 {
			return auth.AsSha256Mechanism()
		}
		return auth.AsSha512Mechanism()
	case SASLAWSMSKIAM:
		// Static keys from the config, else the standard AWS environment variables, read at each
		// authentication (parseConfig made sure one of them is there).
		return kaws.ManagedStreamingIAM(func(context.Context) (kaws.Auth, error) {
			auth := kaws.Auth{AccessKey: c.AccessKey, SecretKey: c.SecretKey, SessionToken: c.SessionToken, UserAgent: c.UserAgent}
			if auth.AccessKey == "" {
				auth.AccessKey, auth.SecretKey, auth.SessionToken = os.Getenv(envAWSAccessKey), os.Getenv(envAWSSecretKey), os.Getenv(envAWSSessionToken)
			}
			if auth.AccessKey == "" || auth.SecretKey == "" {
				return kaws.Auth{}, fmt.Errorf("%s.sasl aws_msk_iam: no credentials: set access_key and secret_key, or %s and %s",
					globalSection, envAWSAccessKey, envAWSSecretKey)
			}
			return auth, nil
		})
	default:
		return plain.Auth{Zid: c.Zid, User: c.Username, Pass: c.Password}.AsMechanism()
	}
}

// kgoLogger writes the client's warnings and errors to zap (and its info/debug lines when the
// logger is at debug level).
type kgoLogger struct{ log *zap.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Core().Enabled(zapcore.DebugLevel) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	fields := make([]zap.Field, 0, len(keyvals)/2+1)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fields = append(fields, zap.Any(fmt.Sprint(keyvals[i]), keyvals[i+1]))
	}
	switch level {
	case kgo.LogLevelError:
		l.log.Error("kafka client: "+msg, fields...)
	case kgo.LogLevelWarn:
		l.log.Warn("kafka client: "+msg, fields...)
	default:
		l.log.Debug("kafka client: "+msg, fields...)
	}
}
