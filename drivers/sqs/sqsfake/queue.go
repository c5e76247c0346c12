package sqsfake

import (
	"encoding/json"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Queue attribute names.
const (
	attrPolicy                 = "Policy"
	attrVisibilityTimeout      = "VisibilityTimeout"
	attrMaximumMessageSize     = "MaximumMessageSize"
	attrMessageRetentionPeriod = "MessageRetentionPeriod"
	attrNumMessages            = "ApproximateNumberOfMessages"
	attrNumNotVisible          = "ApproximateNumberOfMessagesNotVisible"
	attrNumDelayed             = "ApproximateNumberOfMessagesDelayed"
	attrCreatedTimestamp       = "CreatedTimestamp"
	attrLastModifiedTimestamp  = "LastModifiedTimestamp"
	attrQueueArn               = "QueueArn"
	attrDelaySeconds           = "DelaySeconds"
	attrReceiveWaitTime        = "ReceiveMessageWaitTimeSeconds"
	attrRedrivePolicy          = "RedrivePolicy"
	attrRedriveAllowPolicy     = "RedriveAllowPolicy"
	attrFifoQueue              = "FifoQueue"
	attrContentBasedDedup      = "ContentBasedDeduplication"
	attrKmsMasterKeyID         = "KmsMasterKeyId"
	attrKmsDataKeyReuse        = "KmsDataKeyReusePeriodSeconds"
	attrDeduplicationScope     = "DeduplicationScope"
	attrFifoThroughputLimit    = "FifoThroughputLimit"
	attrSqsManagedSse          = "SqsManagedSseEnabled"
)

// Limits and defaults documented for SQS.
const (
	defaultVisibility   = 30
	maxVisibility       = 43200 // 12 hours, also the limit of a message's total invisibility
	maxDelay            = 900
	defaultRetention    = 345600 // 4 days
	minRetention        = 60
	maxRetention        = 1209600 // 14 days
	defaultMaxSize      = 1048576 // 1 MiB
	minMaxSize          = 1024
	maxWaitTime         = 20
	maxBatchEntries     = 10
	maxMessageAttrs     = 10
	dedupWindow         = 5 * time.Minute
	deletedRecently     = 60 * time.Second
	purgeInterval       = 60 * time.Second
	maxReceiveCountHigh = 1000
)

var queueNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// attrSpec describes a settable queue attribute.
type attrSpec struct {
	fifoOnly   bool
	createOnly bool
	validate   func(v string) (string, bool) // returns the normalized value
}

func intRange(lo, hi int) func(string) (string, bool) {
	return func(v string) (string, bool) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < lo || n > hi {
			return "", false
		}
		return strconv.Itoa(n), true
	}
}

func boolValue(v string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return "true", true
	case "false":
		return "false", true
	}
	return "", false
}

func oneOf(values ...string) func(string) (string, bool) {
	return func(v string) (string, bool) {
		for _, ok := range values {
			if v == ok {
				return v, true
			}
		}
		return "", false
	}
}

func anyString(v string) (string, bool) { return v, true }

var settable = map[string]attrSpec{
	attrDelaySeconds:           {validate: intRange(0, maxDelay)},
	attrMaximumMessageSize:     {validate: intRange(minMaxSize, defaultMaxSize)},
	attrMessageRetentionPeriod: {validate: intRange(minRetention, maxRetention)},
	attrPolicy:                 {validate: anyString},
	attrReceiveWaitTime:        {validate: intRange(0, maxWaitTime)},
	attrVisibilityTimeout:      {validate: intRange(0, maxVisibility)},
	attrRedrivePolicy:          {validate: anyString}, // checked by setRedrive
	attrRedriveAllowPolicy:     {validate: anyString},
	attrKmsMasterKeyID:         {validate: anyString},
	attrKmsDataKeyReuse:        {validate: intRange(60, 86400)},
	attrSqsManagedSse:          {validate: boolValue},
	attrFifoQueue:              {createOnly: true, validate: boolValue},
	attrContentBasedDedup:      {fifoOnly: true, validate: boolValue},
	attrDeduplicationScope:     {fifoOnly: true, validate: oneOf("messageGroup", "queue")},
	attrFifoThroughputLimit:    {fifoOnly: true, validate: oneOf("perQueue", "perMessageGroupId")},
}

