package boltdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Buckets of the database file. One file belongs to one pipeline.
var (
	// bucketReady holds jobs waiting to be handed out, keyed by sequence number (FIFO).
	bucketReady = []byte("rrjobs.ready")
	// bucketInflight holds jobs handed to the shared queue or a worker and not yet acknowledged,
	// keyed by the sequence number they had in bucketReady. At open they all go back to ready.
	bucketInflight = []byte("rrjobs.inflight")
	// bucketDelayed holds jobs waiting for their delay, keyed by due time + sequence number.
	bucketDelayed = []byte("rrjobs.delayed")
	// bucketBroken holds records that could not be decoded, so they are kept but never delivered.
	bucketBroken = []byte("rrjobs.broken")

	// stockBuckets are the buckets of the stock RoadRunner boltdb driver (its jobs are not read).
	stockBuckets = [][]byte{[]byte("push"), []byte("processing"), []byte("delayed")}
)

const (
	// openTimeout bounds the wait for the file lock held by another process.
	openTimeout = 2 * time.Second
	// maxBatchOps caps the operations committed in one transaction.
	maxBatchOps = 8192
	// gatherWait is how long the committer waits for more operations when fewer arrived than in
	// the previous batch.
	gatherWait = 100 * time.Microsecond
	// gatherMin is the previous batch size from which the committer waits at all: below it there
	// is too little concurrency for the wait to pay off.
	gatherMin = 4
	// opsBuffer is how many operations may wait for the committer before submitters block.
	opsBuffer = 4096
)

// errStopped is returned by submit after the store was closed.
var errStopped = errors.New("the pipeline is stopped")

// op is one unit of work for the committer: apply runs inside the shared write transaction
// (possibly more than once, if the transaction is retried: it must reset what it records), after
// runs under Driver.mu once the transaction is durable, and the result goes to done.
type op struct {
	apply func(tx *bolt.Tx) error
	after func()
	done  chan error
}

// files maps the absolute path of every open database file to the pipeline using it: bbolt takes
// an exclusive lock per open, so a second pipeline on the same file would wait forever.
var files = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// canonicalPath returns an absolute, symlink-resolved path for the registry.
func canonicalPath(file string) (string, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", err
	}
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		return p, nil
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs)), nil
	}
	return abs, nil
}

func claimFile(path, pipeline string) error {
	files.Lock()
	defer files.Unlock()
	if owner, ok := files.m[path]; ok {
		return fmt.Errorf("boltdb pipeline %q: file %q is already used by pipeline %q in this process; give every boltdb pipeline its own `file`", pipeline, path, owner)
	}
	files.m[path] = pipeline
	return nil
}

func releaseFile(path string) {
	files.Lock()
	delete(files.m, path)
	files.Unlock()
}

// openDB opens (or creates) the bbolt file. An existing file is first checked read-only (see
// checkFile), because bbolt panics on a damaged file, sometimes in a goroutine of its own where
// the panic cannot be recovered.
func openDB(path string, mode os.FileMode) (db *bolt.DB, err error) {
	if fi, serr := os.Stat(path); serr == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		if err := checkFile(path); err != nil {
			return nil, err
		}
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("the file is damaged (bbolt: %v)", r)
		}
	}()
	return bolt.Open(path, mode, &bolt.Options{
		Timeout:        openTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
}

// checkFile opens the file read-only (without loading the freelist) and reads every page
// reachable from its buckets, in this goroutine, turning bbolt's panics and faults on pages
// beyond the end of a truncated file into an error.
func checkFile(path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the file is damaged (bbolt: %v)", r)
		}
	}()
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: openTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	var sink byte
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nested := b.Bucket(k); nested != nil {
					return walk(nested)
				}
				return nil
			}
			if len(v) > 0 {
				sink ^= v[0] ^ v[len(v)-1] // touch the value's first and last page
			}
			return nil
		})
	}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	})
	_ = sink
	return err
}

// recovered is what open-time recovery found in the file.
type recovered struct {
	ready, delayed, inflight, broken int64
	maxSeq                           uint64
	nextDue                          int64
	stockJobs                        int
}

