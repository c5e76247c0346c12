package tests

import (
	"path/filepath"
	"strings"
	"testing"
)

// The drivers that need no broker run the conformance scenarios too; sharing a queue between two
// rr processes is what they cannot do (memory lives in one process, a boltdb file is locked by one).

func TestMemoryConformance(t *testing.T) {
	runConformance(t, conformance{
		driver:       "memory",
		pipeline:     func(string) string { return "prefetch: 1000\n" },
		declare:      func(string) map[string]string { return map[string]string{"prefetch": "10"} },
		contextQueue: func(pipeline, _ string) string { return pipeline },
		stat:         statCaps{active: true, delayed: true, reserved: true},
		skip:         map[string]string{"TwoInstancesShareAQueue": "jobs live in one process's memory"},
	})
}

func TestBoltDBConformance(t *testing.T) {
	runConformance(t, conformance{
		driver:       "boltdb",
		newQueue:     func(t *testing.T) string { return filepath.Join(t.TempDir(), "jobs.db") },
		pipeline:     func(file string) string { return "file: " + strings.ReplaceAll(file, `\`, `/`) + "\n" },
		declare:      func(file string) map[string]string { return map[string]string{"file": file} },
		contextQueue: func(pipeline, _ string) string { return pipeline },
		stat:         statCaps{active: true, delayed: true, reserved: true},
		skip:         map[string]string{"TwoInstancesShareAQueue": "a boltdb file is locked by one process"},
	})
}

func TestPostgresConformance(t *testing.T) {
	dsn := pgTestDSN()
	runConformance(t, conformance{
		driver:   "postgres",
		require:  func(t *testing.T) { requirePostgres(t, dsn) },
		global:   func(t *testing.T) string { return "postgres:\n  dsn: \"" + dsn + "\"\n  max_conns: 4\n" },
		newQueue: func(t *testing.T) string { return pgTable(t, dsn) },
		// Each scenario queue is its own table; the queue name defaults to the pipeline's.
		pipeline:     func(table string) string { return "table: " + table + "\npoll_interval: 10s\nlease_timeout: 2s\n" },
		declare:      func(table string) map[string]string { return map[string]string{"table": table} },
		contextQueue: func(pipeline, _ string) string { return pipeline },
		stat:         statCaps{active: true, delayed: true, reserved: true},
	})
}
