package drivertest

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// Logger is a stand-in for the RoadRunner logger plugin: NamedLogger returns Log.Named(name), or a
// no-op logger when Log is nil (so a zero Logger is usable).
type Logger struct {
	Log *zap.Logger
}

// NamedLogger returns a named child of Log.
func (l Logger) NamedLogger(name string) *zap.Logger {
	if l.Log == nil {
		return zap.NewNop()
	}
	return l.Log.Named(name)
}

// NopLogger returns a Logger that discards everything.
func NopLogger() Logger {
	return Logger{Log: zap.NewNop()}
}

// TestLogger returns a Logger writing to t.Log. Stop every goroutine that may log before the test
// ends: the testing package panics on a log after completion.
func TestLogger(t zaptest.TestingT) Logger {
	return Logger{Log: zaptest.NewLogger(t)}
}

// ObservedLogger returns a Logger recording entries at level and above, and the recorded logs.
func ObservedLogger(level zapcore.Level) (Logger, *observer.ObservedLogs) {
	core, logs := observer.New(level)
	return Logger{Log: zap.New(core)}, logs
}
