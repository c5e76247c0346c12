package sqsfake

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ---- requests ----

// queueRequest is the part of every request on one queue: the queue's URL. Request types embed it,
// and encoding/json fills the promoted field.
type queueRequest struct {
	QueueURL string `json:"QueueUrl"`
}

func (r *queueRequest) queueURL() string { return r.QueueURL }

// validator is a request with checks that need no queue. onQueue runs them before taking the lock,
// so that they fail before a missing or unknown queue does.
type validator interface{ validate() *apiError }

// onQueue decodes an action's request, validates it, and runs fn on the queue it names, with the
// server's lock held.
func onQueue[T any, PT interface {
	*T
	queueURL() string
}](s *Server, body []byte, fn func(in PT, q *queue) (any, *apiError)) (any, *apiError) {
	in := PT(new(T))
	if err := decode(body, in); err != nil {
		return nil, err
	}
	if v, ok := any(in).(validator); ok {
		if aerr := v.validate(); aerr != nil {
			return nil, aerr
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, aerr := s.lookup(in.queueURL())
	if aerr != nil {
		return nil, aerr
	}
	return fn(in, q)
}

// ---- queues ----

func (s *Server) createQueue(_ *http.Request, body []byte) (any, *apiError) {
	var in struct {
		QueueName  string
		Attributes map[string]string
		Tags       map[string]string `json:"tags"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.QueueName == "" {
		return nil, errMissingParameter("QueueName")
	}
	fifo := false
	if v, ok := in.Attributes[attrFifoQueue]; ok {
		b, valid := boolValue(v)
		if !valid {
			return nil, errInvalidAttributeValue(attrFifoQueue, v)
		}
		fifo = b == "true"
	}
	base, hasSuffix := strings.CutSuffix(in.QueueName, ".fifo")
	switch {
	case fifo && (!hasSuffix || !queueNameRe.MatchString(base) || len(in.QueueName) > 80):
		return nil, errInvalidParameterValue("The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.")
	case !fifo && !queueNameRe.MatchString(in.QueueName):
		return nil, errInvalidParameterValue("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	attrs, aerr := s.normalizeAttrs(in.Attributes, fifo, true)
	if aerr != nil {
		return nil, aerr
	}
	if q, ok := s.queues[in.QueueName]; ok {
		for k, v := range attrs {
			if q.attrs[k] != v {
				return nil, errQueueNameExists(k)
			}
		}
		return map[string]string{"QueueUrl": q.url}, nil
	}
	if at, ok := s.deleted[in.QueueName]; ok && now.Sub(at) < deletedRecently {
		return nil, errQueueDeletedRecently(in.QueueName)
	}
	q := s.newQueue(in.QueueName, fifo, now)
	s.applyAttrs(q, attrs, now)
	for k, v := range in.Tags {
		q.tags[k] = v
	}
	s.queues[q.name] = q
	delete(s.deleted, q.name)
	return map[string]string{"QueueUrl": q.url}, nil
}

func (s *Server) getQueueURL(_ *http.Request, body []byte) (any, *apiError) {
	var in struct{ QueueName string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.QueueName == "" {
		return nil, errMissingParameter("QueueName")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[in.QueueName]
	if !ok {
		return nil, errNonExistentQueue()
	}
	return map[string]string{"QueueUrl": q.url}, nil
}

type getQueueAttributesRequest struct {
	queueRequest
	AttributeNames []string
}

func (s *Server) getQueueAttributes(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(in *getQueueAttributesRequest, q *queue) (any, *apiError) {
		want, aerr := wantedAttrs(in.AttributeNames)
		if aerr != nil {
			return nil, aerr
		}
		visible, inflight, delayed := q.counts(s.now())
		out := map[string]string{}
		for name := range want {
			switch name {
			case attrNumMessages:
				out[name] = strconv.Itoa(visible)
			case attrNumNotVisible:
				out[name] = strconv.Itoa(inflight)
			case attrNumDelayed:
				out[name] = strconv.Itoa(delayed)
			case attrCreatedTimestamp:
				out[name] = strconv.FormatInt(q.created.Unix(), 10)
			case attrLastModifiedTimestamp:
				out[name] = strconv.FormatInt(q.modified.Unix(), 10)
			case attrQueueArn:
				out[name] = q.arn
			default:
				if v, ok := q.attrs[name]; ok {
					out[name] = v
				}
			}
		}
		if len(out) == 0 {
			return struct{}{}, nil
		}
		return map[string]any{"Attributes": out}, nil
	})
}

// wantedAttrs resolves GetQueueAttributes' AttributeNames ("All" standing for every readable one).
func wantedAttrs(names []string) (map[string]bool, *apiError) {
	want := map[string]bool{}
	for _, n := range names {
		if n == "All" {
			for _, r := range readable {
				want[r] = true
			}
			continue
		}
		if !isReadable(n) {
			return nil, errInvalidAttributeName(n)
		}
		want[n] = true
	}
	return want, nil
}

func isReadable(name string) bool {
	for _, r := range readable {
		if r == name {
			return true
		}
	}
	return false
}

type setQueueAttributesRequest struct {
	queueRequest
	Attributes map[string]string
}

func (s *Server) setQueueAttributes(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(in *setQueueAttributesRequest, q *queue) (any, *apiError) {
		attrs, aerr := s.normalizeAttrs(in.Attributes, q.fifo, false)
		if aerr != nil {
			return nil, aerr
		}
		s.applyAttrs(q, attrs, s.now())
		s.wakeLocked()
		return nil, nil
	})
}

func (s *Server) deleteQueue(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(_ *queueRequest, q *queue) (any, *apiError) {
		delete(s.queues, q.name)
		s.deleted[q.name] = s.now()
		s.wakeLocked()
		return nil, nil
	})
}

func (s *Server) listQueues(_ *http.Request, body []byte) (any, *apiError) {
	var in struct {
		QueueNamePrefix string
		NextToken       string
		MaxResults      *int
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	limit := 1000
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 1000 {
			return nil, errInvalidParameterValue("Value %d for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000.", *in.MaxResults)
		}
		limit = *in.MaxResults
	}
	after := ""
	if in.NextToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(in.NextToken)
		if err != nil {
			return nil, errInvalidParameterValue("Invalid NextToken value.")
		}
		after = string(b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var urls []string
	next := ""
	for _, name := range sortedNames(s.queues) {
		if !strings.HasPrefix(name, in.QueueNamePrefix) || (after != "" && name <= after) {
			continue
		}
		if len(urls) == limit {
			if in.MaxResults != nil {
				next = base64.RawURLEncoding.EncodeToString([]byte(urls[len(urls)-1][strings.LastIndexByte(urls[len(urls)-1], '/')+1:]))
			}
			break
		}
		urls = append(urls, s.queues[name].url)
	}
	out := map[string]any{}
	if len(urls) > 0 {
		out["QueueUrls"] = urls
	}
	if next != "" {
		out["NextToken"] = next
	}
	return out, nil
}

type tagQueueRequest struct {
	queueRequest
	Tags map[string]string
}

func (s *Server) tagQueue(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(in *tagQueueRequest, q *queue) (any, *apiError) {
		if len(in.Tags) == 0 {
			return nil, errMissingParameter("Tags")
		}
		for k, v := range in.Tags {
			q.tags[k] = v
		}
		return nil, nil
	})
}

type untagQueueRequest struct {
	queueRequest
	TagKeys []string
}

func (s *Server) untagQueue(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(in *untagQueueRequest, q *queue) (any, *apiError) {
		for _, k := range in.TagKeys {
			delete(q.tags, k)
		}
		return nil, nil
	})
}

func (s *Server) listQueueTags(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(_ *queueRequest, q *queue) (any, *apiError) {
		if len(q.tags) == 0 {
			return struct{}{}, nil
		}
		tags := make(map[string]string, len(q.tags))
		for k, v := range q.tags {
			tags[k] = v
		}
		return map[string]any{"Tags": tags}, nil
	})
}

func (s *Server) purgeQueue(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(_ *queueRequest, q *queue) (any, *apiError) {
		now := s.now()
		if !q.lastPurge.IsZero() && now.Sub(q.lastPurge) < purgeInterval {
			return nil, errPurgeInProgress(q.name)
		}
		q.lastPurge = now
		q.msgs = nil
		q.byID = map[string]*message{}
		s.wakeLocked()
		return nil, nil
	})
}

func (s *Server) listDeadLetterSourceQueues(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(_ *queueRequest, q *queue) (any, *apiError) {
		urls := []string{}
		for _, name := range sortedNames(s.queues) {
			if src := s.queues[name]; src.redrive != nil && src.redrive.target == q.arn {
				urls = append(urls, src.url)
			}
		}
		return map[string]any{"queueUrls": urls}, nil
	})
}

// ---- sending ----

// sendEntry is SendMessage's input, and one SendMessageBatch entry (Id set).
type sendEntry struct {
	ID                      string `json:"Id"`
	MessageBody             *string
	DelaySeconds            *int
	MessageAttributes       map[string]AttributeValue
	MessageSystemAttributes map[string]AttributeValue
	MessageDeduplicationID  string `json:"MessageDeduplicationId"`
	MessageGroupID          string `json:"MessageGroupId"`
}

func (e sendEntry) entryID() string { return e.ID }

// sendResult is SendMessage's output, and one SendMessageBatch success (Id set).
type sendResult struct {
	ID                           string `json:"Id,omitempty"`
	MessageID                    string `json:"MessageId"`
	MD5OfMessageBody             string
	MD5OfMessageAttributes       string `json:",omitempty"`
	MD5OfMessageSystemAttributes string `json:",omitempty"`
	SequenceNumber               string `json:",omitempty"`
}

type sendMessageRequest struct {
	queueRequest
	sendEntry
}

func (s *Server) sendMessage(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(in *sendMessageRequest, q *queue) (any, *apiError) {
		res, aerr := s.send(q, &in.sendEntry, s.now())
		if aerr != nil {
			return nil, aerr
		}
		return res, nil
	})
}

// entrySize is what a message counts against MaximumMessageSize (and a batch's total).
func entrySize(e *sendEntry) (int, *apiError) {
	n, err := validateAttrs(e.MessageAttributes, false)
	if err != nil {
		return 0, err
	}
	if _, err := validateAttrs(e.MessageSystemAttributes, true); err != nil {
		return 0, err
	}
	return n + len(deref(e.MessageBody)), nil
}

// send validates and stores one message. Call with mu held.
func (s *Server) send(q *queue, e *sendEntry, now time.Time) (*sendResult, *apiError) {
	if e.MessageBody == nil || *e.MessageBody == "" {
		return nil, errMissingParameter("MessageBody")
	}
	body := *e.MessageBody
	if r, ok := validBody(body); !ok {
		return nil, errInvalidMessageContents("Invalid binary character '#x%X' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF", r)
	}
	size, aerr := entrySize(e)
	if aerr != nil {
		return nil, aerr
	}
	if limit := q.intAttr(attrMaximumMessageSize); size > limit {
		return nil, errInvalidParameterValue("One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", limit)
	}
	delay := q.intAttr(attrDelaySeconds)
	if e.DelaySeconds != nil {
		d := *e.DelaySeconds
		switch {
		case q.fifo && d != 0:
			return nil, errInvalidParameterValue("Value %d for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.", d)
		case d < 0 || d > maxDelay:
			return nil, errInvalidParameterValue("Value %d for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided.", d)
		}
		if !q.fifo {
			delay = d
		}
	}
	if e.MessageGroupID != "" && !groupIDRe.MatchString(e.MessageGroupID) {
		return nil, errInvalidParameterValue("Value %s for parameter MessageGroupId is invalid. Reason: MessageGroupId can only include alphanumeric and punctuation characters. 1 to 128 in length.", e.MessageGroupID)
	}
	if e.MessageDeduplicationID != "" && !groupIDRe.MatchString(e.MessageDeduplicationID) {
		return nil, errInvalidParameterValue("Value %s for parameter MessageDeduplicationId is invalid. Reason: MessageDeduplicationId can only include alphanumeric and punctuation characters. 1 to 128 in length.", e.MessageDeduplicationID)
	}
	res := &sendResult{
		ID:                           e.ID,
		MD5OfMessageBody:             md5Hex(body),
		MD5OfMessageAttributes:       md5OfAttributes(e.MessageAttributes),
		MD5OfMessageSystemAttributes: md5OfAttributes(e.MessageSystemAttributes),
	}
	dedupID, dedupKey := "", ""
	if q.fifo {
		if e.MessageGroupID == "" {
			return nil, errMissingParameter("MessageGroupId")
		}
		dedupID = e.MessageDeduplicationID
		if dedupID == "" {
			if q.attrs[attrContentBasedDedup] != "true" {
				return nil, errInvalidParameterValue("The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly")
			}
			sum := sha256.Sum256([]byte(body))
			dedupID = hex.EncodeToString(sum[:])
		}
		dedupKey = dedupID
		if q.attrs[attrDeduplicationScope] == "messageGroup" {
			dedupKey = e.MessageGroupID + "\x00" + dedupID
		}
		q.expire(now)
		if prev, ok := q.dedup[dedupKey]; ok {
			// Accepted, but not enqueued again within the deduplication interval.
			res.MessageID, res.SequenceNumber = prev.messageID, prev.seq
			return res, nil
		}
	} else if e.MessageDeduplicationID != "" {
		return nil, errInvalidParameterValue("Value %s for parameter MessageDeduplicationId is invalid. Reason: The request include parameter that is not valid for this queue type.", e.MessageDeduplicationID)
	}

	m := &message{
		id:        requestID(),
		body:      body,
		md5Body:   res.MD5OfMessageBody,
		attrs:     e.MessageAttributes,
		sysAttrs:  e.MessageSystemAttributes,
		md5Attrs:  res.MD5OfMessageAttributes,
		md5Sys:    res.MD5OfMessageSystemAttributes,
		sent:      now,
		visibleAt: now.Add(time.Duration(delay) * time.Second),
		group:     e.MessageGroupID,
		dedupID:   dedupID,
	}
	if q.fifo {
		s.seq++
		m.seq = fmt.Sprintf("%020d", s.seq)
		q.dedup[dedupKey] = dedupEntry{at: now, messageID: m.id, seq: m.seq}
	}
	q.msgs = append(q.msgs, m)
	q.byID[m.id] = m
	res.MessageID, res.SequenceNumber = m.id, m.seq
	s.wakeLocked()
	return res, nil
}

// batchError is one failed batch entry.
type batchError struct {
	ID          string `json:"Id"`
	SenderFault bool
	Code        string
	Message     string
}

func failed(id string, e *apiError) batchError {
	return batchError{ID: id, SenderFault: e.sender, Code: e.code, Message: e.msg}
}

// batchEntry is one entry of a batch request.
type batchEntry interface{ entryID() string }

// checkBatch validates the entry count and ids of a batch request.
func checkBatch[E batchEntry](entries []E) *apiError {
	switch {
	case len(entries) == 0:
		return errEmptyBatch()
	case len(entries) > maxBatchEntries:
		return errTooManyEntries(len(entries))
	}
	seen := map[string]bool{}
	for _, e := range entries {
		id := e.entryID()
		if !batchIDRe.MatchString(id) {
			return errInvalidBatchEntryID(id)
		}
		if seen[id] {
			return errIdsNotDistinct(id)
		}
		seen[id] = true
	}
	return nil
}

type sendMessageBatchRequest struct {
	queueRequest
	Entries []sendEntry
}

func (r *sendMessageBatchRequest) validate() *apiError { return checkBatch(r.Entries) }

func (s *Server) sendMessageBatch(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(in *sendMessageBatchRequest, q *queue) (any, *apiError) {
		total := 0
		for i := range in.Entries {
			n, _ := entrySize(&in.Entries[i])
			total += n
		}
		if limit := q.intAttr(attrMaximumMessageSize); total > limit {
			return nil, errBatchTooLong(total, limit)
		}
		now := s.now()
		ok, bad := []*sendResult{}, []batchError{}
		for i := range in.Entries {
			res, aerr := s.send(q, &in.Entries[i], now)
			if aerr != nil {
				bad = append(bad, failed(in.Entries[i].ID, aerr))
				continue
			}
			ok = append(ok, res)
		}
		return map[string]any{"Successful": ok, "Failed": bad}, nil
	})
}

// ---- receiving ----

// systemAttrNames are the message system attributes ReceiveMessage can return.
var systemAttrNames = []string{
	"SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
	"SequenceNumber", "MessageDeduplicationId", "MessageGroupId", "AWSTraceHeader", "DeadLetterQueueSourceArn",
}

type receivedMessage struct {
	MessageID              string                    `json:"MessageId"`
	ReceiptHandle          string                    `json:"ReceiptHandle"`
	MD5OfBody              string                    `json:"MD5OfBody"`
	Body                   string                    `json:"Body"`
	Attributes             map[string]string         `json:"Attributes,omitempty"`
	MD5OfMessageAttributes string                    `json:"MD5OfMessageAttributes,omitempty"`
	MessageAttributes      map[string]AttributeValue `json:"MessageAttributes,omitempty"`
}

func (s *Server) receiveMessage(r *http.Request, body []byte) (any, *apiError) {
	var in struct {
		QueueURL                    string `json:"QueueUrl"`
		AttributeNames              []string
		MessageSystemAttributeNames []string
		MessageAttributeNames       []string
		MaxNumberOfMessages         *int
		VisibilityTimeout           *int
		WaitTimeSeconds             *int
		ReceiveRequestAttemptID     string `json:"ReceiveRequestAttemptId"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	maxN := 1
	if in.MaxNumberOfMessages != nil {
		if n := *in.MaxNumberOfMessages; n < 1 || n > maxBatchEntries {
			return nil, errInvalidParameterValue("Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", n)
		}
		maxN = *in.MaxNumberOfMessages
	}
	if in.VisibilityTimeout != nil {
		if v := *in.VisibilityTimeout; v < 0 || v > maxVisibility {
			return nil, errInvalidParameterValue("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided.", v)
		}
	}
	if in.WaitTimeSeconds != nil {
		if w := *in.WaitTimeSeconds; w < 0 || w > maxWaitTime {
			return nil, errInvalidParameterValue("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", w)
		}
	}
	sysWanted := map[string]bool{}
	for _, n := range append(append([]string{}, in.AttributeNames...), in.MessageSystemAttributeNames...) {
		if n == "All" {
			for _, a := range systemAttrNames {
				sysWanted[a] = true
			}
			continue
		}
		known := false
		for _, a := range systemAttrNames {
			known = known || a == n
		}
		if !known {
			return nil, errInvalidAttributeName(n)
		}
		sysWanted[n] = true
	}

	s.mu.Lock()
	q, aerr := s.lookup(in.QueueURL)
	if aerr != nil {
		s.mu.Unlock()
		return nil, aerr
	}
	wait := q.intAttr(attrReceiveWaitTime)
	if in.WaitTimeSeconds != nil {
		wait = *in.WaitTimeSeconds
	}
	deadline := s.now().Add(time.Duration(wait) * time.Second)
	s.mu.Unlock()

	for {
		s.mu.Lock()
		if r.Context().Err() != nil {
			s.mu.Unlock()
			return nil, nil // the client is gone: deliver nothing
		}
		if s.down {
			s.mu.Unlock()
			return nil, errUnavailable()
		}
		q, aerr := s.lookup(in.QueueURL)
		if aerr != nil {
			s.mu.Unlock()
			return nil, aerr
		}
		now := s.now()
		vt := q.visibility()
		if in.VisibilityTimeout != nil {
			vt = time.Duration(*in.VisibilityTimeout) * time.Second
		}
		got := s.collect(q, maxN, vt, now)
		if len(got) > 0 || !now.Before(deadline) {
			out := make([]receivedMessage, 0, len(got))
			for _, m := range got {
				out = append(out, s.render(m, sysWanted, in.MessageAttributeNames))
			}
			s.mu.Unlock()
			if len(out) == 0 {
				return struct{}{}, nil
			}
			return map[string]any{"Messages": out}, nil
		}
		changed := s.changed
		sleep := deadline.Sub(now)
		if next := q.nextEvent(now); !next.IsZero() && next.Sub(now) < sleep {
			sleep = next.Sub(now)
		}
		s.mu.Unlock()

		s.mu.Lock()
		s.waiting++
		s.mu.Unlock()
		t := time.NewTimer(sleep)
		select {
		case <-changed:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
		// Let a client that went away be noticed before anything is handed to it: net/http cancels
		// the request context shortly after the connection closes, not at once.
		settle := time.NewTimer(wakeSettle)
		select {
		case <-settle.C:
		case <-r.Context().Done():
		}
		settle.Stop()
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
	}
}

// collect takes up to n receivable messages of q, makes them in flight for vt and returns them.
// Standard queues hand out visible messages in send order. FIFO queues never hand out a message of
// a group while another message of that group is in flight, and within a group only in order.
// Messages past the redrive policy's maxReceiveCount move to the dead-letter queue instead.
// Call with mu held.
func (s *Server) collect(q *queue, n int, vt time.Duration, now time.Time) []*message {
	q.expire(now)
	blocked := map[string]bool{}
	if q.fifo {
		for _, m := range q.msgs {
			if m.isInflight(now) {
				blocked[m.group] = true
			}
		}
	}
	snapshot := append([]*message(nil), q.msgs...)
	var out []*message
	for _, m := range snapshot {
		if len(out) == n {
			break
		}
		if q.fifo && blocked[m.group] {
			continue
		}
		if !m.available(now) {
			if q.fifo {
				blocked[m.group] = true // later messages of the group wait for this one
			}
			continue
		}
		if s.redriveIfDue(q, m, now) {
			continue
		}
		m.receives++
		m.handle = receiptHandle(q.name, m.id, m.receives)
		m.inflight = true
		m.visibleAt = now.Add(vt)
		m.recvAt = now
		if m.firstRecv.IsZero() {
			m.firstRecv = now
		}
		out = append(out, m)
	}
	return out
}

// redriveIfDue moves m to the dead-letter queue when it was received maxReceiveCount times.
func (s *Server) redriveIfDue(q *queue, m *message, now time.Time) bool {
	if q.redrive == nil || m.receives < q.redrive.maxCount {
		return false
	}
	dlq := s.queueByArn(q.redrive.target)
	if dlq == nil {
		return false
	}
	q.remove(m)
	m.inflight, m.handle, m.receives, m.firstRecv = false, "", 0, time.Time{}
	m.visibleAt = now
	m.dlqSource = q.arn
	dlq.msgs = append(dlq.msgs, m)
	dlq.byID[m.id] = m
	return true
}

func millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// render builds the wire form of a received message.
func (s *Server) render(m *message, sys map[string]bool, attrNames []string) receivedMessage {
	out := receivedMessage{MessageID: m.id, ReceiptHandle: m.handle, MD5OfBody: m.md5Body, Body: m.body}
	attrs := map[string]string{}
	add := func(name, v string) {
		if sys[name] && v != "" {
			attrs[name] = v
		}
	}
	add("SenderId", s.account)
	add("SentTimestamp", millis(m.sent))
	add("ApproximateReceiveCount", strconv.Itoa(m.receives))
	add("ApproximateFirstReceiveTimestamp", millis(m.firstRecv))
	add("SequenceNumber", m.seq)
	add("MessageDeduplicationId", m.dedupID)
	add("MessageGroupId", m.group)
	add("DeadLetterQueueSourceArn", m.dlqSource)
	if v, ok := m.sysAttrs["AWSTraceHeader"]; ok {
		add("AWSTraceHeader", deref(v.StringValue))
	}
	if len(attrs) > 0 {
		out.Attributes = attrs
	}
	if sel := selectAttrs(m.attrs, attrNames); len(sel) > 0 {
		out.MessageAttributes = sel
		out.MD5OfMessageAttributes = md5OfAttributes(sel)
	}
	return out
}

// ---- settling ----

// findByHandle resolves a receipt handle of q: the message (nil when it is gone) and whether the
// handle is the message's current one.
func findByHandle(q *queue, handle string) (*message, bool, *apiError) {
	if handle == "" {
		return nil, false, errMissingParameter("ReceiptHandle")
	}
	name, id, ok := parseHandle(handle)
	if !ok || name != q.name {
		return nil, false, errReceiptHandleIsInvalid(handle)
	}
	m := q.byID[id]
	if m == nil {
		return nil, false, nil
	}
	return m, m.handle == handle, nil
}

// deleteOne deletes the message behind handle. A handle of a deleted message, or one superseded by
// a later receive, succeeds without deleting anything (as SQS documents); on FIFO queues a handle
// whose visibility timeout expired is rejected.
func (s *Server) deleteOne(q *queue, handle string, now time.Time) *apiError {
	m, current, aerr := findByHandle(q, handle)
	if aerr != nil || m == nil || !current {
		return aerr
	}
	if q.fifo && !m.isInflight(now) {
		return errInvalidParameterValue("Value %s for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.", handle)
	}
	q.remove(m)
	return nil
}

type deleteMessageRequest struct {
	queueRequest
	ReceiptHandle string
}

func (s *Server) deleteMessage(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(in *deleteMessageRequest, q *queue) (any, *apiError) {
		q.expire(s.now())
		if aerr := s.deleteOne(q, in.ReceiptHandle, s.now()); aerr != nil {
			return nil, aerr
		}
		s.wakeLocked() // a FIFO group may be free now
		return nil, nil
	})
}

type handleEntry struct {
	ID                string `json:"Id"`
	ReceiptHandle     string
	VisibilityTimeout int
}

func (e handleEntry) entryID() string { return e.ID }

func (s *Server) deleteMessageBatch(_ *http.Request, body []byte) (any, *apiError) {
	return s.handleBatch(body, func(q *queue, e handleEntry, now time.Time) *apiError {
		return s.deleteOne(q, e.ReceiptHandle, now)
	})
}

type handleBatchRequest struct {
	queueRequest
	Entries []handleEntry
}

func (r *handleBatchRequest) validate() *apiError { return checkBatch(r.Entries) }

// handleBatch runs apply for each entry of a batch request on receipt handles (DeleteMessageBatch,
// ChangeMessageVisibilityBatch) and reports which entries succeeded and which failed.
func (s *Server) handleBatch(body []byte, apply func(q *queue, e handleEntry, now time.Time) *apiError) (any, *apiError) {
	return onQueue(s, body, func(in *handleBatchRequest, q *queue) (any, *apiError) {
		now := s.now()
		q.expire(now)
		ok, bad := []map[string]string{}, []batchError{}
		for _, e := range in.Entries {
			if aerr := apply(q, e, now); aerr != nil {
				bad = append(bad, failed(e.ID, aerr))
				continue
			}
			ok = append(ok, map[string]string{"Id": e.ID})
		}
		s.wakeLocked()
		return map[string]any{"Successful": ok, "Failed": bad}, nil
	})
}

// changeOne sets the visibility timeout of the in-flight message behind handle.
func (s *Server) changeOne(q *queue, handle string, vt int, now time.Time) *apiError {
	if vt < 0 || vt > maxVisibility {
		return errInvalidParameterValue("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.", vt)
	}
	m, current, aerr := findByHandle(q, handle)
	if aerr != nil {
		return aerr
	}
	if m == nil || !current {
		return errInvalidParameterValue("Value %s for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.", handle)
	}
	if !m.isInflight(now) {
		return errMessageNotInflight()
	}
	until := now.Add(time.Duration(vt) * time.Second)
	if until.Sub(m.recvAt).Truncate(time.Second) > maxVisibility*time.Second {
		return errInvalidParameterValue("Value %d for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]", vt)
	}
	m.visibleAt = until
	if vt == 0 {
		m.inflight = false
	}
	return nil
}

type changeMessageVisibilityRequest struct {
	queueRequest
	ReceiptHandle     string
	VisibilityTimeout *int
}

func (r *changeMessageVisibilityRequest) validate() *apiError {
	if r.VisibilityTimeout == nil {
		return errMissingParameter("VisibilityTimeout")
	}
	return nil
}

func (s *Server) changeMessageVisibility(_ *http.Request, body []byte) (any, *apiError) {
	return onQueue(s, body, func(in *changeMessageVisibilityRequest, q *queue) (any, *apiError) {
		now := s.now()
		q.expire(now)
		if aerr := s.changeOne(q, in.ReceiptHandle, *in.VisibilityTimeout, now); aerr != nil {
			return nil, aerr
		}
		s.wakeLocked()
		return nil, nil
	})
}

func (s *Server) changeMessageVisibilityBatch(_ *http.Request, body []byte) (any, *apiError) {
	return s.handleBatch(body, func(q *queue, e handleEntry, now time.Time) *apiError {
		return s.changeOne(q, e.ReceiptHandle, e.VisibilityTimeout, now)
	})
}
