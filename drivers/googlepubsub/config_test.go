package googlepubsub

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

// parse resolves pipeline name's settings from its config section and the `google_pub_sub:` section.
func parse(name string, global, section map[string]any) (Config, error) {
	o := driverkit.NewOptions(pluginName, drivertest.NewPipeline(name, pluginName, nil), section)
	return parseConfig(name, o, o.Global(globalSection, global))
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv(emulatorEnv, "")
	conf, err := parse("emails", nil, map[string]any{"project_id": "proj", "topic": "jobs"})
	require.NoError(t, err)
	require.Equal(t, Config{
		Endpoint: "127.0.0.1:8085", ProjectID: "proj", Topic: "jobs", Subscription: "emails",
		Priority: 10, Prefetch: 10, AckDeadline: 480 * time.Second,
	}, conf)

	// With a dead-letter topic, max_delivery_attempts defaults to 10 (stock).
	conf, err = parse("emails", nil, map[string]any{"project_id": "proj", "topic": "jobs", "dead_letter_topic": "dead"})
	require.NoError(t, err)
	require.Equal(t, "dead", conf.DeadLetterTopic)
	require.Equal(t, 10, conf.MaxDeliveryAttempts)
}

func TestConfigEndpoint(t *testing.T) {
	t.Setenv(emulatorEnv, "10.0.0.1:9000")
	base := map[string]any{"project_id": "p", "topic": "jobs"}

	// PUBSUB_EMULATOR_HOST applies when no endpoint is configured.
	conf, err := parse("emails", nil, base)
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1:9000", conf.Endpoint)
	require.True(t, conf.EndpointFromEnv)
	require.Empty(t, clientOptions(conf), "the client library applies the emulator host itself")

	// The global section, then the pipeline, win over it.
	conf, err = parse("emails", map[string]any{"endpoint": "g:1", "insecure": true}, base)
	require.NoError(t, err)
	require.Equal(t, "g:1", conf.Endpoint)
	require.False(t, conf.EndpointFromEnv)
	require.True(t, conf.Insecure)
	require.Len(t, clientOptions(conf), 4)

	conf, err = parse("emails", map[string]any{"endpoint": "g:1", "insecure": true},
		map[string]any{"project_id": "p", "topic": "jobs", "endpoint": "p:2", "insecure": "false"})
	require.NoError(t, err)
	require.Equal(t, "p:2", conf.Endpoint)
	require.False(t, conf.Insecure)

	// project_id may live in the global section (the stock driver reads both into one struct).
	conf, err = parse("emails", map[string]any{"project_id": "gp"}, map[string]any{"topic": "jobs"})
	require.NoError(t, err)
	require.Equal(t, "gp", conf.ProjectID)
}

func TestConfigValues(t *testing.T) {
	// Typed values (from .rr.yaml) and strings (from Declare) both work.
	for _, raw := range []map[string]any{
		{"project_id": "p", "topic": "t-1", "subscription": "s-1", "dead_letter_topic": "d-1", "max_delivery_attempts": 5, "priority": 3, "prefetch": 50, "ack_deadline": "60s"},
		{"project_id": "p", "topic": "t-1", "subscription": "s-1", "dead_letter_topic": "d-1", "max_delivery_attempts": "5", "priority": "3", "prefetch": "50", "ack_deadline": "60"},
		{"project_id": "p", "topic": "t-1", "subscription": "s-1", "dead_letter_topic": "d-1", "max_delivery_attempts": 5.0, "priority": 3.0, "prefetch": 50, "ack_deadline": 60},
	} {
		conf, err := parse("emails", map[string]any{"endpoint": "e:1"}, raw)
		require.NoError(t, err)
		require.Equal(t, Config{
			Endpoint: "e:1", ProjectID: "p", Topic: "t-1", Subscription: "s-1", DeadLetterTopic: "d-1",
			MaxDeliveryAttempts: 5, Priority: 3, Prefetch: 50, AckDeadline: time.Minute,
		}, conf)
	}
	// 0 means the default for priority, prefetch and max_delivery_attempts.
	conf, err := parse("emails", nil, map[string]any{"project_id": "p", "topic": "jobs", "priority": 0, "prefetch": "0", "dead_letter_topic": "dead", "max_delivery_attempts": 0})
	require.NoError(t, err)
	require.Equal(t, int64(10), conf.Priority)
	require.Equal(t, 10, conf.Prefetch)
	require.Equal(t, 10, conf.MaxDeliveryAttempts)
	// Without a dead-letter topic, max_delivery_attempts means nothing and is not checked.
	conf, err = parse("emails", nil, map[string]any{"project_id": "p", "topic": "jobs", "max_delivery_attempts": 1})
	require.NoError(t, err)
	require.Zero(t, conf.MaxDeliveryAttempts)
}

