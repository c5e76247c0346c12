package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// boltTwoPipelines runs two boltdb pipelines, each on its own file in the server's directory.
const boltTwoPipelines = memoryConfig + `
jobs:
  num_pollers: 4
  pool:
    num_workers: 2
    allocate_timeout: 10s
  consume: ["b1", "b2"]
  pipelines:
    b1:
      driver: boltdb
      config:
        file: "{{.Dir}}/b1.db"
        priority: 10
        prefetch: 100
    b2:
      driver: boltdb
      config:
        file: "{{.Dir}}/b2.db"
        priority: 1
`

func TestBoltDBPushAndAck(t *testing.T) {
	s, c := start(t, boltTwoPipelines)
	pushAndAck(t, s, c, "boltdb", "b1", "b1")

	var batch []helpers.Job
	for i := range 200 {
		batch = append(batch, helpers.Job{Pipeline: []string{"b1", "b2"}[i%2], ID: "b-" + strconv.Itoa(i), Payload: helpers.Action("ack")})
	}
	require.NoError(t, c.PushBatch(batch...))
	s.WaitEvents(t, 20*time.Second, "done", "", 201)
	for _, p := range []string{"b1", "b2"} {
		waitStat(t, c, p, func(st stat) bool { return st.Active == 0 && st.Delayed == 0 && st.Reserved == 0 })
	}
}

func TestBoltDBDelaysDueInTheSameSecond(t *testing.T) {
	s, c := start(t, boltTwoPipelines)
	pushed := time.Now()
	// One batch: all three are due in the same second (stock kept only one of them).
	require.NoError(t, c.PushBatch(
		helpers.Job{Pipeline: "b1", ID: "d1", Payload: helpers.Action("ack"), Delay: 2},
		helpers.Job{Pipeline: "b1", ID: "d2", Payload: helpers.Action("ack"), Delay: 2},
		helpers.Job{Pipeline: "b1", ID: "d3", Payload: helpers.Action("ack"), Delay: 2},
	))
	waitStat(t, c, "b1", func(st stat) bool { return st.Delayed == 3 })
	for _, id := range []string{"d1", "d2", "d3"} {
		got := s.WaitEvents(t, 10*time.Second, "start", id, 1)
		require.GreaterOrEqual(t, got[0].Time().Sub(pushed), 1900*time.Millisecond, id)
	}
	waitStat(t, c, "b1", func(st stat) bool { return st.Delayed == 0 && st.Active == 0 })
}

// Declare sends strings (permissions as PHP's decimal "493"); Destroy closes the file and keeps
// its jobs, so declaring the pipeline again on the same file delivers them.
func TestBoltDBDeclareDestroyAndRedeclare(t *testing.T) {
	s, c := start(t, boltTwoPipelines)
	file := filepath.Join(s.Dir, "dyn.db")
	decl := map[string]string{"name": "dyn", "driver": "boltdb", "priority": "3", "prefetch": "10000", "file": file, "permissions": "493"}
	require.NoError(t, c.Declare(decl))
	st := waitStat(t, c, "dyn", func(st stat) bool { return !st.Ready })
	require.Equal(t, uint64(3), st.Priority)
	require.Equal(t, "boltdb", st.Driver)
	fi, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755)&^currentUmask(), fi.Mode().Perm())

	require.NoError(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "kept-1", Payload: helpers.Action("ack")}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "kept-2", Payload: helpers.Action("ack"), Delay: 1}))
	destroyed, err := c.Destroy("dyn")
	require.NoError(t, err)
	require.Equal(t, []string{"dyn"}, destroyed)
	require.ErrorContains(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "late", Payload: "x"}), "no such pipeline, requested: dyn")

	require.NoError(t, c.Declare(decl))
	waitStat(t, c, "dyn", func(st stat) bool { return st.Active+st.Delayed == 2 })
	require.NoError(t, c.Resume("dyn"))
	s.WaitEvents(t, 10*time.Second, "done", "kept-1", 1)
	s.WaitEvents(t, 10*time.Second, "done", "kept-2", 1)

	// A second pipeline on a file that is in use is refused with a clear error; the first keeps working.
	err = c.Declare(map[string]string{"name": "dup", "driver": "boltdb", "file": file})
	require.ErrorContains(t, err, `boltdb pipeline "dup": file "`+file+`" is already used by pipeline "dyn"`)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "after-dup", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "after-dup", 1)
}

