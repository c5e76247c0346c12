package nats

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// delayedToken ends the subject of the pipeline's delayed jobs: <subject>.rr-delayed.
	delayedToken = "rr-delayed"
	// delayedAckWait is the AckWait of the delayed-jobs consumer (its messages are handled at once).
	delayedAckWait = 30 * time.Second
	// maxConsumerPipelineLen bounds the pipeline part of a consumer name.
	maxConsumerPipelineLen = 48
	// setupAttempts bounds the retries when other pipelines change the same stream concurrently.
	setupAttempts = 5
)

// streamLocks serialise the setup of this process's pipelines per server and stream.
var streamLocks sync.Map // addr + "\x00" + stream -> *sync.Mutex

func lockStream(addr, stream string) (unlock func()) {
	v, _ := streamLocks.LoadOrStore(addr+"\x00"+stream, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// retryableSetupError: another process changed the stream while this one set it up (a consumer
// whose subject was just removed from the stream, a stream replaced or being created).
func retryableSetupError(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamNotFound, jetstream.JSErrCodeStreamNameInUse:
			return true
		case 10093: // consumer filter subject is not a valid subset of the interest subjects
			return true
		}
	}
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, errSubjectsChanged)
}

// errSubjectsChanged: the stream's subjects kept changing while they were being added.
var errSubjectsChanged = errors.New("the stream's subjects were changed concurrently")

// delayedSubject is where the pipeline's delayed jobs wait until they are due.
func delayedSubject(subject string) string { return subject + "." + delayedToken }

// consumerNames returns the durable consumer names of a pipeline: derived from the pipeline name
// and its subject (the stream holds them), so every rr instance running the pipeline shares them,
// and a restart continues where the last run stopped.
func consumerNames(pipeline, subject string) (main, delayed string) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(subject))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(pipeline))
	var b strings.Builder
	b.WriteString("rrjobs_")
	for _, r := range pipeline {
		if b.Len() >= len("rrjobs_")+maxConsumerPipelineLen {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	main = fmt.Sprintf("%s_%08x", b.String(), h.Sum32())
	return main, main + "_delayed"
}

// subjectMatches reports whether the subject filter pattern (with * and > wildcards) covers subject.
func subjectMatches(pattern, subject string) bool {
	pt := strings.Split(pattern, ".")
	st := strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) {
			return false
		}
		if p != "*" && p != st[i] {
			return false
		}
	}
	return len(pt) == len(st)
}

func covered(subjects []string, subject string) bool {
	for _, s := range subjects {
		if subjectMatches(s, subject) {
			return true
		}
	}
	return false
}

// redactURL hides passwords and tokens in a server address for logs and errors.
func redactURL(addr string) string {
	parts := strings.Split(addr, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// ensureStream creates the stream with the pipeline's subjects, or adds the missing ones to an
// existing stream (keeping the rest of its configuration, and subjects its wildcards already
// cover). Other pipelines may update the same stream at once: the subjects are checked again
// until they are all there.
func ensureStream(ctx context.Context, js jetstream.JetStream, name string, subjects []string) (jetstream.Stream, error) {
	var lastErr error
	for attempt := 0; attempt < setupAttempts; attempt++ {
		s, err := js.Stream(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			s, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects})
			if err != nil {
				if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
					lastErr = err
					continue
				}
				return nil, fmt.Errorf("create stream %q with subjects %v: %w", name, subjects, err)
			}
			return s, nil
		case err != nil:
			return nil, fmt.Errorf("look up stream %q: %w", name, err)
		}
		cfg := s.CachedInfo().Config
		var missing []string
		for _, sub := range subjects {
			if !covered(cfg.Subjects, sub) {
				missing = append(missing, sub)
			}
		}
		if len(missing) == 0 {
			return s, nil
		}
		cfg.Subjects = append(slices.Clone(cfg.Subjects), missing...)
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("add subjects %v to stream %q: %w", missing, name, err)
		}
		lastErr = fmt.Errorf("add subjects %v to stream %q: %w", missing, name, errSubjectsChanged)
	}
	return nil, lastErr
}

// ensureConsumer creates the durable pull consumer, or updates it. A deliver policy cannot change:
// an existing consumer keeps its own (deliver_new applies to a consumer being created).
func ensureConsumer(ctx context.Context, s jetstream.Stream, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	existing, err := s.Consumer(ctx, cfg.Durable)
	switch {
	case err == nil:
		old := existing.CachedInfo().Config
		cfg.DeliverPolicy = old.DeliverPolicy
		cfg.OptStartSeq = old.OptStartSeq
		cfg.OptStartTime = old.OptStartTime
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("look up consumer %q: %w", cfg.Durable, err)
	}
	c, err := s.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %q on subject %q: %w", cfg.Durable, cfg.FilterSubject, err)
	}
	return c, nil
}

// connect dials the server. nats.go reconnects by itself for ever (every second, with jitter);
// publishes made while it reconnects are buffered (acks and progress signals reach the server
// after the reconnect), but the driver refuses pushes while disconnected.
func connect(addr, pipeline string, d *Driver) (*nats.Conn, error) {
	return nats.Connect(addr,
		nats.Name("rrjobs:"+pipeline),
		nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(d.onDisconnect),
		nats.ReconnectHandler(d.onReconnect),
		nats.ErrorHandler(d.onAsyncError),
	)
}
