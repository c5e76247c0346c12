package googlepubsub

import (
	"math"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Config keys: pipeline `config:` section (or the flat Declare map), and the global section.
const (
	keyProjectID           = "project_id"
	keyTopic               = "topic"
	keySubscription        = "subscription"
	keyDeadLetterTopic     = "dead_letter_topic"
	keyMaxDeliveryAttempts = "max_delivery_attempts"
	keyPriority            = "priority"
	keyPrefetch            = "prefetch"
	keyAckDeadline         = "ack_deadline"
	keyEndpoint            = "endpoint"
	keyInsecure            = "insecure"

	// globalSection is the top-level .rr.yaml section shared by every google_pub_sub pipeline.
	globalSection = "google_pub_sub"

	// emulatorEnv is the variable the Pub/Sub client library reads to talk to an emulator
	// (plaintext, no authentication).
	emulatorEnv = "PUBSUB_EMULATOR_HOST"
)

// Defaults (the stock driver's where it has the key).
const (
	// DefaultEndpoint is the stock default of google_pub_sub.endpoint (the emulator's address).
	DefaultEndpoint = "127.0.0.1:8085"
	// DefaultPriority is the pipeline priority when none is configured (lower = served first).
	DefaultPriority int64 = 10
	// DefaultPrefetch is how many of the pipeline's messages this process holds at once (in the
	// shared priority queue or at a worker); delayed messages waiting for their time do not count.
	DefaultPrefetch = 10
	// DefaultMaxDeliveryAttempts applies when dead_letter_topic is set (stock).
	DefaultMaxDeliveryAttempts = 10
	// DefaultAckDeadline is the ack deadline of the subscriptions the driver creates (stock: 480 s)
	// and the lease every extension renews.
	DefaultAckDeadline = 480 * time.Second

	minAckDeadline          = 10 * time.Second  // Pub/Sub limits
	maxAckDeadline          = 600 * time.Second // Pub/Sub limits
	minMaxDeliveryAttempts  = 5                 // Pub/Sub limits
	maxMaxDeliveryAttempts  = 100               // Pub/Sub limits
	maxPrefetch             = 100_000
	subscriptionPrefix      = "rr-"
	maxResourceNameLen      = 255
	minResourceNameLen      = 3
	reservedResourcePrefix  = "goog"
	resourceNameDescription = "3 to 255 characters: letters, digits and - _ . ~ + %, starting with a letter, not starting with \"goog\""
)

// resourceRe is what Pub/Sub accepts as a topic or subscription ID.
var resourceRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$`)

// Config is the resolved configuration of one google_pub_sub pipeline.
type Config struct {
	// Endpoint is the Pub/Sub gRPC endpoint (host:port).
	Endpoint string
	// EndpointFromEnv is true when Endpoint came from PUBSUB_EMULATOR_HOST (no endpoint key was
	// set); the client library then connects in plaintext without authentication.
	EndpointFromEnv bool
	// Insecure disables TLS, authentication and telemetry (the emulator).
	Insecure bool
	// ProjectID is the Google Cloud project.
	ProjectID string
	// Topic is the topic jobs are published to.
	Topic string
	// Subscription is the subscription consumed (created on the topic when missing).
	Subscription string
	// DeadLetterTopic receives messages delivered MaxDeliveryAttempts times ("" = none).
	DeadLetterTopic string
	// MaxDeliveryAttempts of the dead-letter policy (only with DeadLetterTopic).
	MaxDeliveryAttempts int
	// Priority is the pipeline priority, inherited by jobs pushed with priority 0.
	Priority int64
	// Prefetch caps the messages of this pipeline held by this process (queued or at a worker).
	Prefetch int
	// AckDeadline is the deadline of a created subscription and of every lease extension.
	AckDeadline time.Duration
}

// parseConfig builds the Config of a pipeline from o (its settings: typed from .rr.yaml, strings
// from Declare) and global (the `google_pub_sub:` section). A key set in the pipeline wins over
// the same key in the global section. Errors name the pipeline, the key and the value.
func parseConfig(pipeline string, o, global *driverkit.Options) (Config, error) {
	conf := Config{}

	// endpoint and insecure: pipeline, then global, then PUBSUB_EMULATOR_HOST, then the default.
	conf.Endpoint = o.String(keyEndpoint, global.String(keyEndpoint, ""))
	if conf.Endpoint == "" {
		if env := strings.TrimSpace(os.Getenv(emulatorEnv)); env != "" {
			conf.Endpoint, conf.EndpointFromEnv = env, true
		} else {
			conf.Endpoint = DefaultEndpoint
		}
	}
	var err error
	if _, ok := o.Raw(keyInsecure); ok {
		conf.Insecure, err = o.Bool(keyInsecure, false)
	} else {
		conf.Insecure, err = global.Bool(keyInsecure, false)
	}
	if err != nil {
		return Config{}, err
	}

	conf.ProjectID = o.String(keyProjectID, global.String(keyProjectID, ""))
	switch {
	case conf.ProjectID == "":
		return Config{}, o.Errorf("%s is required", keyProjectID)
	case strings.ContainsAny(conf.ProjectID, "/ \t\r\n"):
		return Config{}, o.Errorf("%s must be a project ID without '/' or spaces, got %q", keyProjectID, conf.ProjectID)
	}

	conf.Topic = o.String(keyTopic, "")
	if conf.Topic == "" {
		return Config{}, o.Errorf("%s is required", keyTopic)
	}
	if err := checkResourceName(o, keyTopic, conf.Topic); err != nil {
		return Config{}, err
	}

	conf.Subscription = o.String(keySubscription, "")
	if conf.Subscription == "" {
		conf.Subscription = DefaultSubscription(pipeline)
	} else if err := checkResourceName(o, keySubscription, conf.Subscription); err != nil {
		return Config{}, err
	}

	conf.DeadLetterTopic = o.String(keyDeadLetterTopic, "")
	if conf.DeadLetterTopic != "" {
		if err := checkResourceName(o, keyDeadLetterTopic, conf.DeadLetterTopic); err != nil {
			return Config{}, err
		}
		if conf.DeadLetterTopic == conf.Topic {
			return Config{}, o.Errorf("%s must differ from %s, got %q for both", keyDeadLetterTopic, keyTopic, conf.Topic)
		}
		// 0 means the default, as with stock.
		n, err := o.IntOrDefault(keyMaxDeliveryAttempts, DefaultMaxDeliveryAttempts, maxMaxDeliveryAttempts)
		if err != nil {
			return Config{}, err
		}
		if n < minMaxDeliveryAttempts {
			return Config{}, o.Errorf("%s must be >= %d (a Pub/Sub limit), got %d", keyMaxDeliveryAttempts, minMaxDeliveryAttempts, n)
		}
		conf.MaxDeliveryAttempts = int(n)
	}

	if conf.Priority, err = o.IntOrDefault(keyPriority, DefaultPriority, math.MaxInt64); err != nil {
		return Config{}, err
	}
	prefetch, err := o.IntOrDefault(keyPrefetch, DefaultPrefetch, maxPrefetch)
	if err != nil {
		return Config{}, err
	}
	conf.Prefetch = int(prefetch)

	if conf.AckDeadline, err = o.DurationMin(keyAckDeadline, DefaultAckDeadline, minAckDeadline); err != nil {
		return Config{}, err
	}
	if conf.AckDeadline > maxAckDeadline {
		return Config{}, o.Errorf("%s must be at most %s (a Pub/Sub limit), got %s", keyAckDeadline, maxAckDeadline, conf.AckDeadline)
	}
	// Pub/Sub takes whole seconds.
	conf.AckDeadline = conf.AckDeadline.Round(time.Second)
	return conf, nil
}

func checkResourceName(o *driverkit.Options, key, name string) error {
	if !validResourceName(name) {
		return o.Errorf("%s must be a Pub/Sub ID (%s), got %q", key, resourceNameDescription, name)
	}
	return nil
}

func validResourceName(name string) bool {
	return resourceRe.MatchString(name) && !strings.HasPrefix(strings.ToLower(name), reservedResourcePrefix)
}

// DefaultSubscription is the subscription of a pipeline without a `subscription` key: the pipeline
// name (as the stock driver names it), or, when that is not a valid Pub/Sub ID (too short, not
// starting with a letter, other characters), "rr-" followed by the name with every other byte
// percent-encoded. Either way it depends only on the name, so a restarted pipeline resumes its
// subscription.
func DefaultSubscription(pipeline string) string {
	if validResourceName(pipeline) {
		return pipeline
	}
	var b strings.Builder
	b.WriteString(subscriptionPrefix)
	for i := 0; i < len(pipeline); i++ {
		c := pipeline[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("-_.~+", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteString("%")
			b.WriteString(strings.ToUpper(string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])))
		}
	}
	s := b.String()
	for len(s) < minResourceNameLen {
		s += "_"
	}
	if len(s) > maxResourceNameLen {
		s = s[:maxResourceNameLen]
	}
	return s
}
