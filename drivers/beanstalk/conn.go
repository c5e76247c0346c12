package beanstalk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/beanstalkd/go-beanstalk"
)

// conn is one beanstalkd connection. go-beanstalk's Conn is not safe for concurrent use (it keeps
// the used and watched tubes unguarded, and a command that failed half way leaves its response
// sequencer waiting forever), so each conn has one user at a time: the producer's semaphore or
// the consumer goroutine. A conn that returned anything but a beanstalkd reply (an I/O error, a
// deadline, an unexpected line) is closed and never used again.
type conn struct {
	nc    net.Conn
	bc    *beanstalk.Conn
	tube  *beanstalk.Tube    // put and stats-tube
	tubes *beanstalk.TubeSet // reserve (watches only the tube)
}

// keepAlive is the TCP keep-alive period of beanstalkd connections.
const keepAlive = 10 * time.Second

// dial connects to beanstalkd within timeout (or ctx, whichever ends first).
func dial(ctx context.Context, conf Config) (*conn, error) {
	d := net.Dialer{Timeout: conf.Timeout, KeepAlive: keepAlive}
	nc, err := d.DialContext(ctx, conf.Network, conf.Address)
	if err != nil {
		var ne net.Error
		if _, ok := ctx.Deadline(); ok && ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
		}
		return nil, fmt.Errorf("connect to beanstalkd at %s: %w", conf.Addr, err)
	}
	bc := beanstalk.NewConn(nc)
	return &conn{
		nc:    nc,
		bc:    bc,
		tube:  beanstalk.NewTube(bc, conf.Tube),
		tubes: beanstalk.NewTubeSet(bc, conf.Tube),
	}, nil
}

// close closes the network connection (safe to call from any goroutine, and more than once).
// beanstalkd releases every job reserved on it.
func (c *conn) close() {
	_ = c.nc.Close()
}

// do runs fn with the connection's deadline at limit from now, or at ctx's deadline if sooner; if
// ctx is cancelled the deadline moves to now, so fn returns at once with an I/O error.
func (c *conn) do(ctx context.Context, limit time.Duration, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	ctxDeadline := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxDeadline = d, true
	}
	_ = c.nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	err := fn()
	stop()
	if err != nil && broken(err) {
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		case ctxDeadline && errors.As(err, &ne) && ne.Timeout():
			return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
		}
	}
	return err
}

// put stores body in the tube.
func (c *conn) put(body []byte, pri uint32, delay, ttr time.Duration) (uint64, error) {
	return c.tube.Put(body, pri, delay, ttr)
}

// tubeCounts reads the ready, delayed and reserved counts of the tube. A tube that does not exist
// (no job and nobody using or watching it) counts zero.
func (c *conn) tubeCounts() (ready, delayed, reserved int64, err error) {
	st, err := c.tube.Stats()
	if err != nil {
		if errors.Is(err, beanstalk.ErrNotFound) {
			return 0, 0, 0, nil
		}
		return 0, 0, 0, err
	}
	num := func(key string) int64 {
		n, err := strconv.ParseInt(st[key], 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	return num("current-jobs-ready"), num("current-jobs-delayed"), num("current-jobs-reserved"), nil
}

// jobStats reads the time-to-run and the priority of a job.
func (c *conn) jobStats(id uint64) (ttr time.Duration, pri uint32, err error) {
	st, err := c.bc.StatsJob(id)
	if err != nil {
		return 0, 0, err
	}
	secs, err := strconv.ParseUint(st["ttr"], 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("stats-job %d: bad ttr %q", id, st["ttr"])
	}
	p, err := strconv.ParseUint(st["pri"], 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("stats-job %d: bad pri %q", id, st["pri"])
	}
	return time.Duration(secs) * time.Second, uint32(p), nil
}

// protocolErrors are beanstalkd's own replies: after one of them the connection is still in step.
// EXPECTED_CRLF, BAD_FORMAT and UNKNOWN_COMMAND are left out (they mean client and server
// disagree on the framing), as are name errors (the command was not sent but its response slot
// was taken).
var protocolErrors = []error{
	beanstalk.ErrBuried, beanstalk.ErrDeadline, beanstalk.ErrDraining, beanstalk.ErrInternal,
	beanstalk.ErrJobTooBig, beanstalk.ErrNotFound, beanstalk.ErrNotIgnored, beanstalk.ErrOOM,
	beanstalk.ErrTimeout,
}

// broken reports whether err leaves the connection unusable.
func broken(err error) bool {
	if err == nil {
		return false
	}
	for _, pe := range protocolErrors {
		if errors.Is(err, pe) {
			return false
		}
	}
	return true
}