func currentUmask() os.FileMode {
	dir, err := os.MkdirTemp("", "umask")
	if err != nil {
		return 0o022
	}
	defer os.RemoveAll(dir)
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o777); err != nil {
		return 0o022
	}
	fi, err := os.Stat(f)
	if err != nil {
		return 0o022
	}
	return 0o777 &^ fi.Mode().Perm()
}

// Jobs stored by one server are delivered by the next one on the same file.
func TestBoltDBJobsSurviveARestart(t *testing.T) {
	helpers.RequirePHP(t)
	dbDir := t.TempDir()
	cfg := strings.ReplaceAll(memoryConfig+`
jobs:
  pool:
    num_workers: 1
  consume: ["keep"]
  pipelines:
    keep:
      driver: boltdb
      config:
        file: "DBDIR/keep.db"
`, "DBDIR", dbDir)
	s1, c1 := start(t, cfg)
	require.NoError(t, c1.Pause("keep"))
	require.NoError(t, c1.PushBatch(
		helpers.Job{Pipeline: "keep", ID: "r1", Payload: helpers.Action("ack")},
		helpers.Job{Pipeline: "keep", ID: "r2", Payload: helpers.Action("ack"), Headers: map[string][]string{"h": {"v"}}},
		helpers.Job{Pipeline: "keep", ID: "r3", Payload: helpers.Action("ack"), Delay: 1},
	))
	require.NoError(t, s1.Stop())

	s2, c2 := start(t, cfg)
	s2.WaitEvents(t, 15*time.Second, "done", "", 3)
	require.Equal(t, []string{"v"}, s2.Events(t, "start", "r2")[0].Headers["h"])
	waitStat(t, c2, "keep", func(st stat) bool { return st.Active == 0 && st.Delayed == 0 && st.Reserved == 0 })
}

// A pipeline whose file cannot be used is marked broken with an error naming the pipeline and the
// file; the other pipelines work.
func TestBoltDBBadFilesBreakOnlyTheirPipeline(t *testing.T) {
	helpers.RequirePHP(t)
	dbDir := t.TempDir()
	corrupt := filepath.Join(dbDir, "corrupt.db")
	garbage := make([]byte, 32<<10)
	for i := range garbage {
		garbage[i] = byte(i*31 + 7)
	}
	require.NoError(t, os.WriteFile(corrupt, garbage, 0o600))
	s, c := start(t, strings.ReplaceAll(memoryConfig+`
jobs:
  pool:
    num_workers: 1
  consume: ["good", "nodir", "corrupt", "dup1", "dup2"]
  pipelines:
    good:
      driver: boltdb
      config:
        file: "DBDIR/good.db"
    nodir:
      driver: boltdb
      config:
        file: "DBDIR/missing/x.db"
    corrupt:
      driver: boltdb
      config:
        file: "DBDIR/corrupt.db"
    dup1:
      driver: boltdb
      config:
        file: "DBDIR/shared.db"
    dup2:
      driver: boltdb
      config:
        file: "DBDIR/shared.db"
`, "DBDIR", dbDir))

	require.NoError(t, c.Push(helpers.Job{Pipeline: "good", ID: "g1", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 10*time.Second, "done", "g1", 1)

	err := c.Push(helpers.Job{Pipeline: "nodir", ID: "x", Payload: "x"})
	require.ErrorContains(t, err, `boltdb pipeline "nodir": open file "`+filepath.Join(dbDir, "missing", "x.db")+`"`)
	err = c.Push(helpers.Job{Pipeline: "corrupt", ID: "x", Payload: "x"})
	require.ErrorContains(t, err, `boltdb pipeline "corrupt": open file "`+corrupt+`"`)

	// Exactly one of the two pipelines sharing a file got it.
	e1 := c.Push(helpers.Job{Pipeline: "dup1", ID: "s1", Payload: helpers.Action("ack")})
	e2 := c.Push(helpers.Job{Pipeline: "dup2", ID: "s2", Payload: helpers.Action("ack")})
	require.True(t, (e1 == nil) != (e2 == nil), "dup1: %v, dup2: %v", e1, e2)
	refused := e1
	if refused == nil {
		refused = e2
	}
	require.ErrorContains(t, refused, `file "`+filepath.Join(dbDir, "shared.db")+`" is already used by pipeline "dup`)
	s.WaitEvents(t, 10*time.Second, "done", "", 2)
}