func TestConfigErrorsNamePipelineKeyAndValue(t *testing.T) {
	base := func(extra map[string]any) map[string]any {
		m := map[string]any{"project_id": "p", "topic": "jobs"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for name, c := range map[string]struct {
		section map[string]any
		want    string
	}{
		"no project":     {map[string]any{"topic": "jobs"}, `project_id is required`},
		"bad project":    {map[string]any{"topic": "jobs", "project_id": "a/b"}, `project_id must be a project ID without '/' or spaces, got "a/b"`},
		"no topic":       {map[string]any{"project_id": "p"}, `topic is required`},
		"bad topic":      {base(map[string]any{"topic": "1x"}), `topic must be a Pub/Sub ID (` + resourceNameDescription + `), got "1x"`},
		"goog topic":     {base(map[string]any{"topic": "google-jobs"}), `topic must be a Pub/Sub ID (` + resourceNameDescription + `), got "google-jobs"`},
		"bad sub":        {base(map[string]any{"subscription": "a b c"}), `subscription must be a Pub/Sub ID (` + resourceNameDescription + `), got "a b c"`},
		"bad dlt":        {base(map[string]any{"dead_letter_topic": "x"}), `dead_letter_topic must be a Pub/Sub ID (` + resourceNameDescription + `), got "x"`},
		"dlt is topic":   {base(map[string]any{"dead_letter_topic": "jobs"}), `dead_letter_topic must differ from topic, got "jobs" for both`},
		"few attempts":   {base(map[string]any{"dead_letter_topic": "dead", "max_delivery_attempts": 3}), `max_delivery_attempts must be >= 5 (a Pub/Sub limit), got 3`},
		"many attempts":  {base(map[string]any{"dead_letter_topic": "dead", "max_delivery_attempts": 101}), `max_delivery_attempts must be <= 100, got 101`},
		"text attempts":  {base(map[string]any{"dead_letter_topic": "dead", "max_delivery_attempts": "many"}), `max_delivery_attempts must be an integer, got "many"`},
		"priority":       {base(map[string]any{"priority": "high"}), `priority must be an integer, got "high"`},
		"prefetch":       {base(map[string]any{"prefetch": -1}), `prefetch must be >= 0, got -1`},
		"prefetch big":   {base(map[string]any{"prefetch": 100_001}), `prefetch must be <= 100000, got 100001`},
		"deadline short": {base(map[string]any{"ack_deadline": "5s"}), `ack_deadline must be at least 10s, got 5s`},
		"deadline long":  {base(map[string]any{"ack_deadline": "11m"}), `ack_deadline must be at most 10m0s (a Pub/Sub limit), got 11m0s`},
		"deadline text":  {base(map[string]any{"ack_deadline": "soon"}), `ack_deadline must be a duration like 5s or 1m, got "soon"`},
		"insecure":       {base(map[string]any{"insecure": "maybe"}), `insecure must be true or false, got "maybe"`},
	} {
		_, err := parse("orders", nil, c.section)
		require.EqualError(t, err, `google_pub_sub pipeline "orders": `+c.want, name)
	}
	_, err := parse("orders", map[string]any{"insecure": "yes please"}, base(nil))
	require.EqualError(t, err, `google_pub_sub pipeline "orders": google_pub_sub.insecure must be true or false, got "yes please"`)
}

func TestDefaultSubscription(t *testing.T) {
	for name, want := range map[string]string{
		"emails":      "emails",
		"p1":          "rr-p1",
		"1st":         "rr-1st",
		"":            "rr-",
		"a b/c":       "rr-a%20b%2Fc",
		"google-jobs": "rr-google-jobs",
		"été":         "rr-%C3%A9t%C3%A9",
	} {
		got := DefaultSubscription(name)
		require.Equal(t, want, got, name)
		require.True(t, validResourceName(got), got)
	}
	long := DefaultSubscription(string(make([]byte, 300)))
	require.Len(t, long, maxResourceNameLen)
	require.True(t, validResourceName(long))
}

func TestPluginBuildsStaticAndDeclaredPipelines(t *testing.T) {
	t.Parallel()
	b := fakeBackend(t)
	topic := uniq("topic")
	p := &Plugin{}
	require.Equal(t, "google_pub_sub", p.Name())
	require.Error(t, p.Init(nil, nil))
	cfg := drivertest.Configurer{
		"google_pub_sub": map[string]any{"endpoint": b.addr, "insecure": true},
		"jobs": map[string]any{"pipelines": map[string]any{"st": map[string]any{"config": map[string]any{
			"project_id": testProject, "topic": topic, "prefetch": 7, "priority": 4,
		}}}},
	}
	require.NoError(t, p.Init(drivertest.NopLogger(), cfg))

	drv, err := p.DriverFromConfig("jobs.pipelines.st.config", drivertest.NewQueue(0), drivertest.NewPipeline("st", pluginName, nil))
	require.NoError(t, err)
	d := drv.(*Driver)
	t.Cleanup(func() { stopAndWait(t, d) })
	require.Equal(t, 7, d.conf.Prefetch)
	require.Equal(t, int64(4), d.conf.Priority)
	require.Equal(t, subscriptionPath(testProject, "rr-st"), d.sub)

	// Declare: every value a string.
	q := drivertest.NewQueue(0)
	drv, err = p.DriverFromPipeline(drivertest.NewPipeline("declared", pluginName, map[string]any{
		"project_id": testProject, "topic": topic, "priority": "3", "prefetch": "1", "dead_letter_topic": "dead-" + topic, "max_delivery_attempts": "6",
	}), q)
	require.NoError(t, err)
	d2 := drv.(*Driver)
	t.Cleanup(func() { stopAndWait(t, d2) })
	require.Equal(t, 1, d2.conf.Prefetch)
	require.Equal(t, 6, d2.conf.MaxDeliveryAttempts)
	push(t, d2, msg("declared", "j1"))
	run(t, d2)
	it := next(t, q)
	require.Equal(t, int64(3), it.Priority())
	c := work(t, it)
	require.Equal(t, "declared", c.Pipeline)
	require.Equal(t, topic, c.Queue)
	require.NoError(t, it.Ack())

	_, err = p.DriverFromPipeline(drivertest.NewPipeline("broken", pluginName, map[string]any{"project_id": testProject}), q)
	require.ErrorContains(t, err, `google_pub_sub pipeline "broken": topic is required`)
	_, err = p.DriverFromConfig("jobs.pipelines.st.config", q, nil)
	require.Error(t, err)
	_, err = p.DriverFromPipeline(nil, q)
	require.Error(t, err)

	// Run/Stop on a stopped driver, State on a fresh one: never a panic, never nil.
	require.NoError(t, d.Stop(context.Background()))
	st, err := d.State(context.Background())
	require.NoError(t, err)
	require.NotNil(t, st)
}
