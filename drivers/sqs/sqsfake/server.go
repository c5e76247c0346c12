// Package sqsfake is an in-process Amazon SQS server for tests. It speaks the AWS JSON 1.0
// protocol that aws-sdk-go-v2's service/sqs uses (POST /, X-Amz-Target: AmazonSQS.<Action>,
// Content-Type: application/x-amz-json-1.0; errors as {"__type", "message"} plus the
// x-amzn-query-error header) and models the documented queue semantics: visibility timeouts,
// per-message and queue delays, long polling, FIFO groups and the 5-minute deduplication window,
// message attributes with their MD5 digests, retention, redrive to a dead-letter queue and purge.
//
// Point a client at URL() with any credentials (signatures are not checked). See README.md for what
// is implemented and where the fake differs from SQS.
package sqsfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// DefaultAccount is the account id in queue URLs and ARNs.
	DefaultAccount = "000000000000"
	// DefaultRegion is the region in queue ARNs.
	DefaultRegion = "us-east-1"

	targetPrefix = "AmazonSQS."
	contentType  = "application/x-amz-json-1.0"
	// wakeSettle is how long a woken long poll waits before it looks at the queue again.
	wakeSettle = 10 * time.Millisecond
	// maxRequestBody bounds a request: a batch of ten maximum-size messages plus JSON overhead.
	maxRequestBody = 16 << 20
)

// Server is a fake SQS endpoint. The zero value is not usable; call New.
type Server struct {
	account string
	region  string

	mu      sync.Mutex
	queues  map[string]*queue    // by name
	deleted map[string]time.Time // name -> when it was deleted (QueueDeletedRecently)
	offset  time.Duration        // Advance
	changed chan struct{}        // closed and replaced whenever waiting receivers should look again
	seq     uint64               // FIFO sequence numbers
	calls   map[string]int       // action -> requests served
	failing map[string]int       // action -> injected failures left
	down    bool                 // SetUnavailable
	waiting int                  // long polls waiting for messages

	lnMu     sync.Mutex
	addr     string
	http     *http.Server
	closed   bool
	serveErr chan error
}

// New starts a fake SQS server on 127.0.0.1 with a random port. Close it when done.
func New() *Server {
	s, err := Start("127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("sqsfake: %v", err))
	}
	return s
}

// Start starts a fake SQS server listening on addr ("127.0.0.1:0" for a random port).
func Start(addr string) (*Server, error) {
	s := &Server{
		account: DefaultAccount,
		region:  DefaultRegion,
		queues:  map[string]*queue{},
		deleted: map[string]time.Time{},
		changed: make(chan struct{}),
		calls:   map[string]int{},
		failing: map[string]int{},
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	return s, nil
}

func (s *Server) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.http = srv
	go func() { _ = srv.Serve(ln) }()
}

// URL is the endpoint for clients (BaseEndpoint / sqs.endpoint), e.g. http://127.0.0.1:40123.
func (s *Server) URL() string { return "http://" + s.addr }

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.addr }

// Close stops the server for good, dropping open connections (long polls end with an error on the
// client side). The queues are kept in memory until the Server is garbage.
func (s *Server) Close() {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.http != nil {
		_ = s.http.Close()
		s.http = nil
	}
	s.wake()
}

// Down stops listening and drops every connection, as if the network or the service went away;
// queues and messages are kept. Up brings the same address back.
func (s *Server) Down() {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.http != nil {
		_ = s.http.Close()
		s.http = nil
	}
	s.wake()
}

