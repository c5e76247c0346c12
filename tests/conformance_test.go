package tests

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/tests/helpers"
)

// conformance describes a driver for runConformance: how to reach its broker and how to write a
// pipeline on a given broker queue. Every driver of this repository runs the same scenarios, so a
// behaviour the plugin promises (ack, nack, requeue with delay, priority, pause, declare, stat,
// redelivery after a worker crash, two instances on one queue) is checked once and for all drivers.
type conformance struct {
	// driver is the Constructor name used as `driver:` in pipelines.
	driver string
	// require skips (or, in CI, fails) the test when the broker is missing. Optional.
	require func(t *testing.T)
	// global returns top-level YAML sections the driver needs (for example "amqp:\n  addr: ...\n").
	// Optional.
	global func(t *testing.T) string
	// newQueue returns a fresh broker queue name (topic, tube, stream...) and registers its deletion
	// with t.Cleanup. Optional: by default a random lower-case name "rrconf_<hex>".
	newQueue func(t *testing.T) string
	// pipeline returns the YAML lines of a pipeline's `config:` map (unindented, one key per line,
	// without `priority`, which the suite adds) for a pipeline on queue.
	pipeline func(queue string) string
	// declare returns the Declare fields (besides name, driver and priority) for a pipeline on queue.
	declare func(queue string) map[string]string
	// contextQueue is the `queue` the worker sees in the job context and Stat reports, for the
	// named pipeline on queue. Optional: by default queue itself.
	contextQueue func(pipeline, queue string) string
	// stat says which Stat counts the driver reports exactly.
	stat statCaps
	// skip lists scenarios (by subtest name) that do not apply to the driver, with the reason.
	skip map[string]string
}

// statCaps are the Stat counters a driver reports exactly.
type statCaps struct {
	active, delayed, reserved bool
}

// runConformance runs every scenario as a subtest, each on fresh queues and a fresh server.
func runConformance(t *testing.T, d conformance) {
	scenarios := []struct {
		name string
		run  func(*testing.T, *conformance)
	}{
		{"PushAndAck", conformPushAndAck},
		{"NackRequeueAndDelay", conformNackRequeueAndDelay},
		{"PriorityAcrossPipelines", conformPriority},
		{"PauseResumeAndStat", conformPauseResumeAndStat},
		{"DeclareAndDestroy", conformDeclareAndDestroy},
		{"AutoAck", conformAutoAck},
		{"WorkerCrashIsRedelivered", conformWorkerCrash},
		{"TwoInstancesShareAQueue", conformTwoInstances},
	}
	for _, sc := range scenarios {
		if why, ok := d.skip[sc.name]; ok {
			// Not a skipped test (CI runs everything): the scenario does not apply to the driver.
			t.Logf("%s: not applicable to %s: %s", sc.name, d.driver, why)
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			helpers.RequirePHP(t)
			if d.require != nil {
				d.require(t)
			}
			sc.run(t, &d)
		})
	}
}

