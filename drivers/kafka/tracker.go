package kafka

import "container/heap"

// tpKey names a partition.
type tpKey struct {
	topic     string
	partition int32
}

// tracker follows the records of one partition this process fetched, to commit only offsets below
// which every record is finished: acked, finally nacked, or requeued (re-produced) successfully.
// Records are registered in offset order; settling may happen in any order. All access is under
// Driver.mu.
type tracker struct {
	key tpKey
	// pending are the registered, unsettled records in offset order; settled ones are dropped from
	// the front.
	pending []*entry
	// next is the offset after the last registered record.
	next int64
	// committed is the last offset committed for this partition by this tracker (-1: none).
	committed int64
	// dead is set when the partition was revoked or lost, or consumption was rewound: settling its
	// records no longer moves any commit.
	dead bool
	// queued and reserved count this partition's jobs in the shared queue and at workers.
	queued, reserved int
}

// entry is one registered record.
type entry struct {
	offset int64
	done   bool
}

func newTracker(key tpKey) *tracker {
	return &tracker{key: key, next: -1, committed: -1}
}

// add registers the record at offset.
func (t *tracker) add(offset int64) *entry {
	e := &entry{offset: offset}
	t.pending = append(t.pending, e)
	t.next = offset + 1
	return e
}

// settle marks e finished.
func (t *tracker) settle(e *entry) {
	e.done = true
	i := 0
	for i < len(t.pending) && t.pending[i].done {
		t.pending[i] = nil
		i++
	}
	if i > 0 {
		t.pending = t.pending[i:]
		if len(t.pending) == 0 {
			t.pending = nil
		}
	}
}

// commitPoint is the offset to commit: the first unsettled record, or the one after the last
// registered record when all are settled. ok is false before any record was registered.
func (t *tracker) commitPoint() (offset int64, ok bool) {
	if len(t.pending) > 0 {
		return t.pending[0].offset, true
	}
	return t.next, t.next >= 0
}

// delayQueue is a min-heap of delayed items by due time (then offset order).
type delayQueue []*Item

var _ heap.Interface = (*delayQueue)(nil)

func (q delayQueue) Len() int { return len(q) }

func (q delayQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}

func (q delayQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].heapIdx = i
	q[j].heapIdx = j
}

func (q *delayQueue) Push(x any) {
	it := x.(*Item) //nolint:forcetypeassert // only *Item is pushed
	it.heapIdx = len(*q)
	*q = append(*q, it)
}

func (q *delayQueue) Pop() any {
	old := *q
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	it.heapIdx = -1
	*q = old[:n-1]
	return it
}