// Up listens again on the address of the server after Down. It retries for a few seconds while
// the port is still held by the closing listener.
func (s *Server) Up() error {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.closed {
		return errors.New("sqsfake: server is closed")
	}
	if s.http != nil {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.serve(ln)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sqsfake: listen again on %s: %w", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SetUnavailable makes every request fail with HTTP 503 ServiceUnavailable (true) or work again
// (false), with the connection kept open.
func (s *Server) SetUnavailable(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
	s.wake()
}

// FailNext makes the next n requests of action (e.g. "SendMessage", "DeleteMessage") fail with
// HTTP 500 InternalError before they change anything.
func (s *Server) FailNext(action string, n int) {
	s.mu.Lock()
	s.failing[action] = n
	s.mu.Unlock()
}

// Calls returns how many requests of action the server answered (errors included).
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// Waiting returns how many ReceiveMessage long polls are waiting for messages.
func (s *Server) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// Advance moves the server's clock forward by d: visibility timeouts, delays, the deduplication
// window, retention and the recently-deleted and purge windows all see the later time. Waiting
// receivers are woken.
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	s.offset += d
	s.mu.Unlock()
	s.wake()
}

// QueueURL returns the URL of the named queue as the server reports it (whether or not it exists).
func (s *Server) QueueURL(name string) string {
	return s.URL() + "/" + s.account + "/" + name
}

// now is the server clock (wall clock plus Advance). Call with mu held.
func (s *Server) now() time.Time { return time.Now().Add(s.offset) }

// wake tells waiting receivers to look at their queue again.
func (s *Server) wake() {
	s.mu.Lock()
	s.wakeLocked()
	s.mu.Unlock()
}

func (s *Server) wakeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// action is one operation's handler: it decodes its input from body and returns the output value
// (encoded as JSON) or an API error.
type action func(s *Server, r *http.Request, body []byte) (any, *apiError)

var actions = map[string]action{
	"CreateQueue":                  (*Server).createQueue,
	"GetQueueUrl":                  (*Server).getQueueURL,
	"GetQueueAttributes":           (*Server).getQueueAttributes,
	"SetQueueAttributes":           (*Server).setQueueAttributes,
	"DeleteQueue":                  (*Server).deleteQueue,
	"ListQueues":                   (*Server).listQueues,
	"TagQueue":                     (*Server).tagQueue,
	"UntagQueue":                   (*Server).untagQueue,
	"ListQueueTags":                (*Server).listQueueTags,
	"PurgeQueue":                   (*Server).purgeQueue,
	"SendMessage":                  (*Server).sendMessage,
	"SendMessageBatch":             (*Server).sendMessageBatch,
	"ReceiveMessage":               (*Server).receiveMessage,
	"DeleteMessage":                (*Server).deleteMessage,
	"DeleteMessageBatch":           (*Server).deleteMessageBatch,
	"ChangeMessageVisibility":      (*Server).changeMessageVisibility,
	"ChangeMessageVisibilityBatch": (*Server).changeMessageVisibilityBatch,
	"ListDeadLetterSourceQueues":   (*Server).listDeadLetterSourceQueues,
	"AddPermission":                nil,
	"RemovePermission":             nil,
	"StartMessageMoveTask":         nil,
	"CancelMessageMoveTask":        nil,
	"ListMessageMoveTasks":         nil,
}

// ServeHTTP answers one AWS JSON 1.0 request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	name := strings.TrimPrefix(target, targetPrefix)
	fn, known := actions[name]
	switch {
	case r.Method != http.MethodPost || !strings.HasPrefix(target, targetPrefix) || !known:
		writeError(w, errUnknownOperation(target))
		return
	case !strings.HasPrefix(r.Header.Get("Content-Type"), contentType):
		writeError(w, errSerialization(fmt.Errorf("content type must be %s, got %q", contentType, r.Header.Get("Content-Type"))))
		return
	}

	s.mu.Lock()
	s.calls[name]++
	down := s.down
	inject := s.failing[name] > 0
	if inject {
		s.failing[name]--
	}
	s.mu.Unlock()
	switch {
	case down:
		writeError(w, errUnavailable())
		return
	case inject:
		writeError(w, errInternal(name))
		return
	case fn == nil:
		writeError(w, errUnsupportedOperation(name))
		return
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		writeError(w, errSerialization(err))
		return
	}
	out, aerr := fn(s, r, body)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if out == nil {
		out = struct{}{}
	}
	b, err := json.Marshal(out)
	if err != nil {
		writeError(w, &apiError{status: 500, typ: "InternalError", code: "InternalError", msg: err.Error()})
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-RequestId", requestID())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	fault := "Receiver"
	if e.sender {
		fault = "Sender"
	}
	typ := e.typ
	if !strings.Contains(typ, "#") {
		if typ == "SerializationException" || typ == "UnknownOperationException" {
			typ = "com.amazon.coral.service#" + typ
		} else {
			typ = "com.amazonaws.sqs#" + typ
		}
	}
	b, _ := json.Marshal(map[string]string{"__type": typ, "message": e.msg})
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-RequestId", requestID())
	w.Header().Set("X-Amzn-Query-Error", e.code+";"+fault)
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

// decode reads a request body into v; an empty body is an empty object.
func decode(body []byte, v any) *apiError {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errSerialization(err)
	}
	return nil
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
