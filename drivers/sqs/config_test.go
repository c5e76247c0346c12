package sqs

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

// parse resolves pipeline p1's settings from its config section and the `sqs:` section.
func parse(global, section map[string]any) (Config, []string, error) {
	o := driverkit.NewOptions(pluginName, drivertest.NewPipeline("p1", pluginName, nil), section)
	return parseConfig(o, o.Global(globalSection, global))
}

// parseDeclared resolves a pipeline declared with jobs.Declare (every value a string).
func parseDeclared(values map[string]any) (Config, []string, error) {
	o := driverkit.NewOptions(pluginName, drivertest.NewPipeline("p1", pluginName, values), nil)
	return parseConfig(o, o.Global(globalSection, nil))
}

func TestConfigDefaults(t *testing.T) {
	conf, warn, err := parse(nil, nil)
	require.NoError(t, err)
	require.Empty(t, warn)
	require.Equal(t, Config{
		Queue: "default", Priority: 10, Prefetch: 1, MaxInFlight: 1,
		Attributes: map[string]string{}, Tags: map[string]string{},
	}, conf)
}

func TestConfigValues(t *testing.T) {
	global := map[string]any{"key": "k", "secret": "s", "region": "eu-west-1", "session_token": "tok", "endpoint": "http://127.0.0.1:4566"}
	want := Config{
		Key: "k", Secret: "s", SessionToken: "tok", Region: "eu-west-1", Endpoint: "http://127.0.0.1:4566",
		Queue: "emails", Priority: 3, Prefetch: 5, MaxInFlight: 20, VisibilityTimeout: 60, ErrorVisibilityTimeout: 5,
		RetainFailedJobs: true, WaitTime: 20, MessageGroupID: "", SkipDeclare: true,
		Attributes: map[string]string{"VisibilityTimeout": "60", "MessageRetentionPeriod": "86400", "DeduplicationScope": "messageGroup"},
		Tags:       map[string]string{"team": "jobs"},
	}
	// .rr.yaml (typed values, maps) and Declare (strings, JSON objects) read the same.
	yaml := map[string]any{
		"queue": "emails", "priority": 3, "prefetch": 5, "max_messages_in_flight": 20, "visibility_timeout": 60,
		"error_visibility_timeout": 5, "retain_failed_jobs": true, "wait_time_seconds": 20, "skip_queue_declaration": true,
		"attributes": map[string]any{"visibilitytimeout": 60, "MessageRetentionPeriod": "86400", "deduplicationscope": "messagegroup"},
		"tags":       map[string]any{"team": "jobs"},
	}
	conf, _, err := parse(global, yaml)
	require.NoError(t, err)
	require.Equal(t, want, conf)

	declared := map[string]any{
		"queue": "emails", "priority": "3", "prefetch": "5", "max_messages_in_flight": "20", "visibility_timeout": "60",
		"error_visibility_timeout": "5", "retain_failed_jobs": "true", "wait_time": "20", "skip_queue_declaration": "true",
		"attributes": `{"VisibilityTimeout":"60","messageRetentionPeriod":86400,"DeduplicationScope":"messageGroup"}`,
		"tags":       `{"team":"jobs"}`,
		"key":        "k", "secret": "s", "region": "eu-west-1", "session_token": "tok", "endpoint": "http://127.0.0.1:4566",
	}
	conf, _, err = parseDeclared(declared)
	require.NoError(t, err)
	require.Equal(t, want, conf)

	// A key in the pipeline wins over the global section.
	conf, _, err = parse(global, map[string]any{"region": "us-west-2"})
	require.NoError(t, err)
	require.Equal(t, "us-west-2", conf.Region)
	require.Equal(t, "k", conf.Key)
}

func TestConfigFIFO(t *testing.T) {
	conf, _, err := parse(nil, map[string]any{"queue": "orders.fifo", "message_group_id": "tenant-1"})
	require.NoError(t, err)
	require.True(t, conf.FIFO)
	require.Equal(t, "tenant-1", conf.MessageGroupID)
	require.Equal(t, map[string]string{"FifoQueue": "true"}, conf.Attributes, "FifoQueue is implied by the .fifo name")

	conf, _, err = parse(nil, map[string]any{"queue": "orders.fifo", "attributes": map[string]any{"FifoQueue": "TRUE", "contentbaseddeduplication": true}})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}, conf.Attributes)

	conf, _, err = parse(nil, map[string]any{"queue": "plain", "attributes": map[string]any{"FifoQueue": false}})
	require.NoError(t, err)
	require.Empty(t, conf.Attributes, "FifoQueue false is left out on a standard queue")
}

