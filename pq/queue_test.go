package pq

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
)

// The jobs plugin stores a *Queue[jobs.Job] where the API expects a jobs.Queue.
var _ jobs.Queue = (*Queue[jobs.Job])(nil)

// testItem is a minimal Item. Pointers are queued so identity can be checked with require.Same.
type testItem struct {
	id       string
	group    string
	priority int64
}

func (t *testItem) ID() string      { return t.id }
func (t *testItem) GroupID() string { return t.group }
func (t *testItem) Priority() int64 { return t.priority }

func item(id string, group string, priority int64) *testItem {
	return &testItem{id: id, group: group, priority: priority}
}

// patience bounds every wait for something that should happen; tests never sleep to let it happen.
const patience = 5 * time.Second

// waitUntil polls cond (yielding, not sleeping) until it holds, failing the test after patience.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		runtime.Gosched()
	}
}

// waiters reports how many goroutines are parked in Insert and in ExtractMin.
func waiters[T Item](q *Queue[T]) (inserters, extractors int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.insertWaiters, q.extractWaiters
}

func waitInserters[T Item](t *testing.T, q *Queue[T], n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d inserters are blocked", n), func() bool { i, _ := waiters(q); return i == n })
}

func waitExtractors[T Item](t *testing.T, q *Queue[T], n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d extractors are blocked", n), func() bool { _, e := waiters(q); return e == n })
}

// requireOpen asserts that done has not been closed: the goroutine behind it is still blocked.
// It is only a sanity check after the goroutine is known to be parked, so a short look suffices.
func requireOpen(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
		t.Fatalf("%s returned, want it blocked", what)
	case <-time.After(10 * time.Millisecond):
	}
}

// requireClosed waits (up to patience) for done to be closed.
func requireClosed(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(patience):
		t.Fatalf("%s is still blocked", what)
	}
}

// waitGroupDone returns a channel that is closed when wg's goroutines have all returned.
func waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// requireValidHeap checks the heap property and that every slot past the length is zeroed.
func requireValidHeap[T Item](t *testing.T, q *Queue[T]) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	h := q.heap
	for i := 1; i < len(h); i++ {
		if h[i].less(&h[(i-1)/2]) {
			t.Fatalf("heap order broken at %d: child (%d,%d) < parent (%d,%d)",
				i, h[i].priority, h[i].seq, h[(i-1)/2].priority, h[(i-1)/2].seq)
		}
	}
	for i, e := range h[len(h):cap(h)] {
		if e.priority != 0 || e.seq != 0 || !reflect.ValueOf(&e.item).Elem().IsZero() {
			t.Fatalf("vacated slot %d still holds an entry", len(h)+i)
		}
	}
}

func drain[T Item](q *Queue[T]) []T {
	var out []T
	for q.Len() > 0 {
		out = append(out, q.ExtractMin())
	}
	return out
}

func ids(items []*testItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.id
	}
	return out
}

func TestExtractMinReturnsLowestPriorityFirst(t *testing.T) {
	q := New[*testItem](0)
	for _, p := range []int64{5, -3, 0, math.MaxInt64, 2, math.MinInt64, -1} {
		q.Insert(item(strconv.FormatInt(p, 10), "g", p))
	}
	require.Equal(t, uint64(7), q.Len())

	var got []int64
	for _, it := range drain(q) {
		got = append(got, it.priority)
	}
	require.Equal(t, []int64{math.MinInt64, -3, -1, 0, 2, 5, math.MaxInt64}, got)
	require.Zero(t, q.Len())
}

func TestEqualPrioritiesComeOutInInsertionOrder(t *testing.T) {
	const n = 10_000
	r := rand.New(rand.NewPCG(1, 2))
	q := New[*testItem](0)
	inserted := make([]*testItem, n)
	for i := range inserted {
		inserted[i] = item(strconv.Itoa(i), "g", []int64{-2, 0, 1, 10}[r.IntN(4)])
		q.Insert(inserted[i])
	}

	// A stable sort by priority alone is exactly the FIFO-among-equals order.
	want := slices.Clone(inserted)
	slices.SortStableFunc(want, func(a, b *testItem) int { return cmp.Compare(a.priority, b.priority) })

	require.Equal(t, ids(want), ids(drain(q)))
}

