package pq

import (
	"context"
	"sync"
)

// Item is what the queue orders. It has the method set of Item in
// github.com/roadrunner-server/api/v4/plugins/v4/priority_queue, so every jobs.Job is one.
type Item interface {
	// ID identifies the item. The queue does not use it; it is part of the shared contract.
	ID() string
	// GroupID names the group Remove deletes by (the pipeline, for jobs).
	GroupID() string
	// Priority orders the queue: lower values come out first. It is read once, at insertion.
	Priority() int64
}

// Queue is a blocking priority queue, safe for concurrent use. Items come out by ascending
// Priority(), equal priorities in insertion order. Create it with New; a Queue must not be copied
// after first use.
type Queue[T Item] struct {
	mu sync.Mutex
	// notEmpty wakes extractors waiting for an item, notFull inserters waiting for room. Two
	// conditions rather than one let an insert wake only an extractor and vice versa.
	notEmpty sync.Cond
	notFull  sync.Cond

	heap   minHeap[T]
	seq    uint64 // sequence number of the last insertion; 2^64 insertions do not happen
	maxLen uint64 // 0: unbounded

	// Goroutines currently inside notEmpty.Wait and notFull.Wait. They let the hot paths skip
	// Signal when nobody waits, and let a waiter that gives up know whether to pass its wake-up on.
	// They can briefly count a goroutine that has already been woken but has not re-acquired mu;
	// that costs at most a spurious Signal, never a lost one.
	extractWaiters int
	insertWaiters  int
}

// New returns an empty queue that holds at most maxLen items; maxLen 0 means unbounded.
func New[T Item](maxLen uint64) *Queue[T] {
	q := &Queue[T]{maxLen: maxLen}
	q.notEmpty.L = &q.mu
	q.notFull.L = &q.mu
	return q
}

// Insert adds item. While the queue holds maxLen items it blocks until ExtractMin or Remove makes
// room; it waits on a condition variable, it does not spin.
func (q *Queue[T]) Insert(item T) {
	q.mu.Lock()
	for q.full() {
		q.insertWaiters++
		q.notFull.Wait()
		q.insertWaiters--
	}
	wake := q.push(item)
	q.mu.Unlock()
	// Signal after unlocking so the woken extractor does not immediately block on mu.
	if wake {
		q.notEmpty.Signal()
	}
}

// InsertContext is Insert that gives up when ctx is done: it then returns ctx.Err() and the item is
// not inserted. A ctx that is already done fails even if there is room, so a cancelled producer
// never adds to the queue.
func (q *Queue[T]) InsertContext(ctx context.Context, item T) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	if q.full() {
		if err := q.waitNotFull(ctx); err != nil {
			q.mu.Unlock()
			return err
		}
	}
	wake := q.push(item)
	q.mu.Unlock()
	if wake {
		q.notEmpty.Signal()
	}
	return nil
}

// TryInsert adds item unless the queue is full; it never blocks. It reports whether item was
// inserted. Producers that must not block (a driver's Push) use it to skip a hand-off to a goroutine
// of their own when there is room.
func (q *Queue[T]) TryInsert(item T) bool {
	q.mu.Lock()
	if q.full() {
		q.mu.Unlock()
		return false
	}
	wake := q.push(item)
	q.mu.Unlock()
	if wake {
		q.notEmpty.Signal()
	}
	return true
}

// ExtractMin removes and returns the item with the lowest Priority(); among equal priorities the
// one inserted first. It blocks while the queue is empty.
func (q *Queue[T]) ExtractMin() T {
	q.mu.Lock()
	for len(q.heap) == 0 {
		q.extractWaiters++
		q.notEmpty.Wait()
		q.extractWaiters--
	}
	item, wake := q.pop()
	q.mu.Unlock()
	if wake {
		q.notFull.Signal()
	}
	return item
}

