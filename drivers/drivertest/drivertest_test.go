package drivertest

import (
	"sync"
	"testing"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
)

// job is a minimal jobs.Job for queue tests.
type job struct {
	id, group string
	prio      int64
}

func (j *job) ID() string                             { return j.id }
func (j *job) GroupID() string                        { return j.group }
func (j *job) Priority() int64                        { return j.prio }
func (j *job) Ack() error                             { return nil }
func (j *job) Nack() error                            { return nil }
func (j *job) NackWithOptions(bool, int) error        { return nil }
func (j *job) Requeue(map[string][]string, int) error { return nil }
func (j *job) Body() []byte                           { return nil }
func (j *job) Context() ([]byte, error)               { return nil, nil }
func (j *job) Headers() map[string][]string           { return nil }

var _ jobs.Job = (*job)(nil)

func TestPipelineAccessors(t *testing.T) {
	p := NewPipeline("p1", "memory", map[string]any{
		"prefetch": "5",
		"flag":     "true",
		"attrs":    `{"a":"1","b":2}`,
		"config": map[string]any{
			"prefetch": 100,
			"priority": 3,
			"queue":    "q1",
			"nested":   true,
			"tags":     map[string]any{"x": "y"},
		},
	})
	require.Equal(t, "p1", p.Name())
	require.Equal(t, "memory", p.Driver())
	require.Equal(t, 5, p.Int("prefetch", 0), "top level wins over config")
	require.Equal(t, int64(3), p.Priority())
	require.Equal(t, "q1", p.String("queue", ""))
	require.Equal(t, "100", NewPipeline("x", "", map[string]any{"n": 100}).String("n", ""))
	require.True(t, p.Bool("flag", false))
	require.True(t, p.Bool("nested", false))
	require.False(t, p.Bool("missing", false))
	require.Equal(t, 7, p.Int("missing", 7))
	require.Equal(t, 7, NewPipeline("x", "", map[string]any{"n": "seven"}).Int("n", 7))
	require.True(t, p.Has("queue"))
	require.False(t, p.Has("missing"))
	require.Equal(t, "q1", p.Get("queue"))
	require.Nil(t, p.Get("missing"))

	out := map[string]string{}
	require.NoError(t, p.Map("attrs", out))
	require.Equal(t, map[string]string{"a": "1", "b": "2"}, out)
	out = map[string]string{}
	require.NoError(t, p.Map("tags", out))
	require.Equal(t, map[string]string{"x": "y"}, out)
	require.Error(t, NewPipeline("x", "", map[string]any{"m": "[1]"}).Map("m", out))

	require.Equal(t, int64(10), Pipeline{}.Priority())
	p.With("priority", "1")
	require.Equal(t, int64(1), p.Priority())
}

func TestMessage(t *testing.T) {
	m := NewMessage("id", "job", "p", []byte("x"))
	var jm jobs.Message = m
	jm.UpdatePriority(4)
	require.Equal(t, int64(4), jm.Priority())
	require.Equal(t, "id", jm.ID())
	require.Equal(t, "p", jm.GroupID())
	require.Equal(t, "job", jm.Name())
	require.Equal(t, []byte("x"), jm.Payload())
}

func TestQueueOrderRemoveAndBlocking(t *testing.T) {
	q := NewQueue(0)
	q.Insert(&job{id: "a", group: "g1", prio: 10})
	q.Insert(&job{id: "b", group: "g2", prio: 1})
	q.Insert(&job{id: "c", group: "g1", prio: 10})
	q.Insert(&job{id: "d", group: "g2", prio: 1})
	require.Equal(t, uint64(4), q.Len())
	require.Equal(t, 2, q.CountGroup("g1"))

	removed := q.Remove("g2")
	require.Len(t, removed, 2)
	require.Equal(t, "b", removed[0].ID())

	j, ok := q.ExtractMinTimeout(time.Second)
	require.True(t, ok)
	require.Equal(t, "a", j.ID())
	j, ok = q.TryExtractMin()
	require.True(t, ok)
	require.Equal(t, "c", j.ID())

	start := time.Now()
	_, ok = q.ExtractMinTimeout(50 * time.Millisecond)
	require.False(t, ok)
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)

	// ExtractMin blocks until an Insert.
	got := make(chan jobs.Job)
	go func() { got <- q.ExtractMin() }()
	q.Insert(&job{id: "e", group: "g1"})
	select {
	case j := <-got:
		require.Equal(t, "e", j.ID())
	case <-time.After(5 * time.Second):
		t.Fatal("ExtractMin did not wake up")
	}
}

func TestQueueMaxLenBlocksInsert(t *testing.T) {
	q := NewQueue(1)
	q.Insert(&job{id: "a", group: "g"})
	var wg sync.WaitGroup
	inserted := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		q.Insert(&job{id: "b", group: "g"})
		close(inserted)
	}()
	select {
	case <-inserted:
		t.Fatal("Insert did not block on a full queue")
	case <-time.After(100 * time.Millisecond):
	}
	require.Len(t, q.Remove("g"), 1)
	wg.Wait()
	require.Equal(t, "b", q.Items()[0].ID())
}

func TestConfigurer(t *testing.T) {
	c := Configurer{
		"jobs": map[string]any{"pipelines": map[string]any{"p1": map[string]any{
			"config": map[string]any{"prefetch": 5},
		}}},
		"flat.key": map[string]any{"a": "b"},
	}
	require.True(t, c.Has("jobs.pipelines.p1.config"))
	require.False(t, c.Has("jobs.pipelines.p2.config"))
	require.True(t, c.Has("flat.key"))

	var out struct {
		Prefetch int `json:"prefetch"`
	}
	require.NoError(t, c.UnmarshalKey("jobs.pipelines.p1.config", &out))
	require.Equal(t, 5, out.Prefetch)
	var m map[string]any
	require.NoError(t, c.UnmarshalKey("missing", &m))
	require.Nil(t, m)
	require.NoError(t, c.UnmarshalKey("flat.key", &m))
	require.Equal(t, map[string]any{"a": "b"}, m)
}

func TestLoggers(t *testing.T) {
	require.NotNil(t, Logger{}.NamedLogger("x"))
	require.NotNil(t, NopLogger().NamedLogger("x"))
	TestLogger(t).NamedLogger("x").Info("hello")
	l, logs := ObservedLogger(zapcore.InfoLevel)
	l.NamedLogger("memory").Info("hi")
	require.Equal(t, 1, logs.FilterMessage("hi").Len())
	require.Equal(t, "memory", logs.All()[0].LoggerName)
}
