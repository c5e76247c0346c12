package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

const (
	waitFor = 10 * time.Second
	// quiet is how long a test watches the queue to check that nothing (more) arrives.
	quiet = 400 * time.Millisecond
)

// env is an in-process Kafka cluster (kfake) with an admin client.
type env struct {
	closed  bool
	cluster *kfake.Cluster
	addrs   []string
	cl      *kgo.Client
	adm     *kadm.Client
}

func newEnv(t *testing.T, opts ...kfake.Opt) *env {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	e := &env{cluster: c, addrs: c.ListenAddrs()}
	e.cl, err = kgo.NewClient(kgo.SeedBrokers(e.addrs...))
	require.NoError(t, err)
	t.Cleanup(e.cl.Close)
	e.adm = kadm.NewClient(e.cl)
	return e
}

func randName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// topic creates a fresh topic with the given partitions; it is deleted at the end.
func (e *env) topic(t *testing.T, partitions int32) string {
	t.Helper()
	name := randName("rrt_")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := e.adm.CreateTopic(ctx, partitions, 1, nil, name)
	require.NoError(t, err)
	t.Cleanup(func() {
		if e.closed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = e.adm.DeleteTopics(ctx, name)
	})
	return name
}

func (e *env) global() map[string]any {
	list := make([]any, len(e.addrs))
	for i, a := range e.addrs {
		list[i] = a
	}
	return map[string]any{"brokers": list}
}

// parseFor resolves a pipeline's settings like the plugin does for a static pipeline.
func parseFor(name string, global, section map[string]any) (Config, error) {
	o := driverkit.NewOptions(pluginName, drivertest.NewPipeline(name, pluginName, nil), section)
	return parseConfig(o, o.Global(globalSection, global))
}

// consumerSection is a pipeline on topic, in a group when group is not "".
func consumerSection(topic, group string, extra map[string]any) map[string]any {
	s := map[string]any{"consumer_options": map[string]any{"topics": []any{topic}}}
	if group != "" {
		s["group_options"] = map[string]any{"group_id": group}
	}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

// driver builds a pipeline's driver on e (stopped at the end) without running it.
func (e *env) driver(t *testing.T, name string, section map[string]any, q *drivertest.Queue) *Driver {
	t.Helper()
	return e.driverLog(t, name, section, q, zap.NewNop())
}

func (e *env) driverLog(t *testing.T, name string, section map[string]any, q *drivertest.Queue, log *zap.Logger) *Driver {
	t.Helper()
	conf, err := parseFor(name, e.global(), section)
	require.NoError(t, err)
	d, err := NewDriver(log, name, conf, q)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
	})
	return d
}

// running builds and runs a driver.
func (e *env) running(t *testing.T, name string, section map[string]any, q *drivertest.Queue) *Driver {
	t.Helper()
	d := e.driver(t, name, section, q)
	require.NoError(t, d.Run(context.Background(), drivertest.NewPipeline(name, pluginName, nil)))
	return d
}

func push(t *testing.T, d *Driver, msg *drivertest.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, d.Push(ctx, msg))
}

func pushID(t *testing.T, d *Driver, id string) {
	t.Helper()
	push(t, d, drivertest.NewMessage(id, "test.job", d.pipeline, []byte("payload-"+id)))
}

// take waits for the next job and returns it with its context called (as the plugin does).
func take(t *testing.T, q *drivertest.Queue) *Item {
	t.Helper()
	j, ok := q.ExtractMinTimeout(waitFor)
	require.True(t, ok, "no job arrived within %s", waitFor)
	it, isItem := j.(*Item)
	require.True(t, isItem, "unexpected job type %T", j)
	_, err := it.Context()
	require.NoError(t, err)
	return it
}

// takeN takes n jobs.
func takeN(t *testing.T, q *drivertest.Queue, n int) []*Item {
	t.Helper()
	out := make([]*Item, 0, n)
	for range n {
		out = append(out, take(t, q))
	}
	return out
}

func expectNone(t *testing.T, q *drivertest.Queue, within time.Duration) {
	t.Helper()
	if j, ok := q.ExtractMinTimeout(within); ok {
		t.Fatalf("unexpected job %q", j.ID())
	}
}

func ids(items []*Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID()
	}
	return out
}

// committed returns the group's committed offsets of topic, by partition.
func (e *env) committed(t *testing.T, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := e.adm.FetchOffsets(ctx, group)
	require.NoError(t, err)
	out := map[int32]int64{}
	resp.Each(func(r kadm.OffsetResponse) {
		if r.Topic == topic && r.Err == nil {
			out[r.Partition] = r.At
		}
	})
	return out
}

// records returns how many records topic holds (sum of end offsets).
func (e *env) records(t *testing.T, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ends, err := e.adm.ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	var n int64
	ends.Each(func(lo kadm.ListedOffset) {
		if lo.Err == nil && lo.Partition >= 0 {
			n += lo.Offset
		}
	})
	return n
}

func stop(t *testing.T, d *Driver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
}

func state(t *testing.T, d *Driver) *stateView {
	t.Helper()
	st, err := d.State(context.Background())
	require.NoError(t, err)
	return &stateView{Active: st.Active, Delayed: st.Delayed, Reserved: st.Reserved, Ready: st.Ready, Err: st.ErrorMessage}
}

type stateView struct {
	Active, Delayed, Reserved int64
	Ready                     bool
	Err                       string
}

func waitState(t *testing.T, d *Driver, ok func(*stateView) bool) *stateView {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		last := state(t, d)
		if ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("state never matched within %s; last %+v", waitFor, *last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
