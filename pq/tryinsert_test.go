package pq

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTryInsertAddsUntilFullAndNeverBlocks(t *testing.T) {
	q := New[*testItem](2)
	require.True(t, q.TryInsert(item("a", "g", 5)))
	require.True(t, q.TryInsert(item("b", "g", 1)))
	require.False(t, q.TryInsert(item("c", "g", 0)), "full queue")
	require.Equal(t, uint64(2), q.Len())
	require.Equal(t, "b", q.ExtractMin().id)
	require.True(t, q.TryInsert(item("d", "g", 5)), "room again")
	// Equal priorities keep insertion order across Insert and TryInsert.
	require.Equal(t, []string{"a", "d"}, ids(drain(q)))

	unbounded := New[*testItem](0)
	for i := range 100 {
		require.True(t, unbounded.TryInsert(item("x", "g", int64(i))))
	}
}

func TestTryInsertWakesAnExtractor(t *testing.T) {
	q := New[*testItem](0)
	done := make(chan struct{})
	var got *testItem
	go func() {
		defer close(done)
		got = q.ExtractMin()
	}()
	waitExtractors(t, q, 1)
	want := item("a", "g", 1)
	require.True(t, q.TryInsert(want))
	requireClosed(t, done, "ExtractMin after TryInsert")
	require.Same(t, want, got)
}
