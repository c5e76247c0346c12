package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"time"

	jobsProto "github.com/roadrunner-server/api/v4/build/jobs/v1"
	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/roadrunner-server/goridge/v3/pkg/socket"
	"google.golang.org/protobuf/proto"
)

// fastClient is a goridge RPC client that sends requests marshalled once and patched in place (new
// job ids, timestamps), so that the producer costs next to nothing and the figures measure the
// servers. The bytes on the wire are exactly what net/rpc with the goridge codec (and the PHP client)
// sends: a proto-codec frame with options [seq, len(method)] and payload method+body.
type fastClient struct {
	conn  net.Conn
	relay *socket.Relay
	seq   uint32
	out   []byte
	in    *frame.Frame
}

func dialFast(addr string) (*fastClient, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &fastClient{conn: conn, relay: socket.NewSocketRelay(conn), in: frame.NewFrame()}, nil
}

func (c *fastClient) close() { _ = c.conn.Close() }

// call sends method with an already marshalled protobuf body and waits for the reply.
func (c *fastClient) call(method string, body []byte, limit time.Duration) error {
	c.seq++
	fr := frame.NewFrame()
	fr.WriteVersion(fr.Header(), frame.Version1)
	fr.WriteFlags(fr.Header(), frame.CodecProto)
	fr.WriteOptions(fr.HeaderPtr(), c.seq, uint32(len(method)))    //nolint:gosec
	fr.WritePayloadLen(fr.Header(), uint32(len(method)+len(body))) //nolint:gosec
	fr.WriteCRC(fr.Header())
	c.out = append(append(append(c.out[:0], fr.Header()...), method...), body...)

	if err := c.conn.SetDeadline(time.Now().Add(limit)); err != nil {
		return err
	}
	if _, err := c.conn.Write(c.out); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	c.in.Reset()
	if err := c.relay.Receive(c.in); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	opts := c.in.ReadOptions(c.in.Header())
	if len(opts) != 2 || opts[0] != c.seq {
		return fmt.Errorf("%s: reply out of sequence", method)
	}
	if c.in.ReadFlags()&frame.ERROR != 0 {
		pl := c.in.Payload()
		if int(opts[1]) <= len(pl) {
			pl = pl[opts[1]:]
		}
		return fmt.Errorf("%s: %s", method, pl)
	}
	return nil
}

// template is a marshalled request whose job ids (and optionally payload stamps) are rewritten in
// place before every send.
type template struct {
	body []byte
	// idAt are the offsets of the 12 hex digits that end each job id.
	idAt []int
	// stampAt are the offsets of 19-digit decimal stamps in payloads ("t:" + stampDigits digits).
	stampAt []int
	next    uint64
	prefix  string
}

const stampDigits = 19

// newTemplate marshals jobs (their ids are replaced by unique placeholders) and records where the
// ids and the payload stamps are.
func newTemplate(jobs []*jobsProto.Job, single bool) (*template, error) {
	g := newIDs()
	t := &template{prefix: fmt.Sprintf("%08x", g.prefix)}
	idList := make([]string, len(jobs))
	for i, j := range jobs {
		idList[i] = g.next()
		j.Id = idList[i]
	}
	var msg proto.Message = &jobsProto.PushBatchRequest{Jobs: jobs}
	if single {
		if len(jobs) != 1 {
			return nil, errors.New("a single push has one job")
		}
		msg = &jobsProto.PushRequest{Job: jobs[0]}
	}
	body, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	t.body = body
	from := 0
	for _, id := range idList {
		i := bytes.Index(body[from:], []byte(id))
		if i < 0 {
			return nil, fmt.Errorf("id %s not found in the marshalled request", id)
		}
		t.idAt = append(t.idAt, from+i+len(id)-12)
		from += i + len(id)
	}
	stamp := append([]byte("t:"), bytes.Repeat([]byte("0"), stampDigits)...)
	for from = 0; ; {
		i := bytes.Index(body[from:], stamp)
		if i < 0 {
			break
		}
		t.stampAt = append(t.stampAt, from+i+2)
		from += i + len(stamp)
	}
	t.next = g.n
	return t, nil
}

// renew gives every job of the template a fresh id and returns the body to send.
func (t *template) renew() []byte {
	for _, at := range t.idAt {
		t.next++
		putHex(t.body[at:at+12], t.next)
	}
	return t.body
}

// stamp writes now (unix nanoseconds) into every payload stamp.
func (t *template) stamp(now int64) {
	for _, at := range t.stampAt {
		putDec(t.body[at:at+stampDigits], uint64(now)) //nolint:gosec
	}
}

func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&15]
		v >>= 4
	}
}

func putDec(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
}

// stampPayload is a payload with a zeroed stamp for templates.
func stampPayload() []byte {
	return append([]byte("t:"), bytes.Repeat([]byte("0"), stampDigits)...)
}
