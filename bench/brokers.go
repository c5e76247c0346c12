package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// The broker drivers are measured against the servers of this machine; the addresses can be
// pointed elsewhere with the same variables the tests read.
var (
	amqpURL = envOr("RRJOBS_AMQP_ADDR", "amqp://guest:guest@127.0.0.1:5672/")
	natsURL = envOr("RRJOBS_NATS_ADDR", "nats://127.0.0.1:4222")
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// reachable reports whether a TCP server accepts connections at addr (host:port).
func reachable(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// benchQueue names a run's broker queue after its fresh temporary directory, so runs never share
// one.
func benchQueue(dir string) string { return "rrbench-" + filepath.Base(dir) }

// amqpDriver is scenario 9: ours (drivers/amqp) against the stock amqp/v5 driver, on the local
// RabbitMQ, one durable queue per run bound to the default direct exchange.
var amqpDriver = durableDriver{
	number: 9, name: "amqp", note: "RabbitMQ on this machine, a fresh queue per run, prefetch 1000",
	global: func() string { return "amqp:\n  addr: " + strconv.Quote(amqpURL) + "\n" },
	pipeline: func(dir string) pipeCfg {
		q := strconv.Quote(benchQueue(dir))
		return pipeCfg{name: "bench", driver: "amqp", priority: 10, prefetch: 1000, consume: true, config: map[string]string{
			"queue": q, "routing_key": q, "exchange": `"rrbench"`, "exchange_type": "direct",
		}}
	},
	require: func() error {
		u, err := amqp091.ParseURI(amqpURL)
		if err != nil {
			return err
		}
		return reachable(net.JoinHostPort(u.Host, strconv.Itoa(u.Port)))
	},
	cleanup: func(dir string) {
		conn, err := amqp091.Dial(amqpURL)
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		_, _ = ch.QueueDelete(benchQueue(dir), false, false, false)
		_ = ch.ExchangeDelete("rrbench", false, false)
	},
}

// natsDriver is scenario 10: ours (drivers/nats) against the stock nats/v5 driver, on the local
// NATS JetStream server, one stream and subject per run, messages deleted once acked.
var natsDriver = durableDriver{
	number: 10, name: "nats", note: "NATS JetStream on this machine, a fresh stream per run, delete_after_ack, prefetch 1000",
	global: func() string { return "nats:\n  addr: " + strconv.Quote(natsURL) + "\n" },
	pipeline: func(dir string) pipeCfg {
		q := strconv.Quote(benchQueue(dir))
		return pipeCfg{name: "bench", driver: "nats", priority: 10, prefetch: 1000, consume: true, config: map[string]string{
			"subject": q, "stream": q, "delete_after_ack": "true",
		}}
	},
	require: func() error {
		nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second))
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	},
	cleanup: func(dir string) {
		nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second))
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, benchQueue(dir))
	},
}
