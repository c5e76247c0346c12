package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/rrjobs/jobs/drivers/driverkit"
	"go.uber.org/zap"
)

// policyFor returns the retry policy of the job's pipeline, or nil.
func (h *jobHandler) policyFor(job jobs.Job) *retryPolicy {
	e := h.pipelines.get(job.GroupID())
	if e == nil {
		return nil
	}
	return e.retry
}

// retryOrGiveUp counts a failed run of job. With attempts left it requeues the job with the attempt
// header raised (after delay seconds, or the policy's backoff for policyDelay), extra headers merged
// in. Out of attempts, the job goes to the dead-letter pipeline or, without one, is dropped.
func (h *jobHandler) retryOrGiveUp(job jobs.Job, jobCtx []byte, policy *retryPolicy, extra map[string][]string, delay int, reason string) error {
	attempt := attemptOf(job.Headers())
	if policy.exhausted(attempt) {
		return h.giveUp(job, jobCtx, policy, attempt, reason)
	}
	if delay == policyDelay {
		delay = policy.delay(attempt)
	}
	headers := driverkit.MergeHeaders(extra, map[string][]string{HeaderAttempt: {strconv.Itoa(attempt + 1)}})
	h.metrics.jobsRequeue.Inc()
	h.metrics.retries.WithLabelValues(job.GroupID()).Inc()
	h.log.Warn("job failed, retrying", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()),
		zap.Int("attempt", attempt), zap.Int("max_attempts", policy.maxAttempts), zap.Int("delay_seconds", delay), zap.String("reason", reason))
	return job.Requeue(headers, delay)
}

// giveUp ends a job that ran out of attempts. The original is acknowledged only after the
// dead-letter pipeline accepted the copy; if it cannot, the job stays in its pipeline.
func (h *jobHandler) giveUp(job jobs.Job, jobCtx []byte, policy *retryPolicy, attempts int, reason string) error {
	if policy.deadLetter == "" {
		h.metrics.discarded.WithLabelValues(job.GroupID()).Inc()
		h.log.Error("job ran out of attempts and was dropped (the pipeline has no dead_letter pipeline)",
			zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.Int("attempts", attempts), zap.String("last_error", reason))
		return job.Ack()
	}
	if err := h.deadLetter(job, jobCtx, policy.deadLetter, attempts, reason); err != nil {
		delay := int(policy.max / time.Second)
		h.log.Error("job ran out of attempts but could not be dead-lettered; it stays in its pipeline",
			zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()), zap.String("dead_letter", policy.deadLetter), zap.Int("retry_in_seconds", delay), zap.Error(err))
		return job.Requeue(nil, max(delay, 1))
	}
	h.metrics.deadLettered.WithLabelValues(job.GroupID()).Inc()
	h.log.Warn("job ran out of attempts and was dead-lettered", zap.String("id", job.ID()), zap.String("pipeline", job.GroupID()),
		zap.String("dead_letter", policy.deadLetter), zap.Int("attempts", attempts), zap.String("last_error", reason))
	return job.Ack()
}

// deadLetter pushes a copy of job to the dead-letter pipeline, recording where it came from, how
// often it ran and why it failed last. Its attempt count starts again at 1 there.
func (h *jobHandler) deadLetter(job jobs.Job, jobCtx []byte, pipeline string, attempts int, reason string) error {
	e := h.pipelines.get(pipeline)
	if e == nil || e.driver == nil {
		return fmt.Errorf("dead-letter pipeline %q is not running", pipeline)
	}
	var name struct {
		Job string `json:"job"`
	}
	_ = json.Unmarshal(jobCtx, &name) // the name is informative; a context without it still moves

	headers := make(map[string][]string, len(job.Headers())+4)
	for k, v := range job.Headers() {
		headers[k] = v
	}
	headers[HeaderAttempt] = firstAttempt
	headers[HeaderDeadLetterFrom] = []string{job.GroupID()}
	headers[HeaderDeadLetterAttempts] = []string{strconv.Itoa(attempts)}
	headers[HeaderDeadLetterError] = []string{reason}

	msg := &Message{Job: name.Job, Ident: job.ID(), Pipeline: pipeline, Body: job.Body(), Hdr: headers, Prio: e.pipe.Priority()}
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	return e.driver.Push(ctx, msg)
}
