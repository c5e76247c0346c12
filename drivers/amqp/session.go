package amqp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	// dialTimeout bounds the TCP connect and the AMQP handshake.
	dialTimeout = 5 * time.Second
	// maxInflightPublishes bounds the publishes waiting for a confirm on one channel, so the
	// returns buffer can never fill up (a return is always read before its confirm is).
	maxInflightPublishes = 512
	// maxDelayMs is the longest delay: x-message-ttl and x-expires (twice the delay) must fit the
	// broker's 32-bit timers.
	maxDelayMs = (1<<31 - 1)
	// maxNameLen is RabbitMQ's limit on queue names.
	maxNameLen = 255
)

var (
	// errNotConnected is returned while the driver has no connection to the broker.
	errNotConnected = errors.New("not connected to RabbitMQ")
	// errChannelGone is returned when acknowledging a job whose channel was closed: RabbitMQ has
	// put the job back in the queue and delivers it again.
	errChannelGone = errors.New("the channel the job was delivered on was closed (connection lost, pipeline stopped or channel error); RabbitMQ delivers the job again")
)

// session is one connection to the broker with its publishing channel (confirm mode) and a channel
// for synchronous calls (declares, passive declares). A new session replaces it after a reconnect.
type session struct {
	conn   *amqp.Connection
	closed chan struct{} // closed when the connection is closed
	err    atomic.Pointer[amqp.Error]

	// rpc serializes the synchronous calls on rpcCh: amqp091 matches replies to calls in order,
	// so two concurrent calls on one channel could get each other's replies. A semaphore (not a
	// mutex) so that waiting for it respects a context.
	rpc   chan struct{}
	rpcCh *amqp.Channel // guarded by rpc; reopened after a channel error
	// declared records when each delay queue was last declared on this connection.
	declMu   sync.Mutex
	declared map[string]time.Time

	pub atomic.Pointer[publisher]
}

// publisher is a confirm-mode channel. Publishes are mandatory: a message that no queue takes comes
// back as a basic.return, which RabbitMQ sends before the publish's confirm.
type publisher struct {
	ch      *amqp.Channel
	closed  chan struct{}
	err     atomic.Pointer[amqp.Error]
	sem     chan struct{}
	returns chan amqp.Return

	mu      sync.Mutex
	pending map[string]*amqp.Return // publish tag -> its return, nil while none
}

