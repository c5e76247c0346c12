package drivertest

import (
	"context"
	"testing"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
)

// Checks every driver's tests make of what a driver handed to the queue and what its State says.

// Take waits up to within for the next job in q and builds its Context, as a poller does.
func Take(t testing.TB, q *Queue, within time.Duration) jobs.Job {
	t.Helper()
	j, ok := q.ExtractMinTimeout(within)
	if !ok {
		t.Fatalf("no job arrived within %s", within)
	}
	if _, err := j.Context(); err != nil {
		t.Fatalf("job %q: context: %v", j.ID(), err)
	}
	return j
}

// RequireNoJob fails the test when a job arrives in q within quiet.
func RequireNoJob(t testing.TB, q *Queue, quiet time.Duration) {
	t.Helper()
	if j, ok := q.ExtractMinTimeout(quiet); ok {
		t.Fatalf("unexpected job %q arrived", j.ID())
	}
}

// Counts is what a driver's State counts: active (ready), delayed, reserved.
type Counts [3]int64

// CountsOf returns st's counts.
func CountsOf(st *jobs.State) Counts { return Counts{st.Active, st.Delayed, st.Reserved} }

// State calls d.State and fails the test on an error, a nil state or a negative count (a stock
// driver reported negative counts after a stop).
func State(t testing.TB, d jobs.Driver) *jobs.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := d.State(ctx)
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if st == nil {
		t.Fatal("State returned nil")
	}
	if st.Active < 0 || st.Delayed < 0 || st.Reserved < 0 {
		t.Fatalf("State has a negative count: active/delayed/reserved %v", CountsOf(st))
	}
	return st
}

// RequireCounts waits up to within until d's State reports want and no error.
func RequireCounts(t testing.TB, d jobs.Driver, want Counts, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := State(t, d)
		if st.ErrorMessage == "" && CountsOf(st) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for active/delayed/reserved %v, got %v (error %q)", within, want, CountsOf(st), st.ErrorMessage)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
