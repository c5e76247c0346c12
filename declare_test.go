package jobs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// recordingConstructor is a driver that records the pipelines it was asked to build.
type recordingConstructor struct {
	mu    sync.Mutex
	built []jobs.Pipeline
}

func (*recordingConstructor) Name() string { return "rec" }
func (r *recordingConstructor) DriverFromConfig(_ string, _ jobs.Queue, p jobs.Pipeline) (jobs.Driver, error) {
	return r.record(p), nil
}
func (r *recordingConstructor) DriverFromPipeline(p jobs.Pipeline, _ jobs.Queue) (jobs.Driver, error) {
	return r.record(p), nil
}

func (r *recordingConstructor) record(p jobs.Pipeline) jobs.Driver {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.built = append(r.built, p)
	return nopDriver{}
}

// builds returns the pipelines built so far.
func (r *recordingConstructor) builds() []jobs.Pipeline {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]jobs.Pipeline(nil), r.built...)
}

type nopDriver struct{}

func (nopDriver) Push(context.Context, jobs.Message) error   { return nil }
func (nopDriver) Run(context.Context, jobs.Pipeline) error   { return nil }
func (nopDriver) Stop(context.Context) error                 { return nil }
func (nopDriver) Pause(context.Context, string) error        { return nil }
func (nopDriver) Resume(context.Context, string) error       { return nil }
func (nopDriver) State(context.Context) (*jobs.State, error) { return &jobs.State{}, nil }

// newTestPlugin is a plugin with one idle worker group and the recording driver, without endure.
func newTestPlugin(t testing.TB) (*Plugin, *recordingConstructor) {
	t.Helper()
	cfg := &Config{Consume: []string{"auto"}}
	require.NoError(t, cfg.InitDefaults())
	rec := &recordingConstructor{}
	p := &Plugin{
		cfg:          cfg,
		log:          zap.NewNop(),
		constructors: map[string]jobs.Constructor{"rec": rec},
		pipelines:    newRegistry(),
		timeout:      defaultTimeout * time.Second,
		tracing:      newTracing(),
	}
	p.metrics = newMetrics(p.allWorkers)
	p.groups = map[string]*workerGroup{defaultPoolName: newWorkerGroup(defaultPoolName, cfg.Pools[defaultPoolName], nil, 10, 1, zap.NewNop())}
	return p, rec
}

func TestDeclare(t *testing.T) {
	p, rec := newTestPlugin(t)
	ctx := context.Background()

	require.NoError(t, p.Declare(ctx, map[string]string{"name": "a", "driver": "rec", "priority": "7", "prefetch": "3"}))
	built := rec.builds()
	require.Len(t, built, 1)
	require.Equal(t, int64(7), built[0].Priority())
	require.Equal(t, 3, built[0].Int("prefetch", 0))
	require.True(t, built[0].Bool(keyCreatedWithDecl, false))
	require.Equal(t, []string{"a"}, p.List())

	err := p.Declare(ctx, map[string]string{"name": "a", "driver": "rec"})
	require.ErrorContains(t, err, "pipeline already exists, name: a, driver: rec")
	require.ErrorContains(t, p.Declare(ctx, map[string]string{"name": "b", "driver": "nope"}), `no driver named "nope"`)
	require.ErrorContains(t, p.Declare(ctx, map[string]string{"driver": "rec"}), "`name` is required")
	require.ErrorContains(t, p.Declare(ctx, map[string]string{"name": "c"}), "`driver` is required")
	require.ErrorContains(t, p.Declare(ctx, map[string]string{"name": "c", "driver": "rec", "pool": "nope"}), `no such pool "nope"`)

	require.NoError(t, p.Declare(ctx, map[string]string{"name": "bad-prio", "driver": "rec", "priority": "urgent"}))
	require.Equal(t, int64(10), p.pipelines.get("bad-prio").pipe.Priority())

	require.NoError(t, p.Declare(ctx, map[string]string{"name": "auto", "driver": "rec"}))
	require.True(t, p.pipelines.get("auto").consuming.Load(), "a declared pipeline listed in consume starts at once")
	require.False(t, p.pipelines.get("a").consuming.Load())
}

func TestStatNeverFailsOnADriver(t *testing.T) {
	p, _ := newTestPlugin(t)
	p.pipelines.add(&pipelineEntry{pipe: Pipeline{"name": "nil", "driver": "x", "priority": int64(3)}, driver: nilStateDriver{}})
	p.pipelines.add(&pipelineEntry{pipe: Pipeline{"name": "broken", "driver": "x"}, failure: errBroken})
	states, err := p.JobsState(context.Background())
	require.NoError(t, err)
	require.Len(t, states, 2)
	require.Equal(t, "broken", states[0].Pipeline)
	require.Contains(t, states[0].ErrorMessage, "broken driver")
	require.Equal(t, "nil", states[1].Pipeline)
	require.Equal(t, uint64(3), states[1].Priority)
	require.NotEmpty(t, states[1].ErrorMessage)
}

var errBroken = errString("broken driver")

type errString string

func (e errString) Error() string { return string(e) }

type nilStateDriver struct{ nopDriver }

func (nilStateDriver) State(context.Context) (*jobs.State, error) { return nil, nil }

// FuzzDeclare feeds arbitrary pipeline maps to Declare: it must return nil or an error, never panic,
// and a pipeline it accepted must be listed.
func FuzzDeclare(f *testing.F) {
	f.Add("a", "rec", "10", "5", "")
	f.Add("", "rec", "x", "", "")
	f.Add("b", "nope", "-1", "99999999999999999999", "default")
	f.Add("c", "rec", " 3 ", "[]", `{"x":1}`)
	f.Fuzz(func(t *testing.T, name, driver, priority, prefetch, pool string) {
		p, _ := newTestPlugin(t)
		in := map[string]string{"name": name, "driver": driver, "priority": priority, "prefetch": prefetch}
		if pool != "" {
			in["pool"] = pool
		}
		err := p.Declare(context.Background(), in)
		if err == nil {
			require.Contains(t, p.List(), name)
		}
	})
}

func TestPushIsRefusedOnceShutdownBegan(t *testing.T) {
	p, _ := newTestPlugin(t)
	require.NoError(t, p.Declare(context.Background(), map[string]string{"name": "a", "driver": "rec"}))
	require.NoError(t, p.Push(context.Background(), &Message{Ident: "1", Pipeline: "a", Hdr: map[string][]string{}}))
	p.stopping.Store(true)
	require.ErrorContains(t, p.Push(context.Background(), &Message{Ident: "2", Pipeline: "a", Hdr: map[string][]string{}}), "shutting down")
}