func TestExtractMinBlocksWhileEmpty(t *testing.T) {
	q := New[*testItem](0)
	done := make(chan struct{})
	var got *testItem
	go func() {
		defer close(done)
		got = q.ExtractMin()
	}()

	waitExtractors(t, q, 1)
	requireOpen(t, done, "ExtractMin on an empty queue")

	want := item("a", "g", 1)
	q.Insert(want)
	requireClosed(t, done, "ExtractMin after Insert")
	require.Same(t, want, got)
}

func TestInsertBlocksWhenFullUntilExtractMin(t *testing.T) {
	q := New[*testItem](2)
	q.Insert(item("a", "g", 1))
	q.Insert(item("b", "g", 2))

	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Insert(item("c", "g", 0))
	}()

	waitInserters(t, q, 1)
	requireOpen(t, done, "Insert into a full queue")
	require.Equal(t, uint64(2), q.Len())

	require.Equal(t, "a", q.ExtractMin().id)
	requireClosed(t, done, "Insert after ExtractMin made room")
	require.Equal(t, []string{"c", "b"}, ids(drain(q)))
}

func TestInsertBlocksWhenFullUntilRemove(t *testing.T) {
	q := New[*testItem](3)
	q.Insert(item("a", "stopped", 1))
	q.Insert(item("b", "live", 1))
	q.Insert(item("c", "stopped", 1))

	// Three blocked inserters; removing two items must wake them all, two get in, one keeps waiting.
	var inserted atomic.Int32
	for i := range 3 {
		go func() {
			q.Insert(item("new"+strconv.Itoa(i), "live", 0))
			inserted.Add(1)
		}()
	}
	waitInserters(t, q, 3)

	removed := q.Remove("stopped")
	require.Equal(t, []string{"a", "c"}, ids(removed))
	waitUntil(t, "two inserters got in", func() bool { return inserted.Load() == 2 })
	waitInserters(t, q, 1)
	require.Equal(t, uint64(3), q.Len())

	q.ExtractMin()
	waitUntil(t, "the last inserter got in", func() bool { return inserted.Load() == 3 })
	requireValidHeap(t, q)
}

func TestInsertContextGivesUpWhenContextEnds(t *testing.T) {
	q := New[*testItem](1)
	q.Insert(item("a", "g", 1))

	t.Run("cancel while blocked", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- q.InsertContext(ctx, item("b", "g", 1)) }()
		waitInserters(t, q, 1)

		cancel()
		select {
		case err := <-errc:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(patience):
			t.Fatal("InsertContext ignored the cancellation")
		}
		require.Equal(t, uint64(1), q.Len())
	})

	t.Run("deadline while blocked", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		require.ErrorIs(t, q.InsertContext(ctx, item("b", "g", 1)), context.DeadlineExceeded)
		require.Less(t, time.Since(start), patience)
		require.Equal(t, uint64(1), q.Len())
	})

	t.Run("already done with room", func(t *testing.T) {
		roomy := New[*testItem](0)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.ErrorIs(t, roomy.InsertContext(ctx, item("b", "g", 1)), context.Canceled)
		require.Zero(t, roomy.Len())
	})

	t.Run("succeeds once there is room", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() { errc <- q.InsertContext(t.Context(), item("b", "g", 1)) }()
		waitInserters(t, q, 1)
		require.Equal(t, "a", q.ExtractMin().id)
		require.NoError(t, <-errc)
		require.Equal(t, "b", q.ExtractMin().id)
	})

	inserters, extractors := waiters(q)
	require.Zero(t, inserters)
	require.Zero(t, extractors)
}

func TestExtractMinContextGivesUpWhenContextEnds(t *testing.T) {
	q := New[*testItem](0)

	t.Run("cancel while blocked", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		type result struct {
			item *testItem
			err  error
		}
		res := make(chan result, 1)
		go func() {
			it, err := q.ExtractMinContext(ctx)
			res <- result{it, err}
		}()
		waitExtractors(t, q, 1)

		cancel()
		select {
		case r := <-res:
			require.ErrorIs(t, r.err, context.Canceled)
			require.Nil(t, r.item)
		case <-time.After(patience):
			t.Fatal("ExtractMinContext ignored the cancellation")
		}
	})

	t.Run("deadline while blocked", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		it, err := q.ExtractMinContext(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Nil(t, it)
	})

	t.Run("already done leaves queued items alone", func(t *testing.T) {
		q.Insert(item("a", "g", 1))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		it, err := q.ExtractMinContext(ctx)
		require.ErrorIs(t, err, context.Canceled)
		require.Nil(t, it)
		require.Equal(t, uint64(1), q.Len())
	})

	t.Run("returns an item when there is one", func(t *testing.T) {
		it, err := q.ExtractMinContext(t.Context())
		require.NoError(t, err)
		require.Equal(t, "a", it.id)
	})

	_, extractors := waiters(q)
	require.Zero(t, extractors)
}