func (d *conformance) queue(t *testing.T) string {
	if d.newQueue != nil {
		return d.newQueue(t)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "rrconf_" + hex.EncodeToString(b[:])
}

func (d *conformance) ctxQueue(pipeline, queue string) string {
	if d.contextQueue != nil {
		return d.contextQueue(pipeline, queue)
	}
	return queue
}

// pipe is one pipeline of a scenario's config.
type pipe struct {
	name, queue string
	priority    int
}

// config renders a full .rr.yaml: the memory base, the driver's global sections and a jobs section
// consuming every pipe. workers and pollers size the pool (0: the defaults of the suite, 2 and 4).
func (d *conformance) config(t *testing.T, workers, pollers int, pipes ...pipe) string {
	if workers == 0 {
		workers, pollers = 2, 4
	}
	var b strings.Builder
	b.WriteString(memoryConfig)
	if d.global != nil {
		b.WriteString(d.global(t))
	}
	names := make([]string, len(pipes))
	for i, p := range pipes {
		names[i] = strconv.Quote(p.name)
	}
	fmt.Fprintf(&b, "jobs:\n  num_pollers: %d\n  pool:\n    num_workers: %d\n    allocate_timeout: 10s\n", pollers, workers)
	fmt.Fprintf(&b, "  consume: [%s]\n  pipelines:\n", strings.Join(names, ", "))
	for _, p := range pipes {
		fmt.Fprintf(&b, "    %s:\n      driver: %s\n      config:\n        priority: %d\n", p.name, d.driver, p.priority)
		for _, line := range strings.Split(strings.TrimRight(d.pipeline(p.queue), "\n"), "\n") {
			if line != "" {
				b.WriteString("        " + line + "\n")
			}
		}
	}
	return b.String()
}

// twoPipes starts a server with p1 (priority 10) and p2 (priority 1) on fresh queues.
func (d *conformance) twoPipes(t *testing.T) (*helpers.Server, *helpers.Client, pipe, pipe) {
	p1 := pipe{name: "p1", queue: d.queue(t), priority: 10}
	p2 := pipe{name: "p2", queue: d.queue(t), priority: 1}
	s, c := start(t, d.config(t, 0, 0, p1, p2))
	return s, c, p1, p2
}

func conformPushAndAck(t *testing.T, d *conformance) {
	s, c, p1, _ := d.twoPipes(t)
	pushAndAck(t, s, c, d.driver, "p1", d.ctxQueue("p1", p1.queue))
}

func conformNackRequeueAndDelay(t *testing.T, d *conformance) {
	s, c, _, _ := d.twoPipes(t)
	// nack without requeue is final; nack with requeue and a delay comes back after the delay.
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "n1", Payload: helpers.Action("nack", "requeue", false)}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "n2", Payload: helpers.Action("nack", "requeue", true, "delay", 1)}))
	// requeue with a delay and headers: the worker's headers are kept with the job.
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p2", ID: "r1", Payload: helpers.Action("requeue_until", "times", 2, "delay", 1),
		Headers: map[string][]string{"keep": {"me"}}}))
	pushed := time.Now()
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "d1", Payload: helpers.Action("ack"), Delay: 2}))

	n2 := s.WaitEvents(t, 20*time.Second, "start", "n2", 2)
	require.GreaterOrEqual(t, n2[1].Time().Sub(n2[0].Time()), 900*time.Millisecond, "nack delay honoured")

	r1 := s.WaitEvents(t, 20*time.Second, "start", "r1", 3)
	for i, e := range r1 {
		require.Equal(t, []string{"me"}, e.Headers["keep"], "original headers survive requeues")
		if i > 0 {
			require.Equal(t, []string{strconv.Itoa(i)}, e.Headers["attempts"], "the worker's requeue headers travel with the job")
			require.GreaterOrEqual(t, e.Time().Sub(r1[i-1].Time()), 900*time.Millisecond, "requeue delay honoured")
		}
	}
	s.WaitEvents(t, 15*time.Second, "done", "r1", 3)

	d1 := s.WaitEvents(t, 15*time.Second, "start", "d1", 1)
	require.GreaterOrEqual(t, d1[0].Time().Sub(pushed), 1900*time.Millisecond, "push delay honoured")
	s.WaitEvents(t, 15*time.Second, "done", "d1", 1)
	waitStat(t, c, "p2", func(st stat) bool { return st.Reserved == 0 })
	require.Len(t, s.Events(t, "start", "n1"), 1, "a final nack is not redelivered")
}

