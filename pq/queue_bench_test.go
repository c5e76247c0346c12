package pq

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
)

// The benchmarks queue Item interface values, as the jobs plugin queues jobs.Job values. Items are
// built before the timer starts, so allocs/op counts only the queue's own allocations.

func benchItems(n int) []Item {
	r := rand.New(rand.NewPCG(42, 42))
	items := make([]Item, n)
	for i := range items {
		items[i] = item(strconv.Itoa(i), "bench", r.Int64N(100))
	}
	return items
}

// BenchmarkInsertThenExtract1M fills a queue with a million items and drains it again; one op is the
// whole round trip. The slice growth on the way up and the shrinking on the way down are included.
func BenchmarkInsertThenExtract1M(b *testing.B) {
	const n = 1_000_000
	items := benchItems(n)
	b.ReportAllocs()
	for b.Loop() {
		q := New[Item](0)
		for _, it := range items {
			q.Insert(it)
		}
		for range n {
			q.ExtractMin()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/item")
}

// BenchmarkSteadyState keeps the queue at a fixed depth and measures one Insert plus one
// ExtractMin, the poller's hot path. The backing array never grows, so it should not allocate.
// "same" is the common jobs case (every job has the default priority, the queue is a FIFO);
// "random" inserts items with priorities drawn from 0..99, cycling through a pre-built pool.
func BenchmarkSteadyState(b *testing.B) {
	for _, depth := range []int{1_000, 1_000_000} {
		for _, prio := range []string{"same", "random"} {
			b.Run("depth="+strconv.Itoa(depth)+"/priority="+prio, func(b *testing.B) {
				const poolSize = 1 << 12
				var pool []Item
				if prio == "same" {
					pool = make([]Item, poolSize)
					for i := range pool {
						pool[i] = item(strconv.Itoa(i), "bench", 10)
					}
				} else {
					pool = benchItems(poolSize)
				}
				q := New[Item](0)
				for i := range depth {
					q.Insert(pool[i%poolSize])
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					q.Insert(pool[i%poolSize])
					q.ExtractMin()
					i++
				}
			})
		}
	}
}

// BenchmarkParallelInsertExtract has every goroutine do Insert+ExtractMin pairs on one queue,
// which measures the mutex under contention rather than blocking.
func BenchmarkParallelInsertExtract(b *testing.B) {
	items := benchItems(1024)
	q := New[Item](0)
	for _, it := range items[:512] {
		q.Insert(it)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		next := items[512]
		for pb.Next() {
			q.Insert(next)
			next = q.ExtractMin()
		}
	})
}

// BenchmarkProducerConsumer moves b.N items through a bounded queue from 4 producers to 4
// consumers, so both Insert and ExtractMin block and wake each other. One op is one item.
func BenchmarkProducerConsumer(b *testing.B) {
	const producers, consumers = 4, 4
	items := benchItems(4096)
	q := New[Item](1024)
	b.ReportAllocs()
	b.ResetTimer()

	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := p; i < b.N; i += producers {
				q.Insert(items[i%len(items)])
			}
		})
	}
	for c := range consumers {
		wg.Go(func() {
			for i := c; i < b.N; i += consumers {
				q.ExtractMin()
			}
		})
	}
	wg.Wait()
}
