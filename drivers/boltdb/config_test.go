package boltdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/drivertest"
)

func newPlugin(t *testing.T, cfg drivertest.Configurer) *Plugin {
	t.Helper()
	p := &Plugin{}
	require.NoError(t, p.Init(drivertest.NopLogger(), cfg))
	require.Equal(t, "boltdb", p.Name())
	return p
}

func fromConfig(t *testing.T, cfg drivertest.Configurer, pipe drivertest.Pipeline) (*Driver, error) {
	t.Helper()
	p := newPlugin(t, cfg)
	drv, err := p.DriverFromConfig("jobs.pipelines."+pipe.Name()+".config", drivertest.NewQueue(0), pipe)
	if err != nil {
		return nil, err
	}
	d := drv.(*Driver)
	t.Cleanup(func() { stop(t, d) })
	return d, nil
}

func fromDeclare(t *testing.T, cfg drivertest.Configurer, pipe drivertest.Pipeline) (*Driver, error) {
	t.Helper()
	p := newPlugin(t, cfg)
	drv, err := p.DriverFromPipeline(pipe, drivertest.NewQueue(0))
	if err != nil {
		return nil, err
	}
	d := drv.(*Driver)
	t.Cleanup(func() { stop(t, d) })
	return d, nil
}

func pipelinesCfg(name string, config map[string]any) drivertest.Configurer {
	return drivertest.Configurer{"jobs": map[string]any{"pipelines": map[string]any{
		name: map[string]any{"driver": "boltdb", "config": config},
	}}}
}

func modeOf(t *testing.T, file string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(file)
	require.NoError(t, err)
	return fi.Mode().Perm()
}

func TestPluginInitRequiresDeps(t *testing.T) {
	p := &Plugin{}
	require.Error(t, p.Init(nil, drivertest.Configurer{}))
	require.Error(t, p.Init(drivertest.NopLogger(), nil))
	var _ jobs.Constructor = p
}

func TestDriverFromConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	old := umask(0)
	t.Cleanup(func() { umask(old) })

	d, err := fromConfig(t, drivertest.Configurer{}, drivertest.Pipeline{"name": "p1", "driver": "boltdb"})
	require.NoError(t, err)
	require.Equal(t, 1000, d.prefetch)
	require.Equal(t, int64(10), d.priority)
	want, err := filepath.EvalSymlinks(filepath.Join(dir, "rr.db"))
	require.NoError(t, err)
	require.Equal(t, want, d.File(), "default file rr.db in the working directory")
	require.Equal(t, os.FileMode(0o755), modeOf(t, d.File()), "default permissions 0755")
	st := state(t, d)
	require.Equal(t, uint64(10), st.Priority)
	require.Equal(t, "p1", st.Pipeline)
	require.Equal(t, "boltdb", st.Driver)
	require.False(t, st.Ready)

	// Empty values and zeros mean the defaults.
	d2, err := fromConfig(t, pipelinesCfg("p2", map[string]any{"prefetch": 0, "priority": 0, "file": "p2.db", "permissions": ""}),
		drivertest.Pipeline{"name": "p2", "driver": "boltdb"})
	require.NoError(t, err)
	require.Equal(t, DefaultPrefetch, d2.prefetch)
	require.Equal(t, DefaultPriority, d2.priority)
	require.Equal(t, os.FileMode(0o755), modeOf(t, d2.File()))
}

func TestDriverFromConfigValues(t *testing.T) {
	old := umask(0)
	t.Cleanup(func() { umask(old) })
	file := dbFile(t)
	cfg := pipelinesCfg("p1", map[string]any{"priority": 3, "prefetch": 7, "file": file, "permissions": 0o640})
	d, err := fromConfig(t, cfg, drivertest.Pipeline{"name": "p1", "driver": "boltdb"})
	require.NoError(t, err)
	require.Equal(t, 7, d.prefetch)
	require.Equal(t, int64(3), d.priority)
	require.Equal(t, file, d.File())
	require.Equal(t, os.FileMode(0o640), modeOf(t, file))

	// The global boltdb section supplies permissions when the pipeline has none (other keys of
	// that section belong to the KV plugin and are ignored); the pipeline's own value wins.
	global := pipelinesCfg("g1", map[string]any{"file": filepath.Join(t.TempDir(), "g1.db")})
	global["boltdb"] = map[string]any{"permissions": 0o600, "interval": 60, "prefetch": 5}
	g1, err := fromConfig(t, global, drivertest.Pipeline{"name": "g1", "driver": "boltdb"})
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), modeOf(t, g1.File()))
	require.Equal(t, DefaultPrefetch, g1.prefetch, "prefetch is not read from the global section")

	own := pipelinesCfg("g2", map[string]any{"file": filepath.Join(t.TempDir(), "g2.db"), "permissions": "0644"})
	own["boltdb"] = map[string]any{"permissions": 0o600}
	g2, err := fromConfig(t, own, drivertest.Pipeline{"name": "g2", "driver": "boltdb"})
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), modeOf(t, g2.File()))

	// Keys at the pipeline's top level (older layouts) are read when the config section lacks them.
	top, err := fromConfig(t, drivertest.Configurer{}, drivertest.Pipeline{"name": "t1", "driver": "boltdb", "prefetch": 9, "file": filepath.Join(t.TempDir(), "t.db")})
	require.NoError(t, err)
	require.Equal(t, 9, top.prefetch)
}

