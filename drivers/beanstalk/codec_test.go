package beanstalk

import (
	"bytes"
	"encoding/gob"
	"regexp"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stockV5Item and stockV5Options have the layout of the stock driver's beanstalkjobs.Item in
// roadrunner-server/beanstalk v5 (headers unexported, so not encoded; unexported Options fields).
type stockV5Item struct {
	Job     string
	Ident   string
	Payload []byte
	headers map[string][]string //nolint:unused // mirrors the stock layout
	Options *stockV5Options
}

type stockV5Options struct {
	Priority int64
	Pipeline string
	Delay    int
	AutoAck  bool
	Queue    string
	id       uint64                 //nolint:unused // mirrors the stock layout
	conn     atomic.Pointer[string] //nolint:unused // mirrors the stock layout
}

// stockV6Item is the stock v6 layout: headers exported as Hdrs.
type stockV6Item struct {
	Job     string
	Ident   string
	Payload []byte
	Hdrs    map[string][]string
	Options *stockV5Options
}

func gobBytes(t testing.TB, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, gob.NewEncoder(&b).Encode(v))
	return b.Bytes()
}

func TestStockBodiesAreRead(t *testing.T) {
	v5 := gobBytes(t, &stockV5Item{Job: "app.mail", Ident: "id-5", Payload: []byte(`{"a":1}`),
		Options: &stockV5Options{Priority: 3, Pipeline: "other", Delay: 4, AutoAck: true}})
	w, err := decodeJob(v5)
	require.NoError(t, err)
	require.Equal(t, &wireItem{Job: "app.mail", Ident: "id-5", Payload: []byte(`{"a":1}`),
		Options: &wireOptions{Priority: 3, Pipeline: "other", Delay: 4, AutoAck: true}}, w)

	v6 := gobBytes(t, &stockV6Item{Job: "app.mail", Ident: "id-6", Payload: []byte("x"),
		Hdrs: map[string][]string{"tenant": {"acme"}}, Options: &stockV5Options{Priority: 0}})
	w, err = decodeJob(v6)
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"tenant": {"acme"}}, w.Hdrs)
	require.Equal(t, "id-6", w.Ident)
	require.Equal(t, int64(0), w.Options.Priority)
}

func TestOurBodiesAreReadByTheStockDriver(t *testing.T) {
	body, err := encodeJob(&wireItem{Job: "app.mail", Ident: "id-1", Payload: []byte("p"),
		Hdrs:    map[string][]string{"k": {"v1", "v2"}},
		Options: &wireOptions{Priority: 7, Pipeline: "p1", Delay: 2, AutoAck: true, Queue: "tube"}, TTR: 30})
	require.NoError(t, err)

	var v5 stockV5Item
	require.NoError(t, gob.NewDecoder(bytes.NewReader(body)).Decode(&v5))
	require.Equal(t, "app.mail", v5.Job)
	require.Equal(t, "id-1", v5.Ident)
	require.Equal(t, []byte("p"), v5.Payload)
	require.Equal(t, int64(7), v5.Options.Priority)
	require.Equal(t, "p1", v5.Options.Pipeline)
	require.True(t, v5.Options.AutoAck)

	var v6 stockV6Item
	require.NoError(t, gob.NewDecoder(bytes.NewReader(body)).Decode(&v6))
	require.Equal(t, map[string][]string{"k": {"v1", "v2"}}, v6.Hdrs)

	w, err := decodeJob(body)
	require.NoError(t, err)
	require.Equal(t, int64(30), w.TTR)
}

func TestDecodeRejectsForeignBodies(t *testing.T) {
	for _, body := range [][]byte{nil, {}, []byte("hello"), []byte(`{"job":"x","id":"1"}`), {0xff, 0xff, 0xff}, {0x03, 0x04}} {
		_, err := decodeJob(body)
		require.Error(t, err, "%q", body)
	}
	// A gob of an unrelated type.
	_, err := decodeJob(gobBytes(t, struct{ A, B int }{1, 2}))
	require.Error(t, err)
}