// A cancelled waiter must return even when it is not the longest-waiting one: the cancellation
// has to reach it, not whichever goroutine sync.Cond would wake first.
func TestCancellationWakesTheCancelledWaiter(t *testing.T) {
	t.Run("extractor", func(t *testing.T) {
		q := New[*testItem](0)
		plain := make(chan struct{})
		go func() {
			defer close(plain)
			q.ExtractMin()
		}()
		waitExtractors(t, q, 1)

		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := q.ExtractMinContext(ctx)
			errc <- err
		}()
		waitExtractors(t, q, 2)

		cancel()
		select {
		case err := <-errc:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(patience):
			t.Fatal("the cancelled ExtractMinContext is still blocked")
		}
		waitExtractors(t, q, 1)
		requireOpen(t, plain, "ExtractMin on an empty queue")
		q.Insert(item("a", "g", 1))
		requireClosed(t, plain, "ExtractMin after Insert")
	})

	t.Run("inserter", func(t *testing.T) {
		q := New[*testItem](1)
		q.Insert(item("a", "g", 1))
		plain := make(chan struct{})
		go func() {
			defer close(plain)
			q.Insert(item("b", "g", 1))
		}()
		waitInserters(t, q, 1)

		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- q.InsertContext(ctx, item("c", "g", 1)) }()
		waitInserters(t, q, 2)

		cancel()
		select {
		case err := <-errc:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(patience):
			t.Fatal("the cancelled InsertContext is still blocked")
		}
		waitInserters(t, q, 1)
		requireOpen(t, plain, "Insert into a full queue")
		require.Equal(t, "a", q.ExtractMin().id)
		requireClosed(t, plain, "Insert after ExtractMin")
		require.Equal(t, []string{"b"}, ids(drain(q)))
	})
}

// Extractors whose contexts end while items arrive must neither take an item and drop it nor
// swallow the wake-up that was meant to hand an item to a plain ExtractMin.
func TestCancelledExtractMinContextDoesNotLoseItems(t *testing.T) {
	const (
		producers = 4
		perProd   = 2_000
		flaky     = 4
		total     = producers * perProd
	)
	q := New[*testItem](0)
	seen := make([]atomic.Int32, total)
	var taken atomic.Int32
	record := func(it *testItem) {
		n, err := strconv.Atoi(it.id)
		if err != nil {
			panic(err)
		}
		seen[n].Add(1)
		taken.Add(1)
	}

	// Flaky consumers: every call has a tiny random timeout or is cancelled by a racing goroutine.
	stopFlaky := make(chan struct{})
	var flakyWG sync.WaitGroup
	for c := range flaky {
		flakyWG.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for {
				select {
				case <-stopFlaky:
					return
				default:
				}
				var ctx context.Context
				var cancel context.CancelFunc
				if r.IntN(2) == 0 {
					ctx, cancel = context.WithTimeout(t.Context(), time.Duration(r.IntN(50))*time.Microsecond)
				} else {
					ctx, cancel = context.WithCancel(t.Context())
					go cancel()
				}
				if it, err := q.ExtractMinContext(ctx); err == nil {
					record(it)
				}
				cancel()
			}
		})
	}

	// One plain consumer that only a correct wake-up can get going again.
	plainDone := make(chan struct{})
	go func() {
		defer close(plainDone)
		for {
			it := q.ExtractMin()
			if it.group == "stop" {
				return
			}
			record(it)
		}
	}()

	var prodWG sync.WaitGroup
	for p := range producers {
		prodWG.Go(func() {
			for i := range perProd {
				n := p*perProd + i
				q.Insert(item(strconv.Itoa(n), "g", int64(n%5)))
			}
		})
	}
	requireClosed(t, waitGroupDone(&prodWG), "the producers")
	close(stopFlaky)
	requireClosed(t, waitGroupDone(&flakyWG), "the flaky consumers")

	// Only the plain consumer is left. If a wake-up was lost it sits parked next to queued items.
	waitUntil(t, "every item is taken", func() bool { return taken.Load() == total })
	q.Insert(item("stop", "stop", math.MaxInt64))
	requireClosed(t, plainDone, "the plain consumer")

	for n := range seen {
		require.Equal(t, int32(1), seen[n].Load(), "item %d", n)
	}
	require.Zero(t, q.Len())
}

