package sqs

import (
	"math"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

// Config keys: the pipeline `config:` section (or the flat Declare map) and the global `sqs:`
// section.
const (
	keyQueue                  = "queue"
	keyPriority               = "priority"
	keyPrefetch               = "prefetch"
	keyMaxInFlight            = "max_messages_in_flight"
	keyVisibilityTimeout      = "visibility_timeout"
	keyErrorVisibilityTimeout = "error_visibility_timeout"
	keyRetainFailedJobs       = "retain_failed_jobs"
	keyWaitTimeSeconds        = "wait_time_seconds"
	// keyWaitTime is the name stock's Declare reads (wait_time_seconds in .rr.yaml); both work in both.
	keyWaitTime             = "wait_time"
	keyMessageGroupID       = "message_group_id"
	keySkipQueueDeclaration = "skip_queue_declaration"
	keyAttributes           = "attributes"
	keyTags                 = "tags"

	keyKey          = "key"
	keySecret       = "secret"
	keyRegion       = "region"
	keySessionToken = "session_token"
	keyEndpoint     = "endpoint"

	// globalSection is the top-level .rr.yaml section shared by every sqs pipeline.
	globalSection = "sqs"
)

// Defaults and limits (the stock driver's, and SQS's own).
const (
	DefaultQueue          = "default"
	DefaultPriority int64 = 10
	DefaultPrefetch       = 1
	// MaxPrefetch is SQS's MaxNumberOfMessages limit; larger prefetch values are clamped to it.
	MaxPrefetch = 10
	// MaxDelay is the longest SQS DelaySeconds (15 minutes).
	MaxDelay = 900
	// MaxVisibilityTimeout is SQS's 12-hour limit.
	MaxVisibilityTimeout = 43200
	// MaxWaitTime is SQS's long-poll limit.
	MaxWaitTime    = 20
	maxInFlightCap = 100_000
	fifoSuffix     = ".fifo"
)

var (
	queueNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)
	groupIDRe   = regexp.MustCompile("^[\\x21-\\x7e]{1,128}$")
)

// queueAttributes are the CreateQueue attributes, by lower-case name (attribute names are matched
// case-insensitively, as stock does since roadrunner#994).
var queueAttributes = func() map[string]string {
	names := []string{
		"DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "Policy",
		"ReceiveMessageWaitTimeSeconds", "VisibilityTimeout", "RedrivePolicy", "RedriveAllowPolicy",
		"KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled", "FifoQueue",
		"ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = n
	}
	return m
}()

// attributeValues are the enumerated attribute values, matched case-insensitively.
var attributeValues = map[string][]string{
	"DeduplicationScope":  {"messageGroup", "queue"},
	"FifoThroughputLimit": {"perQueue", "perMessageGroupId"},
}

// Config is the resolved configuration of one sqs pipeline.
type Config struct {
	// Key, Secret and SessionToken are static credentials; empty means the default AWS chain.
	Key, Secret, SessionToken string
	// Region is the AWS region; empty means the default chain's (AWS_REGION, profile...).
	Region string
	// Endpoint overrides the SQS endpoint (LocalStack, ElasticMQ, a fake).
	Endpoint string

	// Queue is the SQS queue name; FIFO queues end in ".fifo".
	Queue string
	// FIFO is true for a queue name ending in ".fifo".
	FIFO bool
	// Priority is the pipeline priority, inherited by jobs pushed with priority 0.
	Priority int64
	// Prefetch is MaxNumberOfMessages per ReceiveMessage (1..10).
	Prefetch int
	// MaxInFlight caps the received jobs of this pipeline not yet acked, nacked or requeued.
	MaxInFlight int
	// VisibilityTimeout (seconds) is sent with ReceiveMessage; 0 uses the queue's own.
	VisibilityTimeout int
	// ErrorVisibilityTimeout (seconds) is set on a failed job with RetainFailedJobs.
	ErrorVisibilityTimeout int
	// RetainFailedJobs keeps a failed job's message (plain Nack) instead of re-sending a copy.
	RetainFailedJobs bool
	// WaitTime is WaitTimeSeconds of ReceiveMessage (long polling); 0 uses the queue's own.
	WaitTime int
	// MessageGroupID is the MessageGroupId of pushes to a FIFO queue.
	MessageGroupID string
	// SkipDeclare looks the queue up (GetQueueUrl) instead of creating it.
	SkipDeclare bool
	// Attributes are the CreateQueue attributes (canonical names).
	Attributes map[string]string
	// Tags are the CreateQueue tags.
	Tags map[string]string
}

