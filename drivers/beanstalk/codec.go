package beanstalk

import (
	"bytes"
	"crypto/rand"
	"encoding/gob"
	"errors"
	"fmt"
)

// The job body on the tube is the encoding/gob encoding of wireItem, as in the stock driver
// (roadrunner-server/beanstalk, beanstalkjobs.Item): gob matches struct fields by name, so the
// stock driver reads the bodies this driver puts and this driver reads the stock driver's.
//   - Job, Ident, Payload and Options are the stock v5 fields;
//   - Hdrs is the stock v6 field for the headers (v5 did not store headers at all; its decoder
//     ignores the field);
//   - TTR (seconds) is ours: the time-to-run the body was put with, so the consumer knows how
//     often to touch the job without asking the server. Stock decoders ignore it.

// wireItem is the gob body of a job.
type wireItem struct {
	Job     string
	Ident   string
	Payload []byte
	Hdrs    map[string][]string
	Options *wireOptions
	TTR     int64
}

// wireOptions is the stock driver's Options (its exported fields).
type wireOptions struct {
	Priority int64
	Pipeline string
	Delay    int
	AutoAck  bool
	Queue    string
}

// rawJobName is the job name of a body that is not an RR job (stock: "deduced_by_rr").
const rawJobName = "deduced_by_rr"

// encodeJob gob-encodes w.
func encodeJob(w *wireItem) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(w.Payload) + 256)
	if err := gob.NewEncoder(&buf).Encode(w); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// errEmptyBody is returned for an empty body (gob would report a bare EOF).
var errEmptyBody = errors.New("empty body")

// decodeJob reads a gob body. It never panics and its memory use is bounded by the body size:
// gob sizes a map it allocates by a count read from the input (a 100-byte body can ask for a
// multi-gigabyte map), so the headers map is allocated here and gob only fills it; and it reads a
// message into a buffer of the length the message claims (in 10 MB steps), so the framing is
// checked first.
func decodeJob(body []byte) (w *wireItem, err error) {
	if len(body) == 0 {
		return nil, errEmptyBody
	}
	defer func() {
		if r := recover(); r != nil {
			w, err = nil, fmt.Errorf("gob decoder panicked: %v", r)
		}
	}()
	if err := checkFraming(body); err != nil {
		return nil, err
	}
	w = &wireItem{Hdrs: make(map[string][]string)}
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(w); err != nil {
		return nil, err
	}
	if len(w.Hdrs) == 0 {
		w.Hdrs = nil
	}
	return w, nil
}

// newUUID returns a random (version 4) UUID, the id of a job whose body carries none.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// checkFraming checks that body is a sequence of complete gob messages (each a gob-encoded uint
// length, then that many bytes), so the decoder never buffers more than the body holds.
func checkFraming(body []byte) error {
	for pos := 0; pos < len(body); {
		n, size, ok := gobUint(body[pos:])
		if !ok {
			return fmt.Errorf("not a gob stream: bad message length at byte %d", pos)
		}
		pos += size
		if n == 0 || n > uint64(len(body)-pos) {
			return fmt.Errorf("not a gob stream: a message of %d bytes at byte %d, %d bytes left", n, pos, len(body)-pos)
		}
		pos += int(n)
	}
	return nil
}

// gobUint reads a gob-encoded unsigned integer: one byte below 0x80, else the negated byte count
// (1 to 8) followed by the big-endian value.
func gobUint(b []byte) (v uint64, size int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0] < 0x80 {
		return uint64(b[0]), 1, true
	}
	n := int(-int8(b[0]))
	if n < 1 || n > 8 || len(b) < 1+n {
		return 0, 0, false
	}
	for _, c := range b[1 : 1+n] {
		v = v<<8 | uint64(c)
	}
	return v, 1 + n, true
}
