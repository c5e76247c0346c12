package nats

import (
	"math"
	"strings"
	"time"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Config keys (pipeline `config:` section, or the flat Declare map) and the global section.
const (
	keyAddr               = "addr"
	keySubject            = "subject"
	keyStream             = "stream"
	keyPrefetch           = "prefetch"
	keyPriority           = "priority"
	keyDeleteAfterAck     = "delete_after_ack"
	keyDeliverNew         = "deliver_new"
	keyRateLimit          = "rate_limit"
	keyDeleteStreamOnStop = "delete_stream_on_stop"
	keyAckWait            = "ack_wait"

	// globalSection is the top-level .rr.yaml section shared by every nats pipeline.
	globalSection = "nats"
)

// Defaults (the stock driver's, except rate_limit: see DefaultRateLimit).
const (
	// DefaultAddr is the NATS server URL when neither nats.addr nor the pipeline sets one.
	DefaultAddr = "nats://127.0.0.1:4222"
	// DefaultSubject is the subject jobs are published to and consumed from.
	DefaultSubject = "default"
	// DefaultStream is the JetStream stream holding the subject.
	DefaultStream = "default-stream"
	// DefaultPriority is the pipeline priority (lower runs first).
	DefaultPriority int64 = 10
	// DefaultPrefetch is the prefetch of a pipeline from .rr.yaml.
	DefaultPrefetch = 10
	// DefaultDeclaredPrefetch is the prefetch of a pipeline created by jobs.Declare (stock: 100).
	DefaultDeclaredPrefetch = 100
	// DefaultRateLimit is 0: no limit. The stock driver documents 1000 but never applied it; applying
	// 1000 bits/s would throttle every pipeline to 125 bytes of jobs per second.
	DefaultRateLimit = 0
	// DefaultAckWait is how long the server waits for an ack (or a progress signal) before it
	// redelivers a job.
	DefaultAckWait = 30 * time.Second

	minAckWait  = 500 * time.Millisecond
	maxPrefetch = 100_000
	// maxNameLen bounds stream names (the server allows more, but names go into API subjects).
	maxNameLen = 128
)

// Config is the resolved configuration of one nats pipeline.
type Config struct {
	// Addr is the NATS server URL (comma-separated URLs for a cluster).
	Addr string
	// Subject is where jobs are published and what the consumer filters on.
	Subject string
	// Stream is the JetStream stream that stores Subject (and the delayed subject).
	Stream string
	// Priority is the pipeline priority, inherited by jobs pushed with priority 0.
	Priority int64
	// Prefetch is the consumer's MaxAckPending and the most jobs this process holds at once.
	Prefetch int
	// DeleteAfterAck removes a job's message from the stream once it was acked, terminated or
	// requeued as a new message.
	DeleteAfterAck bool
	// DeliverNew makes a newly created consumer start with the messages published after it.
	DeliverNew bool
	// RateLimit caps the consumption rate in bits per second of job data (0 = no limit).
	RateLimit uint64
	// DeleteStreamOnStop deletes the stream when the pipeline stops.
	DeleteStreamOnStop bool
	// AckWait is the consumer's AckWait; running jobs are extended every AckWait/3.
	AckWait time.Duration
}

// parseConfig builds the Config of a pipeline from o (its settings: typed from .rr.yaml, strings
// from Declare) and global (the `nats:` section, whose addr is the default for every pipeline).
// declared selects the Declare default of prefetch. Errors name the pipeline, the key and the value.
func parseConfig(o, global *driverkit.Options, declared bool) (Config, error) {
	var conf Config
	var err error
	conf.Addr = o.String(keyAddr, global.String(keyAddr, DefaultAddr))
	if strings.ContainsAny(conf.Addr, " \t\r\n") {
		return Config{}, o.Errorf("%s must be a NATS URL like nats://127.0.0.1:4222, got %q", keyAddr, conf.Addr)
	}

	conf.Subject = o.String(keySubject, DefaultSubject)
	if err := validSubject(conf.Subject); err != nil {
		return Config{}, o.Errorf("%s %v, got %q", keySubject, err, conf.Subject)
	}
	if strings.HasSuffix(conf.Subject, "."+delayedToken) {
		return Config{}, o.Errorf("%s must not end with .%s (reserved for delayed jobs), got %q", keySubject, delayedToken, conf.Subject)
	}
	conf.Stream = o.String(keyStream, DefaultStream)
	if err := validStreamName(conf.Stream); err != nil {
		return Config{}, o.Errorf("%s %v, got %q", keyStream, err, conf.Stream)
	}

	// 0 means the default for priority and prefetch, as with stock.
	if conf.Priority, err = o.IntOrDefault(keyPriority, DefaultPriority, math.MaxInt64); err != nil {
		return Config{}, err
	}
	defPrefetch := int64(DefaultPrefetch)
	if declared {
		defPrefetch = DefaultDeclaredPrefetch
	}
	prefetch, err := o.IntOrDefault(keyPrefetch, defPrefetch, maxPrefetch)
	if err != nil {
		return Config{}, err
	}
	conf.Prefetch = int(prefetch)

	if conf.DeleteAfterAck, err = o.Bool(keyDeleteAfterAck, false); err != nil {
		return Config{}, err
	}
	if conf.DeliverNew, err = o.Bool(keyDeliverNew, false); err != nil {
		return Config{}, err
	}
	if conf.DeleteStreamOnStop, err = o.Bool(keyDeleteStreamOnStop, false); err != nil {
		return Config{}, err
	}
	rate, err := o.Int(keyRateLimit, DefaultRateLimit, 0, math.MaxInt64)
	if err != nil {
		return Config{}, err
	}
	conf.RateLimit = uint64(rate) //nolint:gosec // >= 0
	if conf.AckWait, err = o.DurationMin(keyAckWait, DefaultAckWait, minAckWait); err != nil {
		return Config{}, err
	}
	return conf, nil
}

// validSubject accepts a literal NATS subject: dot-separated non-empty tokens without wildcards or
// whitespace. Errors start with "must", to follow the key's name.
func validSubject(s string) error {
	if s == "" {
		return errMust("must not be empty")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return errMust("must not contain whitespace")
	}
	for _, tok := range strings.Split(s, ".") {
		switch tok {
		case "":
			return errMust("must be dot-separated non-empty tokens (no leading, trailing or double dots)")
		case "*", ">":
			return errMust("must be a literal subject without the wildcards * and >")
		}
	}
	return nil
}

// validStreamName accepts what JetStream accepts as a stream name.
func validStreamName(s string) error {
	if s == "" {
		return errMust("must not be empty")
	}
	if len(s) > maxNameLen {
		return errMust("must be at most 128 characters")
	}
	if strings.ContainsAny(s, " \t\r\n.*>/\\") {
		return errMust("must not contain whitespace or any of . * > / \\")
	}
	return nil
}

type mustError string

func (e mustError) Error() string { return string(e) }

func errMust(s string) error { return mustError(s) }