// ExtractMinContext is ExtractMin that gives up when ctx is done: it then returns the zero T and
// ctx.Err(). Once ctx is done it never returns an item, even if one is queued: a poller that is
// being stopped must not take a job it will not run (handing it back would cost the job its place
// in line).
//
// When the queue is not empty it does not allocate; the context wake-up is registered only when it
// has to wait.
func (q *Queue[T]) ExtractMinContext(ctx context.Context) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	q.mu.Lock()
	if len(q.heap) == 0 {
		if err := q.waitNotEmpty(ctx); err != nil {
			q.mu.Unlock()
			var zero T
			return zero, err
		}
	}
	item, wake := q.pop()
	q.mu.Unlock()
	if wake {
		q.notFull.Signal()
	}
	return item, nil
}

// Remove deletes every item whose GroupID() is group and returns them in queue order (priority,
// then insertion), or nil if there were none. It rebuilds the heap in O(n) and wakes every blocked
// inserter, since it may have made room for many.
func (q *Queue[T]) Remove(group string) []T {
	q.mu.Lock()
	removed := q.heap.removeIf(func(item T) bool { return item.GroupID() == group })
	wake := len(removed) > 0 && q.insertWaiters > 0
	q.mu.Unlock()
	if wake {
		q.notFull.Broadcast()
	}
	return removed
}

// Len returns the number of queued items.
func (q *Queue[T]) Len() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return uint64(len(q.heap))
}

// full reports whether an insert has to wait. Callers hold mu.
func (q *Queue[T]) full() bool {
	return q.maxLen > 0 && uint64(len(q.heap)) >= q.maxLen
}

// push stamps item with the next sequence number and adds it. It reports whether an extractor is
// waiting and needs a Signal. Callers hold mu.
func (q *Queue[T]) push(item T) (wake bool) {
	q.seq++
	q.heap.push(entry[T]{priority: item.Priority(), seq: q.seq, item: item})
	return q.extractWaiters > 0
}

// pop removes the minimum, which must exist. It reports whether an inserter is waiting for the
// room this made and needs a Signal. Callers hold mu.
func (q *Queue[T]) pop() (item T, wake bool) {
	e := q.heap.pop()
	return e.item, q.insertWaiters > 0
}

// waitNotEmpty blocks until the queue has an item (nil) or ctx is done (ctx.Err()). Callers hold
// mu; it is held again on return.
func (q *Queue[T]) waitNotEmpty(ctx context.Context) error {
	// sync.Cond cannot wait on a channel, so ctx being done is turned into a Broadcast. The
	// callback takes mu first: a waiter checks ctx.Err() under mu before waiting, so the Broadcast
	// either comes after that waiter is parked or before its check, never in between.
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.notEmpty.Broadcast()
		q.mu.Unlock()
	})
	// stop does not wait for a running callback, so calling it with mu held cannot deadlock.
	defer stop()
	for {
		if err := ctx.Err(); err != nil {
			// An Insert may have signalled this goroutine just as ctx ended. Pass the wake-up on
			// so the item does not sit in the queue while another extractor sleeps. The
			// cancellation Broadcast would normally reach that extractor too; this does not depend
			// on how the two interleave, and costs nothing when nobody waits.
			if len(q.heap) > 0 && q.extractWaiters > 0 {
				q.notEmpty.Signal()
			}
			return err
		}
		if len(q.heap) > 0 {
			return nil
		}
		q.extractWaiters++
		q.notEmpty.Wait()
		q.extractWaiters--
	}
}

// waitNotFull is waitNotEmpty for inserters: it blocks until there is room (nil) or ctx is done
// (ctx.Err()). Callers hold mu; it is held again on return.
func (q *Queue[T]) waitNotFull(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.notFull.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	for {
		if err := ctx.Err(); err != nil {
			// The mirror image of waitNotEmpty: a wake-up meant for an inserter must not die here.
			if !q.full() && q.insertWaiters > 0 {
				q.notFull.Signal()
			}
			return err
		}
		if !q.full() {
			return nil
		}
		q.insertWaiters++
		q.notFull.Wait()
		q.insertWaiters--
	}
}