func TestRemoveReturnsTheGroupInQueueOrder(t *testing.T) {
	q := New[*testItem](0)
	q.Insert(item("a1", "a", 3))
	q.Insert(item("b1", "b", 1))
	q.Insert(item("a2", "a", -1))
	q.Insert(item("a3", "a", 3))
	q.Insert(item("b2", "b", 0))

	require.Nil(t, q.Remove("missing"))
	require.Equal(t, []string{"a2", "a1", "a3"}, ids(q.Remove("a")))
	require.Equal(t, uint64(2), q.Len())
	requireValidHeap(t, q)
	require.Equal(t, []string{"b2", "b1"}, ids(drain(q)))
}

func TestRemoveKeepsTheHeapValid(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	groups := []string{"a", "b", "c", "d", "e"}
	for range 50 {
		q := New[*testItem](0)
		for range 2_000 {
			switch r.IntN(10) {
			case 0:
				q.Remove(groups[r.IntN(len(groups))])
				requireValidHeap(t, q)
			case 1, 2:
				if q.Len() > 0 {
					q.ExtractMin()
				}
			default:
				q.Insert(item("", groups[r.IntN(len(groups))], r.Int64N(20)-10))
			}
		}
		requireValidHeap(t, q)

		// Drained entries must come out sorted by (priority, seq); compare the entries themselves.
		var got []entry[*testItem]
		for q.Len() > 0 {
			q.mu.Lock()
			got = append(got, q.heap.pop())
			q.mu.Unlock()
		}
		require.True(t, slices.IsSortedFunc(got, compare[*testItem]))
	}
}

func TestDrainGivesMemoryBack(t *testing.T) {
	const n = 100_000
	q := New[*testItem](0)
	for i := range n {
		q.Insert(item("", "g", int64(i%7)))
	}
	peak := cap(q.heap)
	require.GreaterOrEqual(t, peak, n)

	for range n - 10 {
		q.ExtractMin()
	}
	require.LessOrEqual(t, cap(q.heap), shrinkMinCap, "a drained queue keeps its peak array")
	requireValidHeap(t, q)

	for range n {
		q.Insert(item("", "big", 1))
	}
	require.Len(t, q.Remove("big"), n)
	require.LessOrEqual(t, cap(q.heap), peak/2)
	requireValidHeap(t, q)
	require.Equal(t, uint64(10), q.Len())
}

