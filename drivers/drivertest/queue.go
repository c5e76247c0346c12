package drivertest

import (
	"sort"
	"sync"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
)

// Queue is a thread-safe jobs.Queue for tests: a slice kept ordered by priority (lower first) and
// then by insertion order, guarded by a mutex and a condition variable.
//
// ExtractMin blocks while the queue is empty. With a non-zero MaxLen, Insert blocks while the queue
// holds MaxLen items or more, like the plugin's queue under backpressure; Remove and ExtractMin
// wake it up.
type Queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []queued
	seq    uint64
	maxLen uint64
}

type queued struct {
	job jobs.Job
	seq uint64
}

var _ jobs.Queue = (*Queue)(nil)

// NewQueue returns an empty Queue. maxLen 0 means unbounded; otherwise Insert blocks while the
// queue holds maxLen items.
func NewQueue(maxLen uint64) *Queue {
	q := &Queue{maxLen: maxLen}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// init lazily sets up the cond so a zero Queue is usable.
func (q *Queue) init() {
	if q.cond == nil {
		q.cond = sync.NewCond(&q.mu)
	}
}

// Insert adds item after every item of the same or a higher priority. It blocks while the queue is
// full.
func (q *Queue) Insert(item jobs.Job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	for q.maxLen > 0 && uint64(len(q.items)) >= q.maxLen {
		q.cond.Wait()
	}
	q.seq++
	p := item.Priority()
	i := sort.Search(len(q.items), func(i int) bool { return q.items[i].job.Priority() > p })
	q.items = append(q.items, queued{})
	copy(q.items[i+1:], q.items[i:])
	q.items[i] = queued{job: item, seq: q.seq}
	q.cond.Broadcast()
}

// ExtractMin removes and returns the first item, blocking while the queue is empty.
func (q *Queue) ExtractMin() jobs.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	for len(q.items) == 0 {
		q.cond.Wait()
	}
	return q.popLocked()
}

// ExtractMinTimeout is ExtractMin giving up after d; ok is false on timeout.
func (q *Queue) ExtractMinTimeout(d time.Duration) (job jobs.Job, ok bool) {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer timer.Stop()

	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	for len(q.items) == 0 {
		if !time.Now().Before(deadline) {
			return nil, false
		}
		q.cond.Wait()
	}
	return q.popLocked(), true
}

// TryExtractMin removes and returns the first item without blocking; ok is false when empty.
func (q *Queue) TryExtractMin() (job jobs.Job, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	if len(q.items) == 0 {
		return nil, false
	}
	return q.popLocked(), true
}

func (q *Queue) popLocked() jobs.Job {
	j := q.items[0].job
	q.items[0] = queued{}
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = nil
	}
	q.cond.Broadcast()
	return j
}

// Remove deletes every item whose GroupID is group and returns them in queue order.
func (q *Queue) Remove(group string) []jobs.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	var removed []jobs.Job
	kept := q.items[:0]
	for _, it := range q.items {
		if it.job.GroupID() == group {
			removed = append(removed, it.job)
			continue
		}
		kept = append(kept, it)
	}
	for i := len(kept); i < len(q.items); i++ {
		q.items[i] = queued{}
	}
	q.items = kept
	q.cond.Broadcast()
	return removed
}

// Len returns the number of queued items.
func (q *Queue) Len() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return uint64(len(q.items))
}

// Items returns a snapshot of the queued items in queue order.
func (q *Queue) Items() []jobs.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]jobs.Job, len(q.items))
	for i, it := range q.items {
		out[i] = it.job
	}
	return out
}

// CountGroup returns how many queued items have GroupID group.
func (q *Queue) CountGroup(group string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, it := range q.items {
		if it.job.GroupID() == group {
			n++
		}
	}
	return n
}