func (s *session) isClosed() bool {
	if s.conn.IsClosed() {
		return true
	}
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// closeErr describes why the connection closed.
func (s *session) closeErr() error {
	if e := s.err.Load(); e != nil {
		return e
	}
	return amqp.ErrClosed
}

func (p *publisher) isClosed() bool {
	if p.ch.IsClosed() {
		return true
	}
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// dial opens a connection; the connection name shows the pipeline in the management UI.
func (d *Driver) dial() (*session, error) {
	cfg := amqp.Config{Properties: amqp.NewConnectionProperties()}
	if d.conf.TLS != nil {
		cfg.TLSClientConfig = d.conf.TLS.Clone() // amqp091 sets ServerName in it
	}
	if uri, err := amqp.ParseURI(d.conf.Addr); err == nil && uri.ConnectionTimeout == 0 {
		// Bound the connect and the handshake (amqp091's default is 30 s) unless the URI sets
		// connection_timeout.
		cfg.Dial = amqp.DefaultDial(dialTimeout)
	}
	cfg.Properties.SetClientConnectionName("rrjobs " + d.pipeline)
	conn, err := amqp.DialConfig(d.conf.Addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redactAddr(d.conf.Addr), err)
	}
	s := &session{
		conn:     conn,
		closed:   make(chan struct{}),
		rpc:      make(chan struct{}, 1),
		declared: make(map[string]time.Time),
	}
	closes := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	go func() {
		if e, ok := <-closes; ok && e != nil {
			s.err.Store(e)
		}
		close(s.closed)
		d.signal()
	}()
	go func() {
		for b := range blocks {
			if b.Active {
				d.log.Warn("RabbitMQ blocked publishing on the connection (resource alarm); pushes wait for it", pipelineField(d), zapReason(b.Reason))
			} else {
				d.log.Info("RabbitMQ unblocked publishing on the connection", pipelineField(d))
			}
		}
	}()
	return s, nil
}

// close closes the connection without waiting long for a dead broker.
func (s *session) close() {
	_ = s.conn.CloseDeadline(time.Now().Add(2 * time.Second))
}

// call runs fn on the RPC channel, opening it if needed, and returns when fn does or ctx ends. A
// call abandoned at ctx keeps the channel until the broker answers (or the connection dies), so
// its late reply is never taken for another call's. A channel error closes the channel; the next
// call opens a new one.
func (s *session) call(ctx context.Context, fn func(ch *amqp.Channel) error) error {
	select {
	case s.rpc <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for the previous call to RabbitMQ: %w", ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-s.rpc }()
		if s.rpcCh == nil || s.rpcCh.IsClosed() {
			ch, err := s.conn.Channel()
			if err != nil {
				done <- fmt.Errorf("open a channel: %w", err)
				return
			}
			s.rpcCh = ch
		}
		done <- fn(s.rpcCh)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// declareTopology declares the exchange and, for a consuming pipeline, the queue and its binding.
func (d *Driver) declareTopology(ctx context.Context, s *session) error {
	c := d.conf
	return s.call(ctx, func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(c.Exchange, c.ExchangeType, c.ExchangeDurable, c.ExchangeAutoDelete, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %q (type %s, durable %t, auto_delete %t): %w", c.Exchange, c.ExchangeType, c.ExchangeDurable, c.ExchangeAutoDelete, err)
		}
		if c.Queue == "" {
			return nil
		}
		if _, err := ch.QueueDeclare(c.Queue, c.Durable, c.QueueAutoDelete, c.Exclusive, false, c.QueueHeaders); err != nil {
			return fmt.Errorf("declare queue %q (durable %t, auto_delete %t, exclusive %t, queue_headers %v): %w", c.Queue, c.Durable, c.QueueAutoDelete, c.Exclusive, c.QueueHeaders, err)
		}
		if err := ch.QueueBind(c.Queue, c.RoutingKey, c.Exchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %q to exchange %q with routing key %q: %w", c.Queue, c.Exchange, c.RoutingKey, err)
		}
		return nil
	})
}

// openPublisher opens a confirm-mode publishing channel.
func (d *Driver) openPublisher(s *session) (*publisher, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open the publishing channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	p := &publisher{
		ch:      ch,
		closed:  make(chan struct{}),
		sem:     make(chan struct{}, maxInflightPublishes),
		returns: ch.NotifyReturn(make(chan amqp.Return, maxInflightPublishes*2)),
		pending: make(map[string]*amqp.Return),
	}
	closes := ch.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		if e, ok := <-closes; ok && e != nil {
			p.err.Store(e)
		}
		close(p.closed)
		d.signal()
	}()
	return p, nil
}

// unroutableError: the broker returned a mandatory publish that no queue took.
type unroutableError struct {
	exchange, key string
	ret           amqp.Return
}

func (e *unroutableError) Error() string {
	ex := e.exchange
	if ex == "" {
		return fmt.Sprintf("RabbitMQ returned the message: no queue named %q exists (%d %s)", e.key, e.ret.ReplyCode, e.ret.ReplyText)
	}
	return fmt.Sprintf("RabbitMQ returned the message: no queue is bound to exchange %q for routing key %q (%d %s)", ex, e.key, e.ret.ReplyCode, e.ret.ReplyText)
}

// publish sends a persistent, mandatory message and waits for the broker's confirm: nil means the
// message is in a queue.
func (d *Driver) publish(ctx context.Context, s *session, exchange, key string, msg amqp.Publishing) error {
	p := s.pub.Load()
	if p == nil || p.isClosed() {
		if s.isClosed() {
			return fmt.Errorf("%w: %v", errNotConnected, s.closeErr())
		}
		reason := "it is being reopened"
		if p != nil && p.err.Load() != nil {
			reason = p.err.Load().Error()
		}
		return fmt.Errorf("the publishing channel is closed (%s), retry shortly", reason)
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for a publishing slot: %w", ctx.Err())
	}
	defer func() { <-p.sem }()

	tag := d.publishTag()
	msg.MessageId = tag
	p.mu.Lock()
	p.pending[tag] = nil
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, tag)
		p.mu.Unlock()
	}()

	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		return fmt.Errorf("publish: %w", d.describeClose(s, p, err))
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("RabbitMQ did not confirm the message in time (it may still be stored): %w", err)
	}
	if !ok {
		if p.isClosed() || s.isClosed() {
			return fmt.Errorf("the connection or channel closed before RabbitMQ confirmed the message (it may still be stored): %w", d.describeClose(s, p, amqp.ErrClosed))
		}
		return errors.New("RabbitMQ refused the message (basic.nack)")
	}
	if ret := p.returned(tag); ret != nil {
		return &unroutableError{exchange: exchange, key: key, ret: *ret}
	}
	return nil
}