func TestConfigPrefetchIsClamped(t *testing.T) {
	conf, warn, err := parse(nil, map[string]any{"prefetch": 100})
	require.NoError(t, err)
	require.Equal(t, 10, conf.Prefetch)
	require.Equal(t, 10, conf.MaxInFlight)
	require.Len(t, warn, 1)
	require.Contains(t, warn[0], "prefetch 100")
	require.Contains(t, warn[0], "max_messages_in_flight")

	conf, _, err = parse(nil, map[string]any{"prefetch": 100, "max_messages_in_flight": 500})
	require.NoError(t, err)
	require.Equal(t, 10, conf.Prefetch)
	require.Equal(t, 500, conf.MaxInFlight)

	// 0 means the default for priority and prefetch, as with stock.
	conf, _, err = parse(nil, map[string]any{"prefetch": 0, "priority": "0"})
	require.NoError(t, err)
	require.Equal(t, 1, conf.Prefetch)
	require.Equal(t, int64(10), conf.Priority)
}

func TestConfigErrorsNamePipelineKeyAndValue(t *testing.T) {
	for name, c := range map[string]struct {
		global, section map[string]any
		want            []string
	}{
		"prefetch":               {nil, map[string]any{"prefetch": "many"}, []string{"prefetch", `"many"`}},
		"negative prefetch":      {nil, map[string]any{"prefetch": -1}, []string{"prefetch", ">= 0"}},
		"visibility":             {nil, map[string]any{"visibility_timeout": 43201}, []string{"visibility_timeout", "43200"}},
		"error visibility":       {nil, map[string]any{"error_visibility_timeout": -5}, []string{"error_visibility_timeout"}},
		"wait time":              {nil, map[string]any{"wait_time_seconds": 21}, []string{"wait_time_seconds", "20"}},
		"declare wait time":      {nil, map[string]any{"wait_time": "x"}, []string{"wait_time", `"x"`}},
		"retain":                 {nil, map[string]any{"retain_failed_jobs": "maybe"}, []string{"retain_failed_jobs", `"maybe"`}},
		"skip":                   {nil, map[string]any{"skip_queue_declaration": "perhaps"}, []string{"skip_queue_declaration"}},
		"queue name":             {nil, map[string]any{"queue": "has space"}, []string{"queue", `"has space"`}},
		"queue too long":         {nil, map[string]any{"queue": strings.Repeat("a", 81)}, []string{"queue", "80"}},
		"fifo flag without name": {nil, map[string]any{"queue": "plain", "attributes": map[string]any{"FifoQueue": "true"}}, []string{"FifoQueue", ".fifo", `"plain"`}},
		"fifo name with false":   {nil, map[string]any{"queue": "q.fifo", "attributes": map[string]any{"FifoQueue": "false"}}, []string{"FifoQueue", `"q.fifo"`}},
		"unknown attribute":      {nil, map[string]any{"attributes": map[string]any{"Visibility": 5}}, []string{"attributes", `"Visibility"`, "VisibilityTimeout"}},
		"bad bool attribute":     {nil, map[string]any{"attributes": map[string]any{"SqsManagedSseEnabled": "yes"}}, []string{"SqsManagedSseEnabled", `"yes"`}},
		"bad enum attribute":     {nil, map[string]any{"attributes": map[string]any{"FifoThroughputLimit": "fast"}}, []string{"FifoThroughputLimit", "perQueue", `"fast"`}},
		"attributes not a map":   {nil, map[string]any{"attributes": "[1,2]"}, []string{"attributes"}},
		"group id":               {nil, map[string]any{"message_group_id": "has space"}, []string{"message_group_id", `"has space"`}},
		"key without secret":     {map[string]any{"key": "k"}, nil, []string{"sqs.key", "sqs.secret"}},
		"endpoint":               {map[string]any{"endpoint": "localhost:4566"}, nil, []string{"sqs.endpoint", `"localhost:4566"`}},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := parse(c.global, c.section)
			require.Error(t, err)
			require.ErrorContains(t, err, `sqs pipeline "p1"`)
			for _, w := range c.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestPluginBuildsDrivers(t *testing.T) {
	srv := fake(t)
	queue := uniqueQueue("")
	cfg := drivertest.Configurer{
		"sqs": map[string]any{"key": "test", "secret": "test", "endpoint": srv.URL()},
		"jobs": map[string]any{"pipelines": map[string]any{"p1": map[string]any{
			"driver": "sqs", "config": map[string]any{"queue": queue, "prefetch": 5, "wait_time_seconds": 1},
		}}},
	}
	p := &Plugin{}
	require.Error(t, p.Init(nil, cfg))
	require.NoError(t, p.Init(drivertest.NopLogger(), cfg))
	require.Equal(t, "sqs", p.Name())

	q := drivertest.NewQueue(0)
	pipe := drivertest.NewPipeline("p1", "sqs", nil)
	drv, err := p.DriverFromConfig("jobs.pipelines.p1.config", q, pipe)
	require.NoError(t, err)
	d := drv.(*Driver)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	require.Equal(t, queue, d.conf.Queue)
	require.Equal(t, 5, d.conf.Prefetch)

	// Declare: every value a string, the global section still applies.
	declared := drivertest.NewPipeline("dyn", "sqs", map[string]any{"queue": queue + "-dyn", "prefetch": "2", "wait_time": "1", "priority": "4"})
	drv, err = p.DriverFromPipeline(declared, q)
	require.NoError(t, err)
	d2 := drv.(*Driver)
	t.Cleanup(func() { _ = d2.Stop(context.Background()) })
	require.Equal(t, 2, d2.conf.Prefetch)
	require.Equal(t, 1, d2.conf.WaitTime)
	require.Equal(t, int64(4), d2.conf.Priority)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d2.Run(ctx, declared))
	require.NoError(t, d2.Push(ctx, drivertest.NewMessage("x", "j", "dyn", []byte("y"))))
	it := take(t, q)
	require.Equal(t, "x", it.ID())
	require.Equal(t, int64(4), it.Priority())
	require.NoError(t, it.Ack())

	// Errors name the pipeline; nil pipelines are refused.
	_, err = p.DriverFromPipeline(drivertest.NewPipeline("bad", "sqs", map[string]any{"prefetch": "x"}), q)
	require.ErrorContains(t, err, `sqs pipeline "bad"`)
	_, err = p.DriverFromPipeline(nil, q)
	require.Error(t, err)
	_, err = p.DriverFromConfig("k", q, nil)
	require.Error(t, err)
}

// The README's example (with the endpoint and credentials of the test server) starts both
// pipelines.
func TestReadmeExample(t *testing.T) {
	srv := fake(t)
	var cfg drivertest.Configurer
	require.NoError(t, json.Unmarshal([]byte(`{"sqs": {"region": "eu-west-1", "key": "k", "secret": "s", "endpoint": "`+srv.URL()+`"},
	 "jobs": {"consume": ["emails", "orders"], "pipelines": {
	  "emails": {"driver": "sqs", "config": {"queue": "emails", "priority": 10, "prefetch": 10, "max_messages_in_flight": 50,
	    "wait_time_seconds": 20, "visibility_timeout": 60, "attributes": {"MessageRetentionPeriod": 1209600}, "tags": {"team": "backend"}}},
	  "orders": {"driver": "sqs", "config": {"queue": "orders.fifo", "message_group_id": "orders", "prefetch": 10,
	    "wait_time_seconds": 20, "retain_failed_jobs": true, "attributes": {"ContentBasedDeduplication": false}}}}}}`), &cfg))
	p := &Plugin{}
	require.NoError(t, p.Init(drivertest.NopLogger(), cfg))
	for _, name := range []string{"emails", "orders"} {
		drv, err := p.DriverFromConfig("jobs.pipelines."+name+".config", drivertest.NewQueue(0), drivertest.NewPipeline(name, "sqs", nil))
		require.NoError(t, err, name)
		d := drv.(*Driver)
		require.NoError(t, d.Stop(context.Background()))
	}
	require.Equal(t, [3]int{0, 0, 0}, counts(t, srv, "orders.fifo"))
}

func TestConfigAttributeValues(t *testing.T) {
	redrive := `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":5}`
	for name, attrs := range map[string]any{
		"yaml": map[string]any{"MessageRetentionPeriod": 1209600.0, "maximummessagesize": 1048576, "SqsManagedSseEnabled": false,
			"RedrivePolicy": map[string]any{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq", "maxReceiveCount": 5}},
		"declare": `{"MessageRetentionPeriod": 1209600, "maximummessagesize": "1048576", "SqsManagedSseEnabled": "False",
			"RedrivePolicy": {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq", "maxReceiveCount": 5}}`,
	} {
		t.Run(name, func(t *testing.T) {
			conf, _, err := parse(nil, map[string]any{"attributes": attrs, "tags": map[string]any{"cost": 100000.0}})
			require.NoError(t, err)
			require.Equal(t, "1209600", conf.Attributes["MessageRetentionPeriod"])
			require.Equal(t, "1048576", conf.Attributes["MaximumMessageSize"])
			require.Equal(t, "false", conf.Attributes["SqsManagedSseEnabled"])
			require.JSONEq(t, redrive, conf.Attributes["RedrivePolicy"])
			require.Equal(t, "100000", conf.Tags["cost"])
		})
	}
}
