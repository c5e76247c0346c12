// Package pq implements the blocking priority queue that every job pipeline of the jobs plugin
// pushes into and the worker pollers take from.
//
// A [Queue] is a binary min-heap guarded by one mutex. Items come out by ascending
// Priority(); items of equal priority come out in the order they were inserted (FIFO), which the
// queue guarantees by stamping every insertion with a monotonically increasing sequence number.
// Negative priorities are ordinary int64 values and sort before zero.
//
// The queue is bounded when created with a non-zero maximum length: Insert then blocks while the
// queue is full, which is how back-pressure reaches the producers. ExtractMin blocks while the
// queue is empty. The Context variants give up when their context is done, so pollers can be
// stopped without closing the queue.
//
// Instantiated as Queue[jobs.Job] the type satisfies the Queue interface of
// github.com/roadrunner-server/api/v4/plugins/v4/jobs; Remove's argument is matched against
// GroupID(), which the jobs plugin sets to the pipeline name.
//
// Memory: the heap is one slice of small entries (priority, sequence number, item). Slots left
// behind by ExtractMin and Remove are zeroed at once so that the items they held can be garbage
// collected, and when a drain leaves the backing array less than a quarter full (and it is larger
// than a few thousand entries) it is reallocated at half its size, so a burst of a million jobs
// does not pin its peak memory for the rest of the process's life.
package pq