// readable lists the attributes GetQueueAttributes knows, in the order "All" returns them.
var readable = []string{
	attrPolicy, attrVisibilityTimeout, attrMaximumMessageSize, attrMessageRetentionPeriod,
	attrNumMessages, attrNumNotVisible, attrCreatedTimestamp, attrLastModifiedTimestamp, attrQueueArn,
	attrNumDelayed, attrDelaySeconds, attrReceiveWaitTime, attrRedrivePolicy, attrRedriveAllowPolicy,
	attrFifoQueue, attrContentBasedDedup, attrKmsMasterKeyID, attrKmsDataKeyReuse,
	attrDeduplicationScope, attrFifoThroughputLimit, attrSqsManagedSse,
}

// redrive is a parsed RedrivePolicy.
type redrive struct {
	target   string // dead-letter queue ARN
	maxCount int
}

// queue is one SQS queue. All fields are guarded by Server.mu.
type queue struct {
	name     string
	url      string
	arn      string
	fifo     bool
	attrs    map[string]string // settable attributes, normalized
	tags     map[string]string
	created  time.Time
	modified time.Time
	redrive  *redrive

	msgs      []*message          // in send order
	byID      map[string]*message // not deleted
	dedup     map[string]dedupEntry
	lastPurge time.Time
}

type dedupEntry struct {
	at        time.Time
	messageID string
	seq       string
}

func (s *Server) newQueue(name string, fifo bool, now time.Time) *queue {
	q := &queue{
		name:     name,
		url:      s.QueueURL(name),
		arn:      "arn:aws:sqs:" + s.region + ":" + s.account + ":" + name,
		fifo:     fifo,
		tags:     map[string]string{},
		created:  now,
		modified: now,
		byID:     map[string]*message{},
		dedup:    map[string]dedupEntry{},
		attrs: map[string]string{
			attrDelaySeconds:           "0",
			attrMaximumMessageSize:     strconv.Itoa(defaultMaxSize),
			attrMessageRetentionPeriod: strconv.Itoa(defaultRetention),
			attrReceiveWaitTime:        "0",
			attrVisibilityTimeout:      strconv.Itoa(defaultVisibility),
			attrSqsManagedSse:          "true",
		},
	}
	if fifo {
		q.attrs[attrFifoQueue] = "true"
		q.attrs[attrContentBasedDedup] = "false"
		q.attrs[attrDeduplicationScope] = "queue"
		q.attrs[attrFifoThroughputLimit] = "perQueue"
	}
	return q
}

func (q *queue) intAttr(name string) int {
	n, _ := strconv.Atoi(q.attrs[name])
	return n
}

func (q *queue) visibility() time.Duration {
	return time.Duration(q.intAttr(attrVisibilityTimeout)) * time.Second
}

// normalizeAttrs validates attributes for a queue (fifo tells its type) and returns them
// normalized. create allows the create-only attributes.
func (s *Server) normalizeAttrs(in map[string]string, fifo, create bool) (map[string]string, *apiError) {
	out := make(map[string]string, len(in))
	for name, v := range in {
		spec, ok := settable[name]
		if !ok || (spec.fifoOnly && !fifo) || (spec.createOnly && !create) {
			return nil, errInvalidAttributeName(name)
		}
		norm, ok := spec.validate(v)
		if !ok {
			return nil, errInvalidAttributeValue(name, v)
		}
		if name == attrRedrivePolicy {
			if _, err := s.parseRedrive(norm, fifo); err != nil {
				return nil, err
			}
		}
		out[name] = norm
	}
	return out, nil
}

