package boltdb

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

// BenchmarkPushAck measures durable throughput: `producers` goroutines push b.N jobs in total
// (each Push returns after its fsync'd commit) while `consumers` goroutines take jobs from the
// shared queue, call Context and Ack (each Ack returns after its commit). It reports jobs/s from
// the first push to the last ack.
func BenchmarkPushAck(b *testing.B) {
	for _, c := range []struct{ producers, consumers int }{{1, 4}, {8, 4}, {8, 8}, {32, 16}} {
		b.Run("producers="+strconv.Itoa(c.producers)+"/consumers="+strconv.Itoa(c.consumers), func(b *testing.B) {
			benchPushAck(b, c.producers, c.consumers)
		})
	}
}

func benchPushAck(b *testing.B, producers, consumers int) {
	q := drivertest.NewQueue(0)
	d := openDriver(b, dbFile(b), q, 1000)
	run(b, d)
	payload := []byte(`{"action":"ack"}`)

	var acked atomic.Int64
	total := int64(b.N)
	allDone := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cwg sync.WaitGroup
	for range consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for ctx.Err() == nil {
				j, ok := q.ExtractMinTimeout(50 * time.Millisecond)
				if !ok {
					continue
				}
				if _, err := j.Context(); err != nil {
					b.Error(err)
					return
				}
				if err := j.Ack(); err != nil {
					b.Error(err)
					return
				}
				if acked.Add(1) == total {
					close(allDone)
				}
			}
		}()
	}

	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var pwg sync.WaitGroup
	for range producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				m := drivertest.NewMessage("job-"+strconv.FormatInt(i, 10), "bench", "p1", payload)
				if err := d.Push(context.Background(), m); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	pwg.Wait()
	select {
	case <-allDone:
	case <-time.After(5 * time.Minute):
		b.Fatal("not every job was acknowledged")
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	cwg.Wait()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")

	require.Equal(b, counts{0, 0, 0}, countsOf(state(b, d)))
}
