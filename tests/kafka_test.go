package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rrjobs/jobs/tests/helpers"
)

// End-to-end tests of the kafka driver against an in-process Kafka cluster (franz-go's kfake) that
// each test starts on a free port: no Kafka server is needed.

// kafkaEnv is a kfake cluster with an admin client.
type kafkaEnv struct {
	addr string
	adm  *kadm.Client
}

func startKafka(t *testing.T) *kafkaEnv {
	t.Helper()
	addr := helpers.FreeAddr(t)
	_, portStr, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	port, err := strconv.Atoi(portStr)
	require.NoError(t, err)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return &kafkaEnv{addr: addr, adm: kadm.NewClient(cl)}
}

// topic creates a fresh topic with the given partitions, deleted when the test ends.
func (k *kafkaEnv) topic(t *testing.T, partitions int32) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "rre2e_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := k.adm.CreateTopic(ctx, partitions, 1, nil, name)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = k.adm.DeleteTopics(ctx, name)
	})
	return name
}

func (k *kafkaEnv) global() string {
	return "kafka:\n  brokers: [\"" + k.addr + "\"]\n  ping:\n    timeout: 5s\n"
}

// kafkaPipeline is the config of a pipeline consuming topic in the consumer group g-<topic>.
func kafkaPipeline(topic string) string {
	return "consumer_options:\n  topics: [\"" + topic + "\"]\ngroup_options:\n  group_id: \"g-" + topic + "\"\n"
}

func TestKafkaConformance(t *testing.T) {
	k := startKafka(t)
	runConformance(t, conformance{
		driver: "kafka",
		global: func(*testing.T) string { return k.global() },
		newQueue: func(t *testing.T) string {
			// Two instances share a topic by splitting its partitions; elsewhere one partition keeps
			// the push order the priority scenario checks.
			partitions := int32(1)
			if strings.Contains(t.Name(), "TwoInstances") {
				partitions = 4
			}
			return k.topic(t, partitions)
		},
		pipeline: kafkaPipeline,
		declare: func(topic string) map[string]string {
			return map[string]string{
				"consumer_options": `{"topics":["` + topic + `"]}`,
				"group_options":    `{"group_id":"g-` + topic + `"}`,
			}
		},
		// Active is the lag (records not fetched yet) plus the jobs in the plugin's queue: a delayed
		// record still in Kafka counts as Active until it is fetched, and only then as Delayed, so
		// neither count is exact while a pipeline is paused.
		stat: statCaps{active: false, delayed: false, reserved: true},
	})
}

// TestKafkaRestartMidLoad stops rr while a group is half-way through a backlog and starts another rr
// on the same group: every job runs at least once, none is skipped, and the group ends up with
// everything committed.
func TestKafkaRestartMidLoad(t *testing.T) {
	helpers.RequirePHP(t)
	k := startKafka(t)
	topic := k.topic(t, 3)
	cfg := memoryConfig + k.global() + `
jobs:
  num_pollers: 4
  pool:
    num_workers: 3
    allocate_timeout: 10s
  consume: ["load"]
  pipelines:
    load:
      driver: kafka
      config:
        prefetch: 10
` + kafkaIndent(kafkaPipeline(topic), "        ")

	s1, c1 := start(t, cfg)
	const n = 90
	jobs := make([]helpers.Job, 0, n)
	for i := range n {
		jobs = append(jobs, helpers.Job{Pipeline: "load", ID: "L" + strconv.Itoa(i), Payload: helpers.Action("sleep", "ms", 100)})
	}
	require.NoError(t, c1.PushBatch(jobs...))
	s1.WaitEvents(t, 20*time.Second, "done", "", n/4)
	stopping := time.Now()
	require.NoError(t, s1.Stop())
	t.Logf("rr stopped in %s", time.Since(stopping))
	first := s1.Events(t, "done", "")
	require.Less(t, len(first), n, "rr was stopped mid-load")

	s2, c2 := start(t, cfg)
	done := map[string]int{}
	helpers.Eventually(t, 60*time.Second, func() error {
		clear(done)
		for _, e := range append(first, s2.Events(t, "done", "")...) {
			done[e.ID]++
		}
		if len(done) < n {
			return fmt.Errorf("%d of %d jobs done", len(done), n)
		}
		return nil
	}, "every job done once rr is back")
	for _, j := range jobs {
		require.GreaterOrEqual(t, done[j.ID], 1, "job %s was skipped", j.ID)
	}
	again := 0
	for _, c := range done {
		again += c - 1
	}
	t.Logf("%d jobs done before the restart, %d after; %d ran twice (at least once delivery)", len(first), len(s2.Events(t, "done", "")), again)
	require.Less(t, again, n/2, "the restart resumed from the committed offsets, not from the start")

	// The group committed everything: a third start finds nothing to do.
	waitStat(t, c2, "load", func(st stat) bool { return st.Active == 0 && st.Reserved == 0 })
	require.NoError(t, s2.Stop())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lag, err := k.adm.Lag(ctx, "g-"+topic)
	require.NoError(t, err)
	require.Equal(t, int64(0), lag["g-"+topic].Lag.Total(), "all offsets committed")
}

// TestKafkaTopicsCreatedWithConfig: create_topics makes the topic with its partitions and configs at
// start; Stat reports the topic; the job context carries it as queue.
func TestKafkaTopicsCreatedWithConfig(t *testing.T) {
	helpers.RequirePHP(t)
	k := startKafka(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	topic := "rre2e_created_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _, _ = k.adm.DeleteTopics(context.Background(), topic) })
	s, c := start(t, memoryConfig+k.global()+`
jobs:
  consume: ["made"]
  pipelines:
    made:
      driver: kafka
      config:
        create_topics:
          partitions: 2
          config:
            retention.ms: "3600000"
`+kafkaIndent(kafkaPipeline(topic), "        "))

	ctx := context.Background()
	details, err := k.adm.ListTopics(ctx, topic)
	require.NoError(t, err)
	require.Len(t, details[topic].Partitions, 2)
	cfgs, err := k.adm.DescribeTopicConfigs(ctx, topic)
	require.NoError(t, err)
	rc, err := cfgs.On(topic, nil)
	require.NoError(t, err)
	retention := ""
	for _, kv := range rc.Configs {
		if kv.Key == "retention.ms" && kv.Value != nil {
			retention = *kv.Value
		}
	}
	require.Equal(t, "3600000", retention)

	got := pushAndAck(t, s, c, "kafka", "made", topic)
	require.Equal(t, "made", got.Pipeline)
}

func kafkaIndent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}