func TestDriverFromConfigValidation(t *testing.T) {
	cases := []struct {
		config map[string]any
		want   string
	}{
		{map[string]any{"prefetch": -1}, `boltdb pipeline "p1": prefetch must be >= 0, got -1`},
		{map[string]any{"prefetch": "many"}, `boltdb pipeline "p1": prefetch must be an integer, got "many"`},
		{map[string]any{"prefetch": 1.5}, `prefetch must be an integer, got "1.5"`},
		{map[string]any{"prefetch": int64(1) << 40}, `prefetch must be <= 2147483647`},
		{map[string]any{"priority": -2}, `boltdb pipeline "p1": priority must be >= 0, got -2`},
		{map[string]any{"priority": "urgent"}, `priority must be an integer, got "urgent"`},
		{map[string]any{"file": 42}, `boltdb pipeline "p1": file must be a file path, got "42"`},
		{map[string]any{"permissions": 0o1777}, `boltdb pipeline "p1": permissions must be a file mode between 0 and 0777`},
		{map[string]any{"permissions": "rwx"}, `boltdb pipeline "p1": permissions must be a file mode (octal 0755 or decimal 493), got "rwx"`},
		{map[string]any{"permissions": "0789"}, `permissions must be a file mode`},
		{map[string]any{"permissions": -1}, `permissions must be a file mode between 0 and 0777`},
	}
	for _, c := range cases {
		c.config["file"] = orDefault(c.config["file"], filepath.Join(t.TempDir(), "x.db"))
		_, err := fromConfig(t, pipelinesCfg("p1", c.config), drivertest.Pipeline{"name": "p1", "driver": "boltdb"})
		require.ErrorContains(t, err, c.want, "config %v", c.config)
	}
	_, err := newPlugin(t, nil).DriverFromConfig("x", drivertest.NewQueue(0), nil)
	require.Error(t, err)
	_, err = newPlugin(t, nil).DriverFromPipeline(nil, drivertest.NewQueue(0))
	require.Error(t, err)
}

func orDefault(v, d any) any {
	if v == nil {
		return d
	}
	return v
}

// Every form TestParseFileMode (driverkit) accepts reaches the file: YAML octal, PHP's decimal
// string, octal strings; a bad global value names the section.
func TestPermissionsForms(t *testing.T) {
	old := umask(0)
	t.Cleanup(func() { umask(old) })
	for i, in := range []any{0o600, "384", "0600", "0o600", float64(0o600)} {
		name := fmt.Sprintf("perm%d", i)
		d, err := fromConfig(t, pipelinesCfg(name, map[string]any{"file": filepath.Join(t.TempDir(), "p.db"), "permissions": in}),
			drivertest.Pipeline{"name": name, "driver": "boltdb"})
		require.NoError(t, err, "%#v", in)
		require.Equal(t, os.FileMode(0o600), modeOf(t, d.File()), "%#v", in)
	}

	cfg := pipelinesCfg("g", map[string]any{"file": filepath.Join(t.TempDir(), "g.db")})
	cfg["boltdb"] = map[string]any{"permissions": "rwx"}
	_, err := fromConfig(t, cfg, drivertest.Pipeline{"name": "g", "driver": "boltdb"})
	require.ErrorContains(t, err, `boltdb pipeline "g": boltdb.permissions must be a file mode (octal 0755 or decimal 493), got "rwx"`)
}

// Declare sends every option as a string; PHP sends permissions as the decimal "493".
func TestDriverFromPipelineStrings(t *testing.T) {
	old := umask(0)
	t.Cleanup(func() { umask(old) })
	file := dbFile(t)
	d, err := fromDeclare(t, drivertest.Configurer{}, drivertest.Pipeline{
		"name": "dyn", "driver": "boltdb", "priority": "4", "prefetch": "10000", "file": file, "permissions": "420",
	})
	require.NoError(t, err)
	require.Equal(t, int64(4), d.priority)
	require.Equal(t, 10000, d.prefetch)
	require.Equal(t, os.FileMode(0o644), modeOf(t, file))

	d2, err := fromDeclare(t, drivertest.Configurer{}, drivertest.Pipeline{
		"name": "dyn2", "driver": "boltdb", "priority": "10", "prefetch": "5", "file": filepath.Join(t.TempDir(), "d2.db"), "permissions": "493",
	})
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), modeOf(t, d2.File()))

	// Options nested under config (as jobs.Pipeline implementations may pass them) are found too.
	d3, err := fromDeclare(t, drivertest.Configurer{}, drivertest.Pipeline{
		"name": "dyn3", "driver": "boltdb", "config": map[string]any{"prefetch": "3", "file": filepath.Join(t.TempDir(), "d3.db")},
	})
	require.NoError(t, err)
	require.Equal(t, 3, d3.prefetch)

	_, err = fromDeclare(t, drivertest.Configurer{}, drivertest.Pipeline{"name": "bad", "driver": "boltdb", "prefetch": "-5", "file": filepath.Join(t.TempDir(), "b.db")})
	require.ErrorContains(t, err, `boltdb pipeline "bad": prefetch must be >= 0, got -5`)
	_, err = fromDeclare(t, drivertest.Configurer{}, drivertest.Pipeline{"name": "bad2", "driver": "boltdb", "permissions": "rw-r--r--", "file": filepath.Join(t.TempDir(), "b.db")})
	require.ErrorContains(t, err, `boltdb pipeline "bad2": permissions must be a file mode`)

	// A pushed job survives on a declared pipeline's file.
	push(t, d, msg("j1"))
	require.Equal(t, int64(1), state(t, d).Active)
	require.NoError(t, d.Stop(context.Background()))
	require.Equal(t, 1, fileCounts(t, file)[string(bucketReady)])
}