// recoverFile creates the buckets, moves every in-flight job back to ready (the previous process
// did not acknowledge them) and counts what is there, in one transaction.
func recoverFile(db *bolt.DB) (rec recovered, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked reading the file (is it damaged?): %v", r)
		}
	}()
	err = db.Update(func(tx *bolt.Tx) error {
		rec = recovered{}
		for _, name := range [][]byte{bucketReady, bucketInflight, bucketDelayed, bucketBroken} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		rb, ib, dlb, bb := tx.Bucket(bucketReady), tx.Bucket(bucketInflight), tx.Bucket(bucketDelayed), tx.Bucket(bucketBroken)

		var moved [][2][]byte
		if err := ib.ForEach(func(k, v []byte) error {
			moved = append(moved, [2][]byte{clone(k), clone(v)})
			return nil
		}); err != nil {
			return err
		}
		for _, kv := range moved {
			if err := rb.Put(kv[0], kv[1]); err != nil {
				return fmt.Errorf("move in-flight job back to ready: %w", err)
			}
			if err := ib.Delete(kv[0]); err != nil {
				return fmt.Errorf("move in-flight job back to ready: %w", err)
			}
		}
		rec.inflight = int64(len(moved))

		if err := rb.ForEach(func(k, _ []byte) error {
			rec.ready++
			if seq, ok := parseSeqKey(k); ok {
				rec.maxSeq = max(rec.maxSeq, seq)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := dlb.ForEach(func(k, _ []byte) error {
			due, seq, ok := parseDelayedKey(k)
			if ok {
				rec.maxSeq = max(rec.maxSeq, seq)
				if rec.delayed == 0 {
					rec.nextDue = max(due, 1)
				}
			}
			rec.delayed++
			return nil
		}); err != nil {
			return err
		}
		if err := bb.ForEach(func(k, _ []byte) error {
			rec.broken++
			if seq, ok := parseSeqKey(k); ok {
				rec.maxSeq = max(rec.maxSeq, seq)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, name := range stockBuckets {
			if b := tx.Bucket(name); b != nil {
				rec.stockJobs += b.Stats().KeyN
			}
		}
		return nil
	})
	return rec, err
}

// submit hands o to the committer and waits for its transaction. It returns errStopped once the
// store is closed. ctx bounds the wait only: an operation already handed over may still commit.
func (d *Driver) submit(ctx context.Context, o *op) error {
	o.done = make(chan error, 1)
	d.opsMu.RLock()
	if d.opsClosed {
		d.opsMu.RUnlock()
		return errStopped
	}
	select {
	case d.ops <- o:
	case <-ctx.Done():
		d.opsMu.RUnlock()
		return ctx.Err()
	}
	d.opsMu.RUnlock()
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w (the job may still be stored)", ctx.Err())
	}
}

// commitLoop is the group committer: it takes every operation waiting at that moment (up to
// maxBatchOps), applies them in one write transaction, fsyncs once, and answers each. Operations
// arriving during a commit form the next batch, so concurrent pushes and acks share fsyncs.
func (d *Driver) commitLoop() {
	defer close(d.commitDone)
	batch := make([]*op, 0, 64)
	g := gatherer{wait: time.NewTimer(time.Hour), score: 1}
	g.wait.Stop()
	for o := range d.ops {
		batch = append(batch[:0], o)
		g.gather(d.ops, &batch)
		d.commit(batch)
		clear(batch)
	}
}

// gatherer collects a batch. It takes every operation waiting at that moment; if fewer arrived
// than in the previous batch (whose callers are likely to come back right after being answered),
// it waits up to gatherWait for more, since a commit costs far more than that. It stops waiting
// while waits keep timing out empty (a lone producer), probing again now and then.
type gatherer struct {
	wait     *time.Timer
	expected int // size of the previous batch
	score    int // > 0: recent waits brought operations
	commits  uint
}

func (g *gatherer) gather(ops chan *op, batch *[]*op) {
	defer func() { g.expected = len(*batch) }()
	g.commits++
	for len(*batch) < maxBatchOps {
		select {
		case o, ok := <-ops:
			if !ok {
				return
			}
			*batch = append(*batch, o)
			continue
		default:
		}
		if len(*batch) >= g.expected || g.expected < gatherMin || (g.score <= 0 && g.commits%32 != 0) {
			return
		}
		g.wait.Reset(gatherWait)
		select {
		case o, ok := <-ops:
			g.wait.Stop()
			if !ok {
				return
			}
			*batch = append(*batch, o)
			g.score = min(g.score+1, 4)
		case <-g.wait.C:
			g.score = max(g.score-1, -1)
			return
		}
	}
}

// commit applies batch in one transaction. If one operation fails, the others are retried one
// transaction each so a single bad operation does not fail its neighbours.
func (d *Driver) commit(batch []*op) {
	errs := make([]error, len(batch))
	failed := false
	err := d.db.Update(func(tx *bolt.Tx) error {
		for _, o := range batch {
			if err := o.apply(tx); err != nil {
				failed = true
				return err
			}
		}
		return nil
	})
	switch {
	case err != nil && failed && len(batch) > 1:
		for i, o := range batch {
			errs[i] = d.db.Update(o.apply)
		}
	default:
		for i := range errs {
			errs[i] = err
		}
	}
	if err != nil {
		d.log.Error("transaction failed", zap.String("pipeline", d.pipeline), zap.String("file", d.file), zap.Int("operations", len(batch)), zap.Error(err))
	}
	d.mu.Lock()
	for i, o := range batch {
		if errs[i] == nil && o.after != nil {
			o.after()
		}
	}
	d.mu.Unlock()
	for i, o := range batch {
		o.done <- errs[i]
	}
}

// closeStore stops accepting operations, lets the committer finish the pending ones, closes the
// file and releases it for another pipeline.
func (d *Driver) closeStore() error {
	d.opsMu.Lock()
	if d.opsClosed {
		d.opsMu.Unlock()
		return nil
	}
	d.opsClosed = true
	close(d.ops)
	d.opsMu.Unlock()
	<-d.commitDone
	err := d.db.Close()
	releaseFile(d.file)
	return err
}

func clone(b []byte) []byte {
	return append([]byte(nil), b...)
}
