package jobs

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/roadrunner-server/pool/fsm"
	"github.com/roadrunner-server/pool/state/process"
	"github.com/roadrunner-server/pool/worker"
)

const metricsNamespace = "rr_jobs"

// pushSource is where a push came from: it indexes a pipeline's per-source series, whose `source`
// label (rr_jobs_requests_total, rr_jobs_push_latency) is pushSourceLabels[source].
type pushSource int

const (
	sourceSingle pushSource = iota
	sourceBatch
)

var pushSourceLabels = [...]string{sourceSingle: "single", sourceBatch: "batch"}

// metrics holds every series the plugin exports, with the stock names and labels so existing
// dashboards keep working. The tallies are counters (stock exported them as gauges; the sample lines
// read the same).
type metrics struct {
	jobsOK      prometheus.Counter
	jobsErr     prometheus.Counter
	jobsRequeue prometheus.Counter
	pushOK      prometheus.Counter
	pushErr     prometheus.Counter
	requests    *prometheus.CounterVec
	pushLatency *prometheus.HistogramVec
	// Retry policy outcomes, by pipeline.
	retries      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	discarded    *prometheus.CounterVec
	workers      *workersCollector
}

func newMetrics(workers func() []*worker.Process) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help})
	}
	return &metrics{
		jobsOK:      counter("jobs_ok", "Jobs a worker processed and answered with a valid reply (ack, nack or requeue)."),
		jobsErr:     counter("jobs_err", "Jobs that failed: no worker, worker error or crash, exec_ttl, bad reply."),
		jobsRequeue: counter("jobs_requeue", "Jobs put back in their pipeline (worker requeue or a failure retry)."),
		pushOK:      counter("push_ok", "Jobs accepted by a pipeline's driver."),
		pushErr:     counter("push_err", "Jobs a push was refused for."),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "requests_total",
			Help: "Push attempts that reached a known pipeline.",
		}, []string{"job", "driver", "source"}),
		pushLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "push_latency",
			Help: "Time a successful push took, in seconds.",
		}, []string{"job", "driver", "source"}),
		retries:      pipelineCounter("retries_total", "Failed runs that the retry policy scheduled again."),
		deadLettered: pipelineCounter("dead_lettered_total", "Jobs that ran out of attempts and were moved to the dead-letter pipeline."),
		discarded:    pipelineCounter("discarded_total", "Jobs that ran out of attempts in a pipeline without a dead-letter pipeline."),
		workers:      newWorkersCollector(workers),
	}
}

func pipelineCounter(name, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, []string{"pipeline"})
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.jobsOK, m.jobsErr, m.jobsRequeue, m.pushOK, m.pushErr, m.requests, m.pushLatency,
		m.retries, m.deadLettered, m.discarded, m.workers}
}

// workersCollector reports the worker pool at scrape time, so nothing is tracked on the hot path.
type workersCollector struct {
	workers       func() []*worker.Process
	totalWorkers  *prometheus.Desc
	memoryTotal   *prometheus.Desc
	workerState   *prometheus.Desc
	workerMemory  *prometheus.Desc
	workersReady  *prometheus.Desc
	workersBusy   *prometheus.Desc
	workersBroken *prometheus.Desc
}

func newWorkersCollector(workers func() []*worker.Process) *workersCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "", name), help, labels, nil)
	}
	return &workersCollector{
		workers:       workers,
		totalWorkers:  desc("total_workers", "Total number of workers used by the plugin."),
		memoryTotal:   desc("workers_memory_bytes", "Memory usage by workers."),
		workerState:   desc("worker_state", "Worker current state.", "state", "pid"),
		workerMemory:  desc("worker_memory_bytes", "Worker current memory usage.", "pid"),
		workersReady:  desc("workers_ready", "Workers currently in ready state."),
		workersBusy:   desc("workers_working", "Workers currently in working state."),
		workersBroken: desc("workers_invalid", "Workers currently in invalid, killing, destroyed, errored, inactive states."),
	}
}

func (c *workersCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.totalWorkers, c.memoryTotal, c.workerState, c.workerMemory, c.workersReady, c.workersBusy, c.workersBroken} {
		ch <- d
	}
}

func (c *workersCollector) Collect(ch chan<- prometheus.Metric) {
	workers := c.workers()
	var memTotal uint64
	var ready, working, invalid int
	for _, w := range workers {
		st := w.State()
		pid := strconv.FormatInt(w.Pid(), 10)
		var mem uint64
		if ps, err := process.WorkerProcessState(w); err == nil {
			mem = ps.MemoryUsage
		}
		memTotal += mem
		ch <- prometheus.MustNewConstMetric(c.workerMemory, prometheus.GaugeValue, float64(mem), pid)
		ch <- prometheus.MustNewConstMetric(c.workerState, prometheus.GaugeValue, 0, st.String(), pid)
		switch st.CurrentState() {
		case fsm.StateReady:
			ready++
		case fsm.StateWorking:
			working++
		default:
			invalid++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.totalWorkers, prometheus.GaugeValue, float64(len(workers)))
	ch <- prometheus.MustNewConstMetric(c.memoryTotal, prometheus.GaugeValue, float64(memTotal))
	ch <- prometheus.MustNewConstMetric(c.workersReady, prometheus.GaugeValue, float64(ready))
	ch <- prometheus.MustNewConstMetric(c.workersBusy, prometheus.GaugeValue, float64(working))
	ch <- prometheus.MustNewConstMetric(c.workersBroken, prometheus.GaugeValue, float64(invalid))
}