// parseRedrive checks a RedrivePolicy: {"deadLetterTargetArn": "...", "maxReceiveCount": n} where
// the target exists and has the queue's type. An empty policy removes it. Call with mu held.
func (s *Server) parseRedrive(v string, fifo bool) (*redrive, *apiError) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var raw struct {
		Target   string          `json:"deadLetterTargetArn"`
		MaxCount json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(v), &raw); err != nil || raw.Target == "" {
		return nil, errInvalidParameterValue("Value %s for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a valid JSON map.", v)
	}
	count, err := strconv.Atoi(strings.Trim(string(raw.MaxCount), `"`))
	if err != nil || count < 1 || count > maxReceiveCountHigh {
		return nil, errInvalidParameterValue("Value %s for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: %s, valid values are from 1 to 1000 both inclusive.", v, raw.MaxCount)
	}
	dlq := s.queueByArn(raw.Target)
	if dlq == nil {
		return nil, errInvalidParameterValue("Value %s for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.", v)
	}
	if dlq.fifo != fifo {
		return nil, errInvalidParameterValue("Value %s for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source.", v)
	}
	return &redrive{target: raw.Target, maxCount: count}, nil
}

func (s *Server) queueByArn(arn string) *queue {
	for _, q := range s.queues {
		if q.arn == arn {
			return q
		}
	}
	return nil
}

// applyAttrs sets already normalized attributes. Call with mu held.
func (s *Server) applyAttrs(q *queue, attrs map[string]string, now time.Time) {
	for k, v := range attrs {
		if k == attrRedrivePolicy {
			q.redrive, _ = s.parseRedrive(v, q.fifo)
			if v == "" {
				delete(q.attrs, k)
				continue
			}
		}
		q.attrs[k] = v
	}
	if len(attrs) > 0 {
		q.modified = now
	}
}

// lookup resolves a QueueUrl (http://host/<account>/<name>, or a bare name) to a queue.
func (s *Server) lookup(url string) (*queue, *apiError) {
	if url == "" {
		return nil, errMissingParameter("QueueUrl")
	}
	name := url
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		name = url[i+1:]
	}
	q, ok := s.queues[name]
	if !ok {
		return nil, errNonExistentQueue()
	}
	return q, nil
}

// counts returns the visible, in-flight and delayed messages at now, dropping expired ones.
func (q *queue) counts(now time.Time) (visible, inflight, delayed int) {
	q.expire(now)
	for _, m := range q.msgs {
		switch {
		case m.inflight && m.visibleAt.After(now):
			inflight++
		case m.visibleAt.After(now) && !m.everReceived():
			delayed++
		case m.visibleAt.After(now):
			// made invisible by ChangeMessageVisibility after its visibility expired: SQS counts it
			// as not visible
			inflight++
		default:
			visible++
		}
	}
	return visible, inflight, delayed
}

// expire drops the messages older than the retention period.
func (q *queue) expire(now time.Time) {
	retention := time.Duration(q.intAttr(attrMessageRetentionPeriod)) * time.Second
	kept := q.msgs[:0]
	for _, m := range q.msgs {
		if now.Sub(m.sent) >= retention {
			delete(q.byID, m.id)
			continue
		}
		kept = append(kept, m)
	}
	for i := len(kept); i < len(q.msgs); i++ {
		q.msgs[i] = nil
	}
	q.msgs = kept
	for k, e := range q.dedup {
		if now.Sub(e.at) >= dedupWindow {
			delete(q.dedup, k)
		}
	}
}

// remove deletes a message from the queue.
func (q *queue) remove(m *message) {
	delete(q.byID, m.id)
	for i, x := range q.msgs {
		if x == m {
			copy(q.msgs[i:], q.msgs[i+1:])
			q.msgs[len(q.msgs)-1] = nil
			q.msgs = q.msgs[:len(q.msgs)-1]
			return
		}
	}
}

// nextEvent is the earliest future moment a message of q becomes visible (zero if none).
func (q *queue) nextEvent(now time.Time) time.Time {
	var next time.Time
	for _, m := range q.msgs {
		if m.visibleAt.After(now) && (next.IsZero() || m.visibleAt.Before(next)) {
			next = m.visibleAt
		}
	}
	return next
}

func sortedNames(m map[string]*queue) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
