package nats

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	j := job{
		id: "id-1", name: "app.job", payload: []byte{0, 1, 2, 'x', 0xff},
		headers:  map[string][]string{"Traceparent": {"00-1"}, "bad:key": {"a\r\nb"}, "Nats-Expected-Stream": {"evil"}, subjectHeader: {"s"}},
		priority: 5, autoAck: true, delay: 3, notBefore: 1234,
	}
	body, hdr, err := j.encode("p1")
	require.NoError(t, err)
	// NATS headers: only keys NATS can carry, never Nats-* or the subject header.
	require.Equal(t, nats.Header{"Traceparent": {"00-1"}}, hdr)

	var w map[string]any
	require.NoError(t, json.Unmarshal(body, &w))
	require.Equal(t, "AAECeP8=", w["payload"], "payload is base64, as the stock driver writes it")
	require.Equal(t, map[string]any{"priority": 5.0, "pipeline": "p1", "delay": 3.0, "auto_ack": true, "rr_not_before": 1234.0}, w["options"])

	got := decodeJob(body, hdr)
	require.Equal(t, job{
		id: "id-1", name: "app.job", payload: []byte{0, 1, 2, 'x', 0xff},
		headers:  map[string][]string{"Traceparent": {"00-1"}, "bad:key": {"a\r\nb"}, "Nats-Expected-Stream": {"evil"}},
		priority: 5, autoAck: true, delay: 3, notBefore: 1234,
	}, got)
}

func TestDecodeVariants(t *testing.T) {
	hdr := nats.Header{"Tenant": {"acme"}, nats.MsgIdHdr: {"mid"}, subjectHeader: {"x"}}
	cases := map[string]struct {
		body string
		want job
	}{
		"stock item": {
			body: `{"job":"j","id":"1","payload":"aGk=","options":{"priority":3,"pipeline":"p","delay":0,"auto_ack":false,"Queue":"q"}}`,
			want: job{id: "1", name: "j", payload: []byte("hi"), priority: 3, headers: map[string][]string{"Tenant": {"acme"}}},
		},
		"plain string payload": {
			body: `{"job":"j","id":"1","payload":"not base64!"}`,
			want: job{id: "1", name: "j", payload: []byte("not base64!"), headers: map[string][]string{"Tenant": {"acme"}}},
		},
		"object payload": {
			body: `{"job":"j","id":"1","payload":{"a":1}}`,
			want: job{id: "1", name: "j", payload: []byte(`{"a":1}`), headers: map[string][]string{"Tenant": {"acme"}}},
		},
		"null payload, body headers win": {
			body: `{"job":"j","id":"1","payload":null,"headers":{"k":["v"]}}`,
			want: job{id: "1", name: "j", payload: []byte{}, headers: map[string][]string{"k": {"v"}}},
		},
		"job without id": {
			body: `{"job":"j"}`,
			want: job{id: "mid", name: "j", payload: []byte{}, headers: map[string][]string{"Tenant": {"acme"}}},
		},
		"not json": {
			body: `hello`,
			want: job{id: "mid", name: foreignJobName, payload: []byte("hello"), headers: map[string][]string{"Tenant": {"acme"}}, foreign: true},
		},
		"json without id or job": {
			body: `{"a":1}`,
			want: job{id: "mid", name: foreignJobName, payload: []byte(`{"a":1}`), headers: map[string][]string{"Tenant": {"acme"}}, foreign: true},
		},
		"bad options": {
			body: `{"id":"1","options":{"priority":"high"}}`,
			want: job{id: "mid", name: foreignJobName, payload: []byte(`{"id":"1","options":{"priority":"high"}}`), headers: map[string][]string{"Tenant": {"acme"}}, foreign: true},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, c.want, decodeJob([]byte(c.body), hdr))
		})
	}
	// Without a Nats-Msg-Id a foreign message gets a UUID.
	j := decodeJob([]byte("x"), nil)
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, j.id)
	require.Nil(t, j.headers)
}

func FuzzDecodeJob(f *testing.F) {
	f.Add([]byte(`{"job":"j","id":"1","payload":"aGk=","options":{"priority":3}}`), "k", "v")
	f.Add([]byte(`{"job":"j","id":"1","payload":{"a":[1,2]},"headers":{"a":["b"]}}`), "Nats-Msg-Id", "x")
	f.Add([]byte(`not json at all`), "", "")
	f.Add([]byte(`{"id":"","job":""}`), "x-nats-subject", "s")
	f.Add([]byte(`{"payload":"====","id":"z"}`), "a", "b")
	f.Add([]byte{0xff, 0xfe, 0}, "k", "\r\n")
	f.Fuzz(func(t *testing.T, body []byte, hk, hv string) {
		hdr := nats.Header{}
		if hk != "" {
			hdr[hk] = []string{hv}
		}
		j := decodeJob(body, hdr)
		if j.id == "" {
			t.Fatalf("job without id: %+v", j)
		}
		if j.foreign && string(j.payload) != string(body) {
			t.Fatalf("foreign payload changed")
		}
		// Whatever was decoded encodes and decodes to the same job.
		out, h, err := j.encode("p")
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		again := decodeJob(out, h)
		if again.id != j.id || again.name != j.name || string(again.payload) != string(j.payload) || again.priority != j.priority {
			t.Fatalf("round trip changed the job: %+v -> %+v", j, again)
		}
		for k := range h {
			if isReservedHeader(k) || !validHeaderKey(k) {
				t.Fatalf("header %q sent to NATS", k)
			}
		}
	})
}

func TestSubjectHelpers(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a", "a", true}, {"a", "b", false}, {"a.*", "a.b", true}, {"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true}, {"a.>", "a", false}, {">", "x.y", true}, {"*.b", "a.b", true},
		{"a.b", "a.b.c", false}, {"a.b.c", "a.b", false},
	} {
		require.Equal(t, c.want, subjectMatches(c.pattern, c.subject), "%s ~ %s", c.pattern, c.subject)
	}
	m1, d1 := consumerNames("emails", "s")
	m2, _ := consumerNames("emails", "s")
	m3, _ := consumerNames("emails", "t")
	m4, _ := consumerNames("a b.c*", "s")
	require.Equal(t, m1, m2, "deterministic")
	require.NotEqual(t, m1, m3)
	require.Equal(t, m1+"_delayed", d1)
	require.Regexp(t, `^rrjobs_emails_[0-9a-f]{8}$`, m1)
	require.Regexp(t, `^rrjobs_a_b_c__[0-9a-f]{8}$`, m4)
	long, _ := consumerNames(string(make([]byte, 300)), "s")
	require.LessOrEqual(t, len(long), 80)

	require.Equal(t, "nats://u:xxxxx@h:4222,nats://h2:4222", redactURL("nats://u:secret@h:4222,nats://h2:4222"))
	require.Equal(t, "nats://xxxxx@h:4222", redactURL("nats://token@h:4222"))
	require.Equal(t, "1", uitoa(1))
	require.Equal(t, "18446744073709551615", uitoa(^uint64(0)))
}