func TestExtractMinContextFastPathDoesNotAllocate(t *testing.T) {
	q := New[*testItem](0)
	it := item("a", "g", 1)
	ctx := t.Context()
	allocs := testing.AllocsPerRun(1000, func() {
		q.Insert(it)
		if _, err := q.ExtractMinContext(ctx); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func TestProducersAndConsumersTakeEveryItemExactlyOnce(t *testing.T) {
	const (
		producers = 8
		consumers = 4
		perProd   = 5_000
		total     = producers * perProd
	)
	q := New[*testItem](16) // small bound so producers keep blocking

	seen := make([]atomic.Int32, total)
	var claimed atomic.Int64
	var wg sync.WaitGroup
	for range consumers {
		wg.Go(func() {
			// Claim an extraction before making it, so exactly total ExtractMin calls happen.
			for claimed.Add(1) <= total {
				n, err := strconv.Atoi(q.ExtractMin().id)
				if err != nil {
					panic(err)
				}
				seen[n].Add(1)
			}
		})
	}
	for p := range producers {
		wg.Go(func() {
			for i := range perProd {
				n := p*perProd + i
				q.Insert(item(strconv.Itoa(n), "g", int64(n%3)))
			}
		})
	}

	requireClosed(t, waitGroupDone(&wg), "producers and consumers")

	for n := range seen {
		require.Equal(t, int32(1), seen[n].Load(), "item %d", n)
	}
	require.Zero(t, q.Len())
}

// chooser supplies the decisions of a model run: from a seeded generator, or from fuzz input.
type chooser interface {
	// intN returns a value in [0, n); ok is false when the source is exhausted.
	intN(n int) (v int, ok bool)
}

type randChooser struct{ r *rand.Rand }

func (c randChooser) intN(n int) (int, bool) { return c.r.IntN(n), true }

type byteChooser struct{ data []byte }

func (c *byteChooser) intN(n int) (int, bool) {
	if len(c.data) == 0 {
		return 0, false
	}
	v := int(c.data[0]) % n
	c.data = c.data[1:]
	return v, true
}

// model is the reference implementation: a slice kept sorted by (priority, insertion).
type model struct {
	items []*testItem
}

func (m *model) insert(it *testItem) {
	// it goes after every item of the same or lower priority: those were all inserted earlier.
	i := slices.IndexFunc(m.items, func(e *testItem) bool { return e.priority > it.priority })
	if i < 0 {
		i = len(m.items)
	}
	m.items = slices.Insert(m.items, i, it)
}

func (m *model) extractMin() *testItem {
	it := m.items[0]
	m.items = m.items[1:]
	return it
}

func (m *model) remove(group string) []*testItem {
	var gone, kept []*testItem
	for _, it := range m.items {
		if it.group == group {
			gone = append(gone, it)
		} else {
			kept = append(kept, it)
		}
	}
	m.items = kept
	return gone
}

// runModel applies the same random operations to a Queue and to the model and compares every
// result. maxLen > 0 also exercises the bound, with cancelled contexts standing in for blocking.
func runModel(t *testing.T, c chooser, maxLen uint64, steps int) {
	t.Helper()
	q := New[*testItem](maxLen)
	m := &model{}
	groups := []string{"a", "b", "c", "d"}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	for step := 0; step < steps; step++ {
		op, ok := c.intN(10)
		if !ok {
			break
		}
		switch op {
		case 0, 1, 2, 3: // insert
			p, _ := c.intN(7)
			g, _ := c.intN(len(groups))
			it := item(strconv.Itoa(step), groups[g], int64(p-3))
			if maxLen > 0 && uint64(len(m.items)) >= maxLen {
				require.ErrorIs(t, q.InsertContext(cancelled, it), context.Canceled)
				break
			}
			if op == 3 {
				require.NoError(t, q.InsertContext(context.Background(), it))
			} else {
				q.Insert(it)
			}
			m.insert(it)
		case 4, 5: // extract
			if len(m.items) == 0 {
				it, err := q.ExtractMinContext(cancelled)
				require.ErrorIs(t, err, context.Canceled)
				require.Nil(t, it)
				break
			}
			want := m.extractMin()
			if op == 4 {
				require.Same(t, want, q.ExtractMin(), "step %d", step)
			} else {
				got, err := q.ExtractMinContext(context.Background())
				require.NoError(t, err)
				require.Same(t, want, got, "step %d", step)
			}
		case 6: // remove
			g, _ := c.intN(len(groups) + 1) // sometimes a group that is never used
			group := "none"
			if g < len(groups) {
				group = groups[g]
			}
			require.Equal(t, ids(m.remove(group)), ids(q.Remove(group)), "step %d", step)
		default: // len
			require.Equal(t, uint64(len(m.items)), q.Len(), "step %d", step)
		}
		requireValidHeap(t, q)
	}

	// Whatever is left must also come out in the model's order.
	require.Equal(t, ids(m.items), ids(drain(q)))
}

func TestQueueMatchesModel(t *testing.T) {
	for seed := range uint64(200) {
		maxLen := []uint64{0, 1, 5, 50}[seed%4]
		t.Run(fmt.Sprintf("seed=%d,maxLen=%d", seed, maxLen), func(t *testing.T) {
			runModel(t, randChooser{rand.New(rand.NewPCG(seed, 99))}, maxLen, 600)
		})
	}
}

func FuzzQueueMatchesModel(f *testing.F) {
	f.Add(uint8(0), []byte{0, 0, 0, 4, 6, 7, 5})
	f.Add(uint8(3), []byte{1, 2, 3, 0, 1, 2, 0, 5, 3, 4, 6, 1, 6, 2, 4, 4, 4, 4})
	f.Fuzz(func(t *testing.T, maxLen uint8, ops []byte) {
		runModel(t, &byteChooser{data: ops}, uint64(maxLen%8), len(ops))
	})
}
