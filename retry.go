package jobs

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Headers the retry policy reads and writes. PHP reads headers case-sensitively: these are the exact
// names a worker sees.
const (
	// HeaderAttempt is the number of the current run of the job: 1 on the first delivery.
	HeaderAttempt = "rr-attempt"
	// HeaderDeadLetterFrom names the pipeline a dead-lettered job ran out of attempts in.
	HeaderDeadLetterFrom = "rr-dead-letter-from"
	// HeaderDeadLetterAttempts is how many times the job ran before it was dead-lettered.
	HeaderDeadLetterAttempts = "rr-dead-letter-attempts"
	// HeaderDeadLetterError is the last failure: the worker's message or what killed the run.
	HeaderDeadLetterError = "rr-dead-letter-error"
)

// Keys of a pipeline's retry policy, inside `config:` (Declare sends them flat: "retry.max_attempts").
const (
	keyRetry      = "retry"
	keyDeadLetter = "dead_letter"
)

// Backoff kinds.
const (
	backoffExponential = "exponential"
	backoffFixed       = "fixed"
)

// retryPolicy decides what happens to a job whose run failed. A pipeline without a `retry` section
// has none, and keeps the stock behaviour.
type retryPolicy struct {
	// maxAttempts is how many runs a job gets in all, the first included.
	maxAttempts int
	backoff     string
	initial     time.Duration
	max         time.Duration
	multiplier  float64
	// jitter spreads each delay by up to ±jitter of itself, so failed jobs do not come back in lockstep.
	jitter float64
	// deadLetter names the pipeline that receives jobs out of attempts ("" = drop them).
	deadLetter string
}

// defaultRetryPolicy holds the documented defaults of every key but max_attempts.
func defaultRetryPolicy() retryPolicy {
	return retryPolicy{
		maxAttempts: 3,
		backoff:     backoffExponential,
		initial:     time.Second,
		max:         5 * time.Minute,
		multiplier:  2,
		jitter:      0.1,
	}
}

// delay returns how long to wait before run attempt+1, after run `attempt` (1-based) failed. Drivers
// take whole seconds, so it is rounded up and never below 1 s.
func (r *retryPolicy) delay(attempt int) int {
	d := float64(r.initial)
	if r.backoff == backoffExponential {
		d *= math.Pow(r.multiplier, float64(max(attempt-1, 0)))
	}
	d = min(d, float64(r.max))
	if r.jitter > 0 {
		d += d * r.jitter * (2*rand.Float64() - 1) //nolint:gosec // jitter needs no crypto
	}
	return max(int(math.Ceil(d/float64(time.Second))), 1)
}

// exhausted reports whether a job whose run `attempt` failed has no attempts left.
func (r *retryPolicy) exhausted(attempt int) bool { return attempt >= r.maxAttempts }

// attemptOf reads the attempt number from job headers (1 when absent or unreadable).
func attemptOf(headers map[string][]string) int {
	v := headers[HeaderAttempt]
	if len(v) == 0 {
		return 1
	}
	n, err := strconv.Atoi(strings.TrimSpace(v[0]))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// parseRetryPolicy reads a pipeline's `retry` and `dead_letter` settings, from .rr.yaml (a nested
// map) or Declare (flat "retry.x" strings, or `retry` as a JSON object). where prefixes key names in
// errors, e.g. "jobs.pipelines.p1.config.". It returns nil when the pipeline has no retry section.
func parseRetryPolicy(p Pipeline, where string) (*retryPolicy, error) {
	settings, err := retrySettings(p)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", where, keyRetry, err)
	}
	deadLetter := p.String(keyDeadLetter, "")
	if settings == nil {
		if deadLetter != "" {
			return nil, fmt.Errorf("%s%s needs a %s section (max_attempts) to know when a job is dead", where, keyDeadLetter, keyRetry)
		}
		return nil, nil
	}
	r := defaultRetryPolicy()
	r.deadLetter = deadLetter
	if r.deadLetter == p.Name() && r.deadLetter != "" {
		return nil, fmt.Errorf("%s%s: a pipeline cannot be its own dead-letter pipeline (%q)", where, keyDeadLetter, r.deadLetter)
	}
	for key, raw := range settings {
		if err := r.set(key, raw); err != nil {
			return nil, fmt.Errorf("%s%s.%s: %w", where, keyRetry, key, err)
		}
	}
	if r.max < r.initial {
		return nil, fmt.Errorf("%s%s.max (%s) must be >= %s.initial (%s)", where, keyRetry, r.max, keyRetry, r.initial)
	}
	return &r, nil
}

// retrySettings collects the retry keys whatever the layout.
func retrySettings(p Pipeline) (map[string]any, error) {
	out := map[string]any{}
	switch v := p.Get(keyRetry).(type) {
	case nil:
	case map[string]any:
		for k, x := range v {
			out[k] = x
		}
	case string:
		if strings.TrimSpace(v) != "" {
			if err := json.Unmarshal([]byte(v), &out); err != nil {
				return nil, fmt.Errorf("not a JSON object: %w", err)
			}
		}
	default:
		return nil, fmt.Errorf("must be a map, got %T", v)
	}
	// Declare: flat "retry.<key>" entries.
	for k, x := range p {
		if rest, ok := strings.CutPrefix(k, keyRetry+"."); ok {
			out[rest] = x
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func (r *retryPolicy) set(key string, raw any) error {
	switch key {
	case "max_attempts":
		n, err := toInt64(raw)
		if err != nil || n < 1 {
			return fmt.Errorf("must be an integer >= 1, got %v", raw)
		}
		r.maxAttempts = int(n)
	case "backoff":
		s := fmt.Sprint(raw)
		if s != backoffExponential && s != backoffFixed {
			return fmt.Errorf("must be %q or %q, got %q", backoffExponential, backoffFixed, s)
		}
		r.backoff = s
	case "initial", "max":
		d, err := toDuration(raw)
		if err != nil || d <= 0 {
			return fmt.Errorf("must be a positive duration like 1s or 2m, got %v", raw)
		}
		if key == "initial" {
			r.initial = d
		} else {
			r.max = d
		}
	case "multiplier":
		f, err := toFloat(raw)
		if err != nil || f < 1 {
			return fmt.Errorf("must be a number >= 1, got %v", raw)
		}
		r.multiplier = f
	case "jitter":
		f, err := toFloat(raw)
		if err != nil || f < 0 || f > 1 {
			return fmt.Errorf("must be a number between 0 and 1, got %v", raw)
		}
		r.jitter = f
	default:
		return fmt.Errorf("unknown key (known: max_attempts, backoff, initial, max, multiplier, jitter)")
	}
	return nil
}

func toDuration(v any) (time.Duration, error) {
	switch t := v.(type) {
	case time.Duration:
		return t, nil
	case string:
		return time.ParseDuration(strings.TrimSpace(t))
	default:
		// A bare number is seconds.
		n, err := toFloat(v)
		return time.Duration(n * float64(time.Second)), err
	}
}

func toFloat(v any) (float64, error) {
	switch t := v.(type) {
	case float64:
		return t, nil
	case float32:
		return float64(t), nil
	case string:
		return strconv.ParseFloat(strings.TrimSpace(t), 64)
	default:
		n, err := toInt64(v)
		return float64(n), err
	}
}