// hugeMapBody is a valid v6 body whose headers map claims 2^33 entries: gob would allocate a map
// of that size before reading the entries (tens of gigabytes, an out-of-memory crash).
func hugeMapBody(t testing.TB) []byte {
	t.Helper()
	return mapCountBody(t, []byte{0xfb, 0x02, 0x00, 0x00, 0x00, 0x00}) // uint 1<<33 in 5 bytes
}

// mapCountBody is a v6 body with headers {"a": ["b"]} whose map count is replaced by count (a
// gob-encoded uint).
func mapCountBody(t testing.TB, count []byte) []byte {
	t.Helper()
	body := gobBytes(t, &stockV6Item{Job: "x", Hdrs: map[string][]string{"a": {"b"}}})
	// The value message ends with: map count 1, key "a" (len 1), slice len 1, "b", end of struct.
	i := bytes.LastIndex(body, []byte{0x01, 0x01, 'a', 0x01, 0x01, 'b'})
	require.Positive(t, i)
	out := append(append(append([]byte{}, body[:i]...), count...), body[i+1:]...)
	// Fix the length prefix of the message holding the count (gob messages are a uint length,
	// then that many bytes; the lengths here fit in one byte).
	for pos := 0; pos < len(body); pos += 1 + int(body[pos]) {
		require.Less(t, body[pos], byte(0x80), "one-byte message length")
		if pos+1+int(body[pos]) > i {
			require.Less(t, int(body[pos])+len(count)-1, 0x80)
			out[pos] += byte(len(count) - 1)
			break
		}
	}
	return out
}

func TestDecodeMemoryIsBoundedByTheBody(t *testing.T) {
	// The patching is right: the same body with the count 1 written in two bytes decodes.
	w, err := decodeJob(mapCountBody(t, []byte{0xfe, 0x00, 0x01}))
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"a": {"b"}}, w.Hdrs)

	body := hugeMapBody(t)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err = decodeJob(body)
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	require.Less(t, time.Since(start), time.Second)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "decoding a %d-byte body allocated %d bytes", len(body), after.TotalAlloc-before.TotalAlloc)
}

func TestNewUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := newUUID(), newUUID()
	require.Regexp(t, re, a)
	require.NotEqual(t, a, b)
}

// FuzzDecodeJob: no body makes the decoder panic or allocate beyond a small multiple of its size,
// and whatever it accepts survives a round trip through the encoder.
func FuzzDecodeJob(f *testing.F) {
	valid, err := encodeJob(&wireItem{Job: "j", Ident: "i", Payload: []byte("p"), Hdrs: map[string][]string{"h": {"v"}},
		Options: &wireOptions{Priority: 1, Pipeline: "p", Delay: 1, AutoAck: true, Queue: "q"}, TTR: 5})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(gobBytes(f, &stockV5Item{Job: "a", Ident: "b", Options: &stockV5Options{Priority: 2}}))
	f.Add(gobBytes(f, &stockV6Item{Job: "a", Hdrs: map[string][]string{"x": nil}}))
	f.Add(hugeMapBody(f))
	f.Add([]byte{})
	f.Add([]byte("hello"))
	f.Add([]byte(`{"action":"ack"}`))
	f.Add([]byte{0x7f, 0xff, 0x81, 0x03, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, body []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w, err := decodeJob(body)
		runtime.ReadMemStats(&after)
		if grown := after.TotalAlloc - before.TotalAlloc; grown > uint64(64*len(body))+(1<<20) {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(body), grown)
		}
		if err != nil {
			return
		}
		again, err := encodeJob(w)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", w, err)
		}
		w2, err := decodeJob(again)
		if err != nil {
			t.Fatalf("decode the re-encoded body: %v", err)
		}
		require.Equal(t, normalize(w), normalize(w2))
	})
}

// normalize makes gob's nil/empty ambiguities comparable.
func normalize(w *wireItem) *wireItem {
	c := *w
	if len(c.Payload) == 0 {
		c.Payload = nil
	}
	if len(c.Hdrs) == 0 {
		c.Hdrs = nil
	}
	for k, v := range c.Hdrs {
		if len(v) == 0 {
			c.Hdrs[k] = nil
		}
	}
	if c.Options != nil && *c.Options == (wireOptions{}) {
		c.Options = nil
	}
	return &c
}