// conformPriority: with one worker busy, jobs waiting in the plugin's queue run by priority (a job's
// own priority first, else its pipeline's), ties in push order.
func conformPriority(t *testing.T, d *conformance) {
	low := pipe{name: "low", queue: d.queue(t), priority: 20}
	high := pipe{name: "high", queue: d.queue(t), priority: 2}
	s, c := start(t, d.config(t, 1, 1, low, high))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "high", ID: "blocker", Payload: helpers.Action("sleep", "ms", 2500)}))
	s.WaitEvents(t, 15*time.Second, "start", "blocker", 1)
	jobs := []helpers.Job{
		{Pipeline: "low", ID: "low-a", Payload: helpers.Action("ack")},
		{Pipeline: "low", ID: "low-b", Payload: helpers.Action("ack")},
		{Pipeline: "high", ID: "high-a", Payload: helpers.Action("ack")},
		{Pipeline: "low", ID: "urgent", Payload: helpers.Action("ack"), Priority: 1},
		{Pipeline: "high", ID: "high-b", Payload: helpers.Action("ack")},
		{Pipeline: "low", ID: "low-c", Payload: helpers.Action("ack")},
	}
	for _, j := range jobs {
		require.NoError(t, c.Push(j))
	}
	s.WaitEvents(t, 20*time.Second, "done", "", len(jobs)+1)
	var order []string
	for _, e := range s.Events(t, "start", "")[1:] {
		order = append(order, e.ID)
	}
	require.Equal(t, []string{"urgent", "high-a", "high-b", "low-a", "low-b", "low-c"}, order)
}

func conformPauseResumeAndStat(t *testing.T, d *conformance) {
	s, c, p1, _ := d.twoPipes(t)
	require.NoError(t, c.Pause("p1"))
	waitStat(t, c, "p1", func(st stat) bool { return !st.Ready })
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "s1", Payload: helpers.Action("ack")}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "s2", Payload: helpers.Action("ack"), Delay: 60}))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p2", ID: "other", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 15*time.Second, "done", "other", 1)
	st := waitStat(t, c, "p1", func(st stat) bool {
		return (!d.stat.active || st.Active == 1) && (!d.stat.delayed || st.Delayed == 1) && (!d.stat.reserved || st.Reserved == 0)
	})
	require.Equal(t, d.driver, st.Driver)
	require.Equal(t, d.ctxQueue("p1", p1.queue), st.Queue)
	require.Equal(t, uint64(10), st.Priority)
	require.False(t, st.Ready)
	require.Empty(t, s.Events(t, "start", "s1"), "a paused pipeline hands out nothing")

	require.NoError(t, c.Resume("p1"))
	s.WaitEvents(t, 15*time.Second, "done", "s1", 1)
	waitStat(t, c, "p1", func(st stat) bool {
		return st.Ready && (!d.stat.active || st.Active == 0) && (!d.stat.delayed || st.Delayed == 1)
	})
	require.Empty(t, s.Events(t, "start", "s2"), "a delayed job waits for its delay")

	// A second pause and resume work the same.
	require.NoError(t, c.Pause("p1"))
	waitStat(t, c, "p1", func(st stat) bool { return !st.Ready })
	require.NoError(t, c.Resume("p1"))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "s3", Payload: helpers.Action("ack")}))
	s.WaitEvents(t, 15*time.Second, "done", "s3", 1)

	if d.stat.reserved {
		require.NoError(t, c.Push(helpers.Job{Pipeline: "p2", ID: "busy", Payload: helpers.Action("sleep", "ms", 1500)}))
		waitStat(t, c, "p2", func(st stat) bool { return st.Reserved == 1 })
		s.WaitEvents(t, 15*time.Second, "done", "busy", 1)
		waitStat(t, c, "p2", func(st stat) bool { return st.Reserved == 0 })
	}
}

