package jobs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRetryPolicyFromYAMLLayout(t *testing.T) {
	p := Pipeline{"name": "p", "driver": "memory", "config": map[string]any{
		"retry":       map[string]any{"max_attempts": 5, "backoff": "exponential", "initial": "2s", "max": "1m", "multiplier": 3, "jitter": 0},
		"dead_letter": "failed",
	}}
	r, err := parseRetryPolicy(p, "jobs.pipelines.p.config.")
	require.NoError(t, err)
	require.Equal(t, &retryPolicy{maxAttempts: 5, backoff: "exponential", initial: 2 * time.Second, max: time.Minute, multiplier: 3, deadLetter: "failed"}, r)
	require.Equal(t, []int{2, 6, 18, 54, 60, 60}, []int{r.delay(1), r.delay(2), r.delay(3), r.delay(4), r.delay(5), r.delay(9)})
	require.False(t, r.exhausted(4))
	require.True(t, r.exhausted(5))
}

func TestRetryPolicyFromDeclareStrings(t *testing.T) {
	p := Pipeline{"name": "d", "driver": "memory", "retry.max_attempts": "2", "retry.backoff": "fixed", "retry.initial": "3s", "retry.jitter": "0", "dead_letter": "dlq"}
	r, err := parseRetryPolicy(p, "")
	require.NoError(t, err)
	require.Equal(t, 2, r.maxAttempts)
	require.Equal(t, []int{3, 3, 3}, []int{r.delay(1), r.delay(2), r.delay(7)})
	require.Equal(t, "dlq", r.deadLetter)

	j := Pipeline{"name": "j", "retry": `{"max_attempts":4,"jitter":0.5}`}
	r, err = parseRetryPolicy(j, "")
	require.NoError(t, err)
	require.Equal(t, 4, r.maxAttempts)
	for range 100 {
		d := r.delay(1)
		require.True(t, d >= 1 && d <= 2, "1s ±50%% rounds up to 1 or 2 s, got %d", d)
	}
}

func TestRetryPolicyDefaultsAndAbsence(t *testing.T) {
	r, err := parseRetryPolicy(Pipeline{"name": "p", "config": map[string]any{"retry": map[string]any{}}}, "")
	require.NoError(t, err)
	require.Nil(t, r, "an empty retry section is no policy")
	r, err = parseRetryPolicy(Pipeline{"name": "p", "retry.max_attempts": "4"}, "")
	require.NoError(t, err)
	d := defaultRetryPolicy()
	d.maxAttempts = 4
	require.Equal(t, &d, r)
	r, err = parseRetryPolicy(Pipeline{"name": "p"}, "")
	require.NoError(t, err)
	require.Nil(t, r)
}

func TestRetryPolicyErrorsNameTheKey(t *testing.T) {
	cases := map[string]struct {
		cfg  map[string]any
		want string
	}{
		"zero attempts":         {map[string]any{"retry": map[string]any{"max_attempts": 0}}, "jobs.pipelines.p.config.retry.max_attempts: must be an integer >= 1, got 0"},
		"bad backoff":           {map[string]any{"retry": map[string]any{"backoff": "linear"}}, `retry.backoff: must be "exponential" or "fixed", got "linear"`},
		"bad initial":           {map[string]any{"retry": map[string]any{"initial": "soon"}}, "retry.initial: must be a positive duration"},
		"small multiplier":      {map[string]any{"retry": map[string]any{"multiplier": 0.5}}, "retry.multiplier: must be a number >= 1"},
		"jitter above one":      {map[string]any{"retry": map[string]any{"jitter": 2}}, "retry.jitter: must be a number between 0 and 1"},
		"unknown key":           {map[string]any{"retry": map[string]any{"attempts": 3}}, "retry.attempts: unknown key"},
		"max below initial":     {map[string]any{"retry": map[string]any{"initial": "1m", "max": "1s"}}, "retry.max (1s) must be >= retry.initial (1m0s)"},
		"dead letter alone":     {map[string]any{"dead_letter": "x"}, "dead_letter needs a retry section"},
		"itself as dead letter": {map[string]any{"retry": map[string]any{"max_attempts": 2}, "dead_letter": "p"}, "cannot be its own dead-letter pipeline"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parseRetryPolicy(Pipeline{"name": "p", "config": tc.cfg}, "jobs.pipelines.p.config.")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestConfigChecksTheDeadLetterPipelineExists(t *testing.T) {
	c := &Config{Pipelines: map[string]Pipeline{"p": {"driver": "memory", "config": map[string]any{"retry": map[string]any{"max_attempts": 2}, "dead_letter": "nope"}}}}
	require.ErrorContains(t, c.InitDefaults(), `jobs.pipelines.p.config.dead_letter: no such pipeline "nope"`)
}

func TestAttemptOf(t *testing.T) {
	require.Equal(t, 1, attemptOf(nil))
	require.Equal(t, 3, attemptOf(map[string][]string{HeaderAttempt: {"3"}}))
	require.Equal(t, 1, attemptOf(map[string][]string{HeaderAttempt: {"x"}}))
	require.Equal(t, 1, attemptOf(map[string][]string{HeaderAttempt: {"-2"}}))
}