// returned reports the return of the publish tag, if any. The confirm of a publish arrives after
// its return, so once the confirm is in, the return (if any) is in the returns channel or map.
func (p *publisher) returned(tag string) *amqp.Return {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		select {
		case r, ok := <-p.returns:
			if !ok {
				return p.pending[tag]
			}
			if _, waiting := p.pending[r.MessageId]; waiting {
				p.pending[r.MessageId] = &r
			}
			continue
		default:
		}
		return p.pending[tag]
	}
}

// describeClose prefers the broker's reason for a closed channel or connection over ErrClosed.
func (d *Driver) describeClose(s *session, p *publisher, err error) error {
	if !errors.Is(err, amqp.ErrClosed) {
		return err
	}
	if e := p.err.Load(); e != nil {
		return e
	}
	if e := s.err.Load(); e != nil {
		return e
	}
	return err
}

// publishDelayed publishes msg to the delay queue of (delay, dlx, dlrk): a queue without consumers
// whose messages expire after the delay and are then dead-lettered to exchange dlx with routing key
// dlrk. queueLabel (the pipeline's queue) is part of the name for readability.
func (d *Driver) publishDelayed(ctx context.Context, s *session, delayMs int64, dlx, queueLabel, dlrk string, msg amqp.Publishing) error {
	name := delayQueueName(delayMs, dlx, queueLabel, dlrk)
	for attempt := 0; ; attempt++ {
		if err := d.declareDelayQueue(ctx, s, name, delayMs, dlx, dlrk, attempt > 0); err != nil {
			return err
		}
		msg.Expiration = "" // the queue's TTL rules
		err := d.publish(ctx, s, "", name, msg)
		var unroutable *unroutableError
		if errors.As(err, &unroutable) && attempt == 0 {
			// The delay queue expired or was deleted since it was last declared: declare it again.
			continue
		}
		return err
	}
}

// declareDelayQueue declares a delay queue unless it was declared on this connection recently
// enough: a queue expires 2×delay after its last declaration, and a message published within
// delay/2 of it leaves the queue by 1.5×delay.
func (d *Driver) declareDelayQueue(ctx context.Context, s *session, name string, delayMs int64, dlx, dlrk string, force bool) error {
	ttl := time.Duration(delayMs) * time.Millisecond
	s.declMu.Lock()
	last, ok := s.declared[name]
	s.declMu.Unlock()
	if ok && !force && time.Since(last) < ttl/2 {
		return nil
	}
	return s.call(ctx, func(ch *amqp.Channel) error {
		start := time.Now() // the broker's expiry clock starts no earlier than this
		_, err := ch.QueueDeclare(name, true, false, false, false, amqp.Table{
			"x-message-ttl":             delayMs,
			"x-expires":                 2 * delayMs,
			"x-dead-letter-exchange":    dlx,
			"x-dead-letter-routing-key": dlrk,
		})
		if err != nil {
			s.declMu.Lock()
			delete(s.declared, name)
			s.declMu.Unlock()
			return fmt.Errorf("declare delay queue %q: %w", name, err)
		}
		s.declMu.Lock()
		s.declared[name] = start
		s.declMu.Unlock()
		d.trackDelayQueue(name, time.Now().Add(2*ttl))
		return nil
	})
}

// delayQueueName names the delay queue of a delay and a dead-letter target. The name shows the
// delay, the exchange, the pipeline's queue and the routing key (roadrunner#1792: names made of
// less than that collided between pipelines), and ends with a hash of all of them, so two
// different targets never share a queue even when the readable part is ambiguous or truncated.
func delayQueueName(delayMs int64, exchange, queue, key string) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s\x00%s\x00%s", delayMs, exchange, queue, key)))
	suffix := "." + hex.EncodeToString(sum[:4])
	name := fmt.Sprintf("delayed-%d.%s.%s.%s", delayMs, exchange, queue, key)
	if len(name)+len(suffix) > maxNameLen {
		name = name[:maxNameLen-len(suffix)]
		for !utf8.ValidString(name) {
			name = name[:len(name)-1]
		}
	}
	return strings.ToValidUTF8(name, "_") + suffix
}

// DelayQueueName is the name of the queue where a job pushed with delay waits before it is
// dead-lettered to exchange with routingKey (queue is the pipeline's queue). A requeued job waits in
// DelayQueueName(delay, "", queue, queue): it goes back straight to its queue.
func DelayQueueName(delay time.Duration, exchange, queue, routingKey string) string {
	return delayQueueName(delay.Milliseconds(), exchange, queue, routingKey)
}