func conformDeclareAndDestroy(t *testing.T, d *conformance) {
	s, c, _, _ := d.twoPipes(t)
	queue := d.queue(t)
	fields := map[string]string{"name": "dyn", "driver": d.driver, "priority": "3"}
	for k, v := range d.declare(queue) {
		fields[k] = v
	}
	require.NoError(t, c.Declare(fields))
	names, err := c.List()
	require.NoError(t, err)
	require.Equal(t, []string{"dyn", "p1", "p2"}, names)
	st := waitStat(t, c, "dyn", func(st stat) bool { return !st.Ready })
	require.Equal(t, uint64(3), st.Priority)
	require.Equal(t, d.driver, st.Driver)
	require.Equal(t, d.ctxQueue("dyn", queue), st.Queue)

	require.NoError(t, c.Resume("dyn"))
	require.NoError(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "dj", Payload: helpers.Action("ack")}))
	got := s.WaitEvents(t, 15*time.Second, "start", "dj", 1)
	require.Equal(t, "dyn", got[0].Pipeline)
	require.Equal(t, d.ctxQueue("dyn", queue), *got[0].Queue)
	s.WaitEvents(t, 15*time.Second, "done", "dj", 1)

	require.ErrorContains(t, c.Declare(fields), "pipeline already exists, name: dyn")
	destroyed, err := c.Destroy("dyn")
	require.NoError(t, err)
	require.Equal(t, []string{"dyn"}, destroyed)
	require.ErrorContains(t, c.Push(helpers.Job{Pipeline: "dyn", ID: "late", Payload: "x"}), "no such pipeline, requested: dyn")
}

func conformAutoAck(t *testing.T, d *conformance) {
	s, c, _, _ := d.twoPipes(t)
	// The worker crashes on it; with auto_ack the job counts as delivered and is not run again.
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "aa", Payload: helpers.Action("crash"), AutoAck: true}))
	s.WaitEvents(t, 15*time.Second, "start", "aa", 1)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "after", Payload: helpers.Action("ack"), Delay: 2}))
	s.WaitEvents(t, 20*time.Second, "done", "after", 1)
	require.Len(t, s.Events(t, "start", "aa"), 1)
}

func conformWorkerCrash(t *testing.T, d *conformance) {
	s, c, _, _ := d.twoPipes(t)
	require.NoError(t, c.Push(helpers.Job{Pipeline: "p1", ID: "crashy", Payload: helpers.Action("crash_once")}))
	starts := s.WaitEvents(t, 20*time.Second, "start", "crashy", 2)
	require.NotEqual(t, starts[0].PID, starts[1].PID, "the crashed worker was replaced")
	s.WaitEvents(t, 15*time.Second, "done", "crashy", 1)
	waitStat(t, c, "p1", func(st stat) bool { return !d.stat.reserved || st.Reserved == 0 })
}

// conformTwoInstances: two rr servers consume one broker queue; every job runs exactly once and
// both take part.
func conformTwoInstances(t *testing.T, d *conformance) {
	shared := pipe{name: "shared", queue: d.queue(t), priority: 10}
	a, ca := start(t, d.config(t, 0, 0, shared))
	b, cb := start(t, d.config(t, 0, 0, shared))

	const n = 40
	for i := range n {
		c := []*helpers.Client{ca, cb}[i%2]
		require.NoError(t, c.Push(helpers.Job{Pipeline: "shared", ID: "s-" + strconv.Itoa(i), Payload: helpers.Action("sleep", "ms", 50)}))
	}
	helpers.Eventually(t, 60*time.Second, func() error {
		if got := len(a.Events(t, "done", "")) + len(b.Events(t, "done", "")); got < n {
			return fmt.Errorf("%d of %d jobs done", got, n)
		}
		return nil
	}, "all jobs done")
	starts := map[string]int{}
	for _, e := range append(a.Events(t, "start", ""), b.Events(t, "start", "")...) {
		starts[e.ID]++
	}
	require.Len(t, starts, n)
	for id, k := range starts {
		require.Equal(t, 1, k, "job %s started %d times", id, k)
	}
	require.NotEmpty(t, a.Events(t, "done", ""), "instance A took part")
	require.NotEmpty(t, b.Events(t, "done", ""), "instance B took part")
}
