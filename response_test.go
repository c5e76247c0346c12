package jobs

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseResponse(t *testing.T) {
	cases := []struct {
		name string
		body string
		want response
	}{
		{"empty body acknowledges", ``, response{Type: respAck}},
		{"php ack with data []", `{"type":2,"data":[]}`, response{Type: respAck}},
		{"ack with object data", `{"type":2,"data":{}}`, response{Type: respAck}},
		{"complete (type 0)", `{"type":0,"data":[]}`, response{Type: respComplete}},
		{"legacy error with requeue and headers", `{"type":1,"data":{"message":"boom","requeue":true,"delay_seconds":5,"headers":{"attempts":["2"]}}}`,
			response{Type: respError, Message: "boom", Requeue: true, DelaySeconds: 5, Headers: map[string][]string{"attempts": {"2"}}}},
		{"nack without requeue", `{"type":3,"data":{"message":"no","requeue":false,"delay_seconds":0}}`, response{Type: respNack, Message: "no"}},
		{"nack 4.5.x redelivery key", `{"type":3,"data":{"message":"again","redelivery":true,"delay_seconds":2}}`, response{Type: respNack, Message: "again", Requeue: true, DelaySeconds: 2}},
		{"requeue keeps headers", `{"type":4,"data":{"message":"later","delay_seconds":3,"headers":{"a":["b","c"]}}}`,
			response{Type: respRequeue, Message: "later", DelaySeconds: 3, Headers: map[string][]string{"a": {"b", "c"}}}},
		{"requeue with [] data", `{"type":4,"data":[]}`, response{Type: respRequeue}},
		{"unknown type is kept for the caller", `{"type":42,"data":[]}`, response{Type: 42}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseResponse([]byte(tc.body))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseResponseRejectsMalformedBodies(t *testing.T) {
	cases := map[string]string{
		"not json":                      `foo`,
		"no type":                       `{"data":[]}`,
		"type is a string":              `{"type":"ack"}`,
		"headers as array of objects":   `{"type":4,"data":{"headers":[{"a":"b"}]}}`,
		"negative delay":                `{"type":4,"data":{"delay_seconds":-1}}`,
		"truncated":                     `{"type":3,"data":{"message":"x"`,
		"data is a number on a failure": `{"type":1,"data":5}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parseResponse([]byte(body))
			require.Error(t, err)
		})
	}
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{``, `{"type":2,"data":[]}`, `{"type":4,"data":{"headers":{"a":["b"]},"delay_seconds":1}}`, `{"type":3,"data":{"requeue":true}}`, `foo`, `{"type":1,"data":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := parseResponse(body)
		if err != nil {
			return
		}
		if r.DelaySeconds < 0 {
			t.Fatalf("negative delay accepted: %q", body)
		}
	})
}
