// Command echoworker is a jobs worker in Go that acknowledges every job at once. Benchmarks use it so
// that the jobs engine, not PHP, is what gets measured. It speaks the worker protocol over pipes.
//
// Report mode (off by default): when ECHOWORKER_REPORT names a unix socket, the worker connects to it
// and, for every job, records one line "<unix-nanoseconds when the job frame arrived> <job body>\n".
// Lines are buffered and written every few milliseconds (and when the worker exits), so reporting adds
// no system call per job. bench/ uses it to measure enqueue-to-start latency and start order without
// PHP. Bodies are written as they are: report mode is meant for short bodies without newlines.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/roadrunner-server/goridge/v3/pkg/pipe"
)

var ack = []byte(`{"type":2,"data":[]}`)

func main() {
	// A PHP worker is one thread; so is this one, unless GOMAXPROCS says otherwise. With the Go
	// default (one P per core) every idle worker also spins up threads looking for work, which takes
	// CPU from the server being measured.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	relay := pipe.NewPipeRelay(os.Stdin, os.Stdout)
	report := dialReport(os.Getenv("ECHOWORKER_REPORT"))
	defer report.flush()
	in := frame.NewFrame()
	for {
		in.Reset()
		if err := relay.Receive(in); err != nil {
			return // RR closed the pipes
		}
		arrived := time.Now().UnixNano()
		flags := in.ReadFlags()
		if flags&frame.CONTROL != 0 {
			var ctl struct {
				Pid  int  `json:"pid"`
				Stop bool `json:"stop"`
			}
			_ = json.Unmarshal(in.Payload(), &ctl)
			if ctl.Stop {
				return
			}
			reply(relay, frame.CONTROL, nil, []byte(fmt.Sprintf(`{"pid":%d}`, os.Getpid())))
			continue
		}
		report.add(arrived, jobBody(in))
		reply(relay, 0, []uint32{0}, ack)
	}
}

// reporter buffers report lines and writes them to the report socket in the background.
type reporter struct {
	conn net.Conn
	mu   sync.Mutex
	buf  []byte
}

// dialReport connects to the report socket, or returns nil (report mode off) when path is empty.
func dialReport(path string) *reporter {
	if path == "" {
		return nil
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "echoworker: ECHOWORKER_REPORT %s: %v\n", path, err)
		os.Exit(1)
	}
	r := &reporter{conn: conn}
	go func() {
		for range time.Tick(2 * time.Millisecond) {
			r.flush()
		}
	}()
	return r
}

func (r *reporter) add(arrived int64, body []byte) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.buf = strconv.AppendInt(r.buf, arrived, 10)
	r.buf = append(r.buf, ' ')
	r.buf = append(r.buf, body...)
	r.buf = append(r.buf, '\n')
	r.mu.Unlock()
}

func (r *reporter) flush() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) == 0 {
		return
	}
	if _, err := r.conn.Write(r.buf); err != nil {
		fmt.Fprintf(os.Stderr, "echoworker: report: %v\n", err)
		os.Exit(1)
	}
	r.buf = r.buf[:0]
}

// jobBody returns the body of a job frame: the payload after the context, whose length is options[0].
func jobBody(in *frame.Frame) []byte {
	pl := in.Payload()
	opts := in.ReadOptions(in.Header())
	if len(opts) == 0 || int(opts[0]) > len(pl) {
		return pl
	}
	return pl[opts[0]:]
}

func reply(relay *pipe.Relay, flags byte, options []uint32, payload []byte) {
	out := frame.NewFrame()
	out.WriteVersion(out.Header(), frame.Version1)
	out.WriteFlags(out.Header(), flags)
	if len(options) > 0 {
		out.WriteOptions(out.HeaderPtr(), options...)
	}
	out.WritePayloadLen(out.Header(), uint32(len(payload))) //nolint:gosec
	out.WritePayload(payload)
	out.WriteCRC(out.Header())
	if err := relay.Send(out); err != nil {
		os.Exit(1)
	}
}
