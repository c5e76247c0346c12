package driverkit

import (
	"testing"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
)

func TestJobContextMarshal(t *testing.T) {
	c := &JobContext{ID: "1", Job: "j", Driver: "memory", Queue: "q", Pipeline: "p"}
	b, err := c.Marshal()
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"1","job":"j","driver":"memory","headers":{},"queue":"q","pipeline":"p"}`, string(b))
	require.Equal(t, `{"id":"1","job":"j","driver":"memory","headers":{},"queue":"q","pipeline":"p"}`, string(b), "key order is stable")

	p, o := int32(2), int64(7)
	k := &JobContext{ID: "1", Job: "j", Driver: "kafka", Queue: "t", Pipeline: "p", Topic: "t", Partition: &p, Offset: &o, Headers: map[string][]string{"a": {"b"}}}
	b, err = k.Marshal()
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"1","job":"j","driver":"kafka","headers":{"a":["b"]},"queue":"t","pipeline":"p","topic":"t","partition":2,"offset":7}`, string(b))
}

func TestMergeHeaders(t *testing.T) {
	base := map[string][]string{"a": {"1"}, "b": {"2"}}
	out := MergeHeaders(base, map[string][]string{"b": {"3"}, "c": {"4"}})
	require.Equal(t, map[string][]string{"a": {"1"}, "b": {"3"}, "c": {"4"}}, out)
	require.Equal(t, map[string][]string{"a": {"1"}, "b": {"2"}}, base, "inputs are not modified")
	require.Equal(t, base, MergeHeaders(base, nil))
}

type job struct {
	jobs.Job
	id, owner string
}

type removeQueue struct{ removed []jobs.Job }

func (q *removeQueue) Remove(string) []jobs.Job { return q.removed }
func (q *removeQueue) Insert(jobs.Job)          {}
func (q *removeQueue) ExtractMin() jobs.Job     { return nil }
func (q *removeQueue) Len() uint64              { return 0 }

type otherJob struct{ jobs.Job }

func TestRemoveFromQueueKeepsOwnJobs(t *testing.T) {
	q := &removeQueue{removed: []jobs.Job{&job{id: "1", owner: "a"}, &otherJob{}, &job{id: "2", owner: "b"}, &job{id: "3", owner: "a"}}}
	got := RemoveFromQueue(q, "p", func(j *job) bool { return j.owner == "a" })
	require.Len(t, got, 2)
	require.Equal(t, "1", got[0].id)
	require.Equal(t, "3", got[1].id)
	require.Len(t, RemoveFromQueue[*job](q, "p", nil), 3)
	require.Empty(t, RemoveFromQueue[*job](&removeQueue{}, "p", nil))
}

func TestDecodeHeadersJSONIsLenient(t *testing.T) {
	h, err := DecodeHeadersJSON([]byte(`{"a":["1","2"]}`))
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"a": {"1", "2"}}, h)

	// What a PHP app may write by hand (a PostgreSQL headers column, an rr_headers attribute).
	h, err = DecodeHeadersJSON([]byte(`{"s":"x","n":3,"b":true,"l":[1,"y"],"o":{"k":1},"z":null}`))
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"s": {"x"}, "n": {"3"}, "b": {"true"}, "l": {"1", "y"}, "o": {`{"k":1}`}}, h)

	for _, empty := range []string{``, ` `, `null`, `{}`} {
		h, err = DecodeHeadersJSON([]byte(empty))
		require.NoError(t, err, empty)
		require.Nil(t, h, empty)
	}
	_, err = DecodeHeadersJSON([]byte(`[1]`))
	require.ErrorContains(t, err, "not a JSON object")
}