// parseConfig builds a pipeline's Config from o (its settings: typed from .rr.yaml, strings from
// Declare) and global (the `sqs:` section; a key set in the pipeline wins). It returns warnings for
// values it adjusted. Errors name the pipeline, the key and the value.
func parseConfig(o, global *driverkit.Options) (Config, []string, error) {
	var warn []string
	str := func(key string) string { return o.String(key, global.String(key, "")) }
	conf := Config{
		Key:            str(keyKey),
		Secret:         str(keySecret),
		SessionToken:   str(keySessionToken),
		Region:         str(keyRegion),
		Endpoint:       str(keyEndpoint),
		Queue:          o.String(keyQueue, DefaultQueue),
		MessageGroupID: o.String(keyMessageGroupID, ""),
	}
	if (conf.Key == "") != (conf.Secret == "") {
		return Config{}, nil, o.Errorf("%s.%s and %s.%s must be set together (or neither, for the default AWS credential chain)",
			globalSection, keyKey, globalSection, keySecret)
	}
	if conf.Endpoint != "" {
		u, err := url.Parse(conf.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Config{}, nil, o.Errorf("%s.%s must be an http(s) URL like http://127.0.0.1:4566, got %q", globalSection, keyEndpoint, conf.Endpoint)
		}
	}

	base, fifo := strings.CutSuffix(conf.Queue, fifoSuffix)
	if !queueNameRe.MatchString(base) || len(conf.Queue) > 80 {
		return Config{}, nil, o.Errorf("%s must be an SQS queue name: 1 to 80 letters, digits, hyphens or underscores, with a .fifo suffix for FIFO queues, got %q", keyQueue, conf.Queue)
	}
	conf.FIFO = fifo
	if conf.MessageGroupID != "" && !groupIDRe.MatchString(conf.MessageGroupID) {
		return Config{}, nil, o.Errorf("%s must be 1 to 128 letters, digits or punctuation characters, got %q", keyMessageGroupID, conf.MessageGroupID)
	}

	var err error
	if conf.Priority, err = o.IntOrDefault(keyPriority, DefaultPriority, math.MaxInt64); err != nil {
		return Config{}, nil, err
	}
	prefetch, err := o.IntOrDefault(keyPrefetch, DefaultPrefetch, math.MaxInt32)
	if err != nil {
		return Config{}, nil, err
	}
	if prefetch > MaxPrefetch {
		warn = append(warn, "prefetch "+strconv.FormatInt(prefetch, 10)+" is above the SQS limit of 10 messages per receive: using 10 (set max_messages_in_flight to hold more jobs at once)")
		prefetch = MaxPrefetch
	}
	conf.Prefetch = int(prefetch)
	inFlight, err := o.IntOrDefault(keyMaxInFlight, prefetch, maxInFlightCap)
	if err != nil {
		return Config{}, nil, err
	}
	conf.MaxInFlight = int(inFlight)
	vt, err := o.Int(keyVisibilityTimeout, 0, 0, MaxVisibilityTimeout)
	if err != nil {
		return Config{}, nil, err
	}
	conf.VisibilityTimeout = int(vt)
	evt, err := o.Int(keyErrorVisibilityTimeout, 0, 0, MaxVisibilityTimeout)
	if err != nil {
		return Config{}, nil, err
	}
	conf.ErrorVisibilityTimeout = int(evt)
	if conf.RetainFailedJobs, err = o.Bool(keyRetainFailedJobs, false); err != nil {
		return Config{}, nil, err
	}
	waitKey := keyWaitTimeSeconds
	if _, set := o.Raw(keyWaitTimeSeconds); !set {
		waitKey = keyWaitTime
	}
	wait, err := o.Int(waitKey, 0, 0, MaxWaitTime)
	if err != nil {
		return Config{}, nil, err
	}
	conf.WaitTime = int(wait)
	if conf.SkipDeclare, err = o.Bool(keySkipQueueDeclaration, false); err != nil {
		return Config{}, nil, err
	}

	rawAttrs, err := o.StringMap(keyAttributes)
	if err != nil {
		return Config{}, nil, err
	}
	if conf.Attributes, err = normalizeAttributes(o, rawAttrs); err != nil {
		return Config{}, nil, err
	}
	switch v, set := conf.Attributes["FifoQueue"]; {
	case fifo && !set:
		conf.Attributes["FifoQueue"] = "true"
	case fifo && v != "true":
		return Config{}, nil, o.Errorf("%s.FifoQueue must be true for the FIFO queue %q, got %q", keyAttributes, conf.Queue, v)
	case !fifo && set && v == "true":
		return Config{}, nil, o.Errorf("%s.FifoQueue is true, so %s must end in .fifo, got %q", keyAttributes, keyQueue, conf.Queue)
	case !fifo && set:
		delete(conf.Attributes, "FifoQueue") // "false" is the default and SQS rejects it on standard queues
	}
	if conf.Tags, err = o.StringMap(keyTags); err != nil {
		return Config{}, nil, err
	}
	return conf, warn, nil
}

// normalizeAttributes maps attribute names (any case) to SQS's, and enumerated and boolean values
// to the spelling SQS accepts. Unknown names are an error listing the known ones.
func normalizeAttributes(o *driverkit.Options, in map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, v := range in {
		name, ok := queueAttributes[strings.ToLower(strings.TrimSpace(k))]
		if !ok {
			known := make([]string, 0, len(queueAttributes))
			for _, n := range queueAttributes {
				known = append(known, n)
			}
			sort.Strings(known)
			return nil, o.Errorf("%s: unknown SQS queue attribute %q (known: %s)", keyAttributes, k, strings.Join(known, ", "))
		}
		v = strings.TrimSpace(v)
		switch name {
		case "FifoQueue", "ContentBasedDeduplication", "SqsManagedSseEnabled":
			lv := strings.ToLower(v)
			if lv != "true" && lv != "false" {
				return nil, o.Errorf("%s.%s must be true or false, got %q", keyAttributes, name, v)
			}
			v = lv
		}
		if values, ok := attributeValues[name]; ok {
			matched := false
			for _, want := range values {
				if strings.EqualFold(v, want) {
					v, matched = want, true
				}
			}
			if !matched {
				return nil, o.Errorf("%s.%s must be one of %s, got %q", keyAttributes, name, strings.Join(values, ", "), v)
			}
		}
		out[name] = v
	}
	return out, nil
}
