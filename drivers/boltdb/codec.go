package boltdb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// record is a job as stored in the database file.
type record struct {
	id       string
	job      string
	priority int64
	autoAck  bool
	payload  []byte
	headers  map[string][]string
}

const (
	recordVersion byte = 1
	flagAutoAck   byte = 1 << 0
)

var errTruncated = errors.New("truncated record")

// encode serialises r: a version byte, a flags byte, the priority (varint), then id, job name,
// payload and headers as length-prefixed byte strings.
func (r *record) encode() []byte {
	size := 2 + binary.MaxVarintLen64 + 3*binary.MaxVarintLen64 + len(r.id) + len(r.job) + len(r.payload) + binary.MaxVarintLen64
	for k, vs := range r.headers {
		size += 2*binary.MaxVarintLen64 + len(k)
		for _, v := range vs {
			size += binary.MaxVarintLen64 + len(v)
		}
	}
	b := make([]byte, 0, size)
	var flags byte
	if r.autoAck {
		flags |= flagAutoAck
	}
	b = append(b, recordVersion, flags)
	b = binary.AppendVarint(b, r.priority)
	b = appendBytes(b, []byte(r.id))
	b = appendBytes(b, []byte(r.job))
	b = appendBytes(b, r.payload)
	b = binary.AppendUvarint(b, uint64(len(r.headers)))
	for k, vs := range r.headers {
		b = appendBytes(b, []byte(k))
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendBytes(b, []byte(v))
		}
	}
	return b
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRecord parses what encode wrote. The result does not alias b.
func decodeRecord(b []byte) (*record, error) {
	if len(b) < 2 {
		return nil, errTruncated
	}
	if b[0] != recordVersion {
		return nil, fmt.Errorf("unknown record version %d", b[0])
	}
	r := &record{autoAck: b[1]&flagAutoAck != 0}
	d := decoder{b: b[2:]}
	r.priority = d.varint()
	r.id = string(d.bytes())
	r.job = string(d.bytes())
	if p := d.bytes(); len(p) > 0 {
		r.payload = append([]byte(nil), p...)
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errTruncated
	}
	if d.err == nil && n > 0 {
		r.headers = make(map[string][]string, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := string(d.bytes())
			nv := d.uvarint()
			if d.err == nil && nv > uint64(len(d.b)) {
				d.err = errTruncated
				break
			}
			vs := make([]string, 0, nv)
			for j := uint64(0); j < nv && d.err == nil; j++ {
				vs = append(vs, string(d.bytes()))
			}
			r.headers[k] = vs
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes after the record", len(d.b))
	}
	return r, nil
}

// decoder reads varints and length-prefixed byte strings, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

// Keys. Ready and in-flight jobs are keyed by an 8-byte big-endian sequence number, so the ready
// bucket iterates in push order. Delayed jobs are keyed by the due time (unix nanoseconds) followed
// by the sequence number, so jobs due at the same time never collide and iterate in due order.

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

func delayedKey(due int64, seq uint64) []byte {
	k := make([]byte, 0, 16)
	k = binary.BigEndian.AppendUint64(k, uint64(max(due, 0))) //nolint:gosec // clamped
	return binary.BigEndian.AppendUint64(k, seq)
}

// parseSeqKey reads a ready or in-flight key.
func parseSeqKey(k []byte) (uint64, bool) {
	if len(k) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// parseDelayedKey reads a delayed key.
func parseDelayedKey(k []byte) (due int64, seq uint64, ok bool) {
	if len(k) != 16 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(k[:8])), binary.BigEndian.Uint64(k[8:]), true //nolint:gosec // written from a non-negative int64
}
