package kafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rrjobs/jobs/drivers/driverkit"
	"github.com/rrjobs/jobs/drivers/drivertest"
)

var testGlobal = map[string]any{"brokers": []any{"127.0.0.1:9092"}}

func TestConfigDefaults(t *testing.T) {
	conf, err := parseFor("p1", testGlobal, nil)
	require.NoError(t, err)
	require.Equal(t, Config{
		Brokers: []string{"127.0.0.1:9092"}, PingTimeout: DefaultPingTimeout, Priority: 10, Prefetch: DefaultPrefetch,
	}, conf)
	require.False(t, conf.consumes())
	require.Empty(t, conf.defaultTopic())

	// A comma-separated brokers string works too; a pipeline's own brokers are the fallback.
	conf, err = parseFor("p1", map[string]any{"brokers": "a:1, b:2"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"a:1", "b:2"}, conf.Brokers)
	conf, err = parseFor("p1", nil, map[string]any{"brokers": []any{"c:3"}})
	require.NoError(t, err)
	require.Equal(t, []string{"c:3"}, conf.Brokers)
}

func TestConfigValuesYAMLAndDeclare(t *testing.T) {
	want := Config{
		Brokers: []string{"127.0.0.1:9092"}, PingTimeout: 3 * time.Second, Priority: 3, Prefetch: 50,
		AutoCreateTopics: true,
		CreateTopics:     &CreateTopicsConfig{Partitions: 3, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "86400000", "cleanup.policy": "delete"}},
		Producer: ProducerConfig{
			DisableIdempotent: true, RequiredAcks: AcksLeader, MaxMessageBytes: 2048, RequestTimeout: 5 * time.Second,
			DeliveryTimeout: time.Minute, TransactionTimeout: 40 * time.Second, CompressionCodec: "zstd", PartitioningStrategy: PartitionRoundRobin,
		},
		Consumer: ConsumerConfig{
			Topics: []string{"t1", "t2"}, MaxFetchMessageSize: 50000, MinFetchMessageSize: 1,
			ConsumerOffset: &OffsetSpec{Type: OffsetAt, Value: 5},
		},
		Group: &GroupConfig{GroupID: "g1", InstanceID: "i1", BlockRebalanceOnPoll: true},
	}
	global := map[string]any{"brokers": []any{"127.0.0.1:9092"}, "ping": map[string]any{"timeout": "3s"}}

	// .rr.yaml: typed values and nested maps (a loader that splits retention.ms at the dot is fine).
	yaml := map[string]any{
		"priority": 3, "prefetch": 50, "auto_create_topics_enable": true,
		"create_topics": map[string]any{"partitions": 3, "replication_factor": 1,
			"config": map[string]any{"retention": map[string]any{"ms": 86400000}, "cleanup.policy": "delete"}},
		"producer_options": map[string]any{"disable_idempotent": true, "required_acks": "LeaderAck", "max_message_bytes": 2048,
			"request_timeout": "5s", "delivery_timeout": "1m", "transaction_timeout": "40s", "compression_codec": "zstd",
			"partitioning_strategy": "RoundRobin"},
		"consumer_options": map[string]any{"topics": []any{"t1", "t2"}, "max_fetch_message_size": 50000, "min_fetch_message_size": 1,
			"consumer_offset": map[string]any{"type": "At", "value": 5}},
		"group_options": map[string]any{"group_id": "g1", "instance_id": "i1", "block_rebalance_on_poll": true},
	}
	conf, err := parseFor("p1", global, yaml)
	require.NoError(t, err)
	require.Equal(t, want, conf)

	// jobs.Declare: every value a string, objects as JSON.
	pipe := drivertest.NewPipeline("p1", pluginName, map[string]any{
		"priority": "3", "prefetch": "50", "auto_create_topics_enable": "true",
		"create_topics":    `{"partitions":3,"replication_factor":"1","config":{"retention.ms":"86400000","cleanup.policy":"delete"}}`,
		"producer_options": `{"disable_idempotent":true,"required_acks":"leaderack","max_message_bytes":2048,"request_timeout":"5s","delivery_timeout":"1m","transaction_timeout":"40s","compression_codec":"ZSTD","partitioning_strategy":"RoundRobin"}`,
		"consumer_options": `{"topics":["t1","t2"],"max_fetch_message_size":50000,"min_fetch_message_size":1,"consumer_offset":{"type":"At","value":5}}`,
		"group_options":    `{"group_id":"g1","instance_id":"i1","block_rebalance_on_poll":true}`,
	})
	o := driverkit.NewOptions(pluginName, pipe, nil)
	conf, err = parseConfig(o, o.Global(globalSection, global))
	require.NoError(t, err)
	require.Equal(t, want, conf)
	require.Equal(t, "t1", conf.defaultTopic())
	require.Equal(t, "t1,t2", conf.queueName())
}

func TestConfigConsumePartitionsSASLAndTLS(t *testing.T) {
	global := map[string]any{
		"brokers": []any{"h:1"},
		"sasl":    map[string]any{"mechanism": "scram-sha-512", "username": "u", "password": "p", "nonce": "n", "is_token": true},
		"tls":     map[string]any{"root_ca": "/ca.pem", "client_auth_type": "no_client_cert", "timeout": "2s"},
	}
	conf, err := parseFor("p1", global, map[string]any{
		"consumer_options": map[string]any{"consume_partitions": map[string]any{
			"orders": map[any]any{0: map[string]any{"type": "AtStart"}, "2": map[string]any{"type": "Relative", "value": -3}},
		}},
	})
	require.NoError(t, err)
	require.Equal(t, map[string]map[int32]OffsetSpec{"orders": {0: {Type: OffsetAtStart}, 2: {Type: OffsetRelative, Value: -3}}}, conf.Consumer.ConsumePartitions)
	require.Equal(t, "orders", conf.defaultTopic())
	require.Equal(t, &SASLConfig{Mechanism: SASLScramSHA512, Username: "u", Password: "p", Nonce: []byte("n"), IsToken: true}, conf.SASL)
	require.Equal(t, &TLSConfig{RootCA: "/ca.pem", ClientAuthType: "no_client_cert", Timeout: 2 * time.Second}, conf.TLS)

	// TLS is off without a key pair or root CA (as stock), unless enabled: true (system roots).
	conf, err = parseFor("p1", map[string]any{"brokers": "h:1", "tls": map[string]any{"timeout": "2s"}}, nil)
	require.NoError(t, err)
	require.Nil(t, conf.TLS)
	conf, err = parseFor("p1", map[string]any{"brokers": "h:1", "tls": map[string]any{"enabled": true}}, nil)
	require.NoError(t, err)
	require.Equal(t, &TLSConfig{Timeout: DefaultTLSTimeout}, conf.TLS)

	// A pipeline's sasl_options (Declare) win over kafka.sasl; aws_msk_iam needs no username.
	pipe := drivertest.NewPipeline("p1", pluginName, map[string]any{"sasl_options": `{"mechanism":"aws_msk_iam","access_key":"AK","secret_key":"SK","user_agent":"rr"}`})
	o := driverkit.NewOptions(pluginName, pipe, nil)
	conf, err = parseConfig(o, o.Global(globalSection, global))
	require.NoError(t, err)
	require.Equal(t, &SASLConfig{Mechanism: SASLAWSMSKIAM, AccessKey: "AK", SecretKey: "SK", UserAgent: "rr"}, conf.SASL)
}

func TestConfigErrorsNamePipelineKeyAndValue(t *testing.T) {
	for name, c := range map[string]struct {
		global, section map[string]any
		want            string
	}{
		"no brokers":       {nil, nil, `kafka pipeline "p1": no brokers: set kafka.brokers`},
		"bad broker":       {map[string]any{"brokers": "localhost"}, nil, `kafka.brokers: "localhost" is not a host:port address`},
		"brokers type":     {map[string]any{"brokers": 5}, nil, `kafka.brokers must be a list`},
		"priority":         {testGlobal, map[string]any{"priority": "high"}, `kafka pipeline "p1": priority must be an integer, got "high"`},
		"prefetch":         {testGlobal, map[string]any{"prefetch": -1}, `prefetch must be >= 0, got -1`},
		"auto create":      {testGlobal, map[string]any{"auto_create_topics_enable": "maybe"}, `auto_create_topics_enable must be true or false, got "maybe"`},
		"ping":             {map[string]any{"brokers": "h:1", "ping": map[string]any{"timeout": "soon"}}, nil, `kafka.ping.timeout must be a duration`},
		"sasl mechanism":   {map[string]any{"brokers": "h:1", "sasl": map[string]any{"mechanism": "GSSAPI", "username": "u"}}, nil, `kafka.sasl.mechanism must be plain, SCRAM-SHA-256, SCRAM-SHA-512 or aws_msk_iam, got "GSSAPI"`},
		"sasl no mech":     {map[string]any{"brokers": "h:1", "sasl": map[string]any{"username": "u"}}, nil, `kafka.sasl.mechanism is required`},
		"sasl username":    {map[string]any{"brokers": "h:1", "sasl": map[string]any{"mechanism": "plain"}}, nil, `kafka.sasl.username is required for SASL plain`},
		"msk keys":         {map[string]any{"brokers": "h:1", "sasl": map[string]any{"mechanism": "aws_msk_iam", "access_key": "a"}}, nil, `kafka.sasl.access_key and kafka.sasl.secret_key must be set together`},
		"sasl options":     {testGlobal, map[string]any{"sasl_options": "{nope"}, `sasl_options must be an object: not a JSON object`},
		"tls pair":         {map[string]any{"brokers": "h:1", "tls": map[string]any{"key": "/k"}}, nil, `kafka.tls.key and kafka.tls.cert must be set together`},
		"tls auth":         {map[string]any{"brokers": "h:1", "tls": map[string]any{"root_ca": "/c", "client_auth_type": "always"}}, nil, `kafka.tls.client_auth_type must be one of`},
		"acks":             {testGlobal, map[string]any{"producer_options": map[string]any{"required_acks": "All"}}, `producer_options.required_acks must be one of NoAck, LeaderAck, AllISRAck, got "All"`},
		"acks idempotent":  {testGlobal, map[string]any{"producer_options": map[string]any{"required_acks": "NoAck"}}, `producer_options.required_acks NoAck needs producer_options.disable_idempotent: true`},
		"codec":            {testGlobal, map[string]any{"producer_options": map[string]any{"compression_codec": "brotli"}}, `producer_options.compression_codec must be one of gzip, snappy, lz4, zstd, got "brotli"`},
		"partitioning":     {testGlobal, map[string]any{"producer_options": map[string]any{"partitioning_strategy": "Random"}}, `producer_options.partitioning_strategy must be one of`},
		"timeout":          {testGlobal, map[string]any{"producer_options": map[string]any{"request_timeout": "-1s"}}, `producer_options.request_timeout must be a positive duration`},
		"max bytes":        {testGlobal, map[string]any{"producer_options": map[string]any{"max_message_bytes": 1.5}}, `producer_options.max_message_bytes must be an integer, got "1.5"`},
		"producer object":  {testGlobal, map[string]any{"producer_options": "[1]"}, `producer_options must be an object`},
		"topics":           {testGlobal, map[string]any{"consumer_options": map[string]any{"topics": map[string]any{"a": 1}}}, `consumer_options.topics must be a list of topic names`},
		"offset type":      {testGlobal, map[string]any{"consumer_options": map[string]any{"topics": []any{"t"}, "consumer_offset": map[string]any{"type": "Latest"}}}, `consumer_options.consumer_offset.type must be one of AtStart, AtEnd, At, AfterMilli, Relative, WithEpoch, got "Latest"`},
		"offset value":     {testGlobal, map[string]any{"consumer_options": map[string]any{"topics": []any{"t"}, "consumer_offset": map[string]any{"type": "At", "value": "x"}}}, `consumer_options.consumer_offset.value must be an integer, got "x"`},
		"epoch":            {testGlobal, map[string]any{"consumer_options": map[string]any{"topics": []any{"t"}, "consumer_offset": map[string]any{"type": "WithEpoch", "value": int64(1) << 40}}}, `must be an epoch`},
		"partition key":    {testGlobal, map[string]any{"consumer_options": map[string]any{"consume_partitions": map[string]any{"t": map[string]any{"x": map[string]any{"type": "AtStart"}}}}}, `consumer_options.consume_partitions.t: partition "x" is not a partition number`},
		"partition offset": {testGlobal, map[string]any{"consumer_options": map[string]any{"consume_partitions": map[string]any{"t": map[string]any{"0": map[string]any{"type": "Soon"}}}}}, `consumer_options.consume_partitions.t.0.type must be one of`},
		"exclusive":        {testGlobal, map[string]any{"consumer_options": map[string]any{"topics": []any{"t"}, "consume_partitions": map[string]any{"t": map[string]any{"0": map[string]any{"type": "AtStart"}}}}}, `consumer_options.topics and consumer_options.consume_partitions are mutually exclusive`},
		"regexp no topics": {testGlobal, map[string]any{"consumer_options": map[string]any{"consume_regexp": true}}, `consumer_options.consume_regexp needs consumer_options.topics`},
		"group id":         {testGlobal, map[string]any{"group_options": map[string]any{"instance_id": "i"}}, `group_options.group_id is required when group_options is set`},
		"group partitions": {testGlobal, map[string]any{"group_options": map[string]any{"group_id": "g"}, "consumer_options": map[string]any{"consume_partitions": map[string]any{"t": map[string]any{"0": map[string]any{"type": "AtStart"}}}}}, `consumer_options.consume_partitions cannot be used with group_options`},
		"create parts":     {testGlobal, map[string]any{"create_topics": map[string]any{"partitions": 0}}, `create_topics.partitions must be at least 1 (or -1 for the broker default), got 0`},
		"create rf":        {testGlobal, map[string]any{"create_topics": map[string]any{"replication_factor": "two"}}, `create_topics.replication_factor must be an integer, got "two"`},
		"create config":    {testGlobal, map[string]any{"create_topics": map[string]any{"config": "retention"}}, `create_topics.config must be a map of topic configs`},
		"create regexp":    {testGlobal, map[string]any{"create_topics": map[string]any{"partitions": 1}, "consumer_options": map[string]any{"topics": []any{"t.*"}, "consume_regexp": true}}, `create_topics needs topic names, but consumer_options.consume_regexp is true`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseFor("p1", c.global, c.section)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
			require.Contains(t, err.Error(), `kafka pipeline "p1"`)
		})
	}
}

func TestConfigEmptyObjectsAreUnset(t *testing.T) {
	// PHP sends empty arrays as [] or {}.
	pipe := drivertest.NewPipeline("p1", pluginName, map[string]any{
		"producer_options": "[]", "consumer_options": "{}", "group_options": "", "sasl_options": "[]",
	})
	o := driverkit.NewOptions(pluginName, pipe, nil)
	conf, err := parseConfig(o, o.Global(globalSection, testGlobal))
	require.NoError(t, err)
	require.Nil(t, conf.Group)
	require.Nil(t, conf.SASL)
	require.False(t, conf.consumes())
}

func TestPluginBuildsAndReportsErrors(t *testing.T) {
	p := &Plugin{}
	require.Equal(t, "kafka", p.Name())
	require.Error(t, p.Init(nil, nil))
	cfg := drivertest.Configurer{
		"kafka": map[string]any{"brokers": []any{"127.0.0.1:1"}, "ping": map[string]any{"timeout": "200ms"}},
		"jobs":  map[string]any{"pipelines": map[string]any{"p1": map[string]any{"config": map[string]any{"priority": "x"}}}},
	}
	require.NoError(t, p.Init(drivertest.Logger{Log: nil}, cfg))
	_, err := p.DriverFromConfig("jobs.pipelines.p1.config", drivertest.NewQueue(0), drivertest.NewPipeline("p1", pluginName, nil))
	require.ErrorContains(t, err, `kafka pipeline "p1": priority must be an integer, got "x"`)
	_, err = p.DriverFromConfig("jobs.pipelines.p1.config", drivertest.NewQueue(0), nil)
	require.ErrorContains(t, err, "nil pipeline")
	_, err = p.DriverFromPipeline(nil, drivertest.NewQueue(0))
	require.ErrorContains(t, err, "nil pipeline")

	// Nobody listens on 127.0.0.1:1: the ping fails fast with the brokers in the message.
	start := time.Now()
	_, err = p.DriverFromPipeline(drivertest.NewPipeline("p2", pluginName, nil), drivertest.NewQueue(0))
	require.ErrorContains(t, err, `kafka pipeline "p2": brokers 127.0.0.1:1 did not answer within 200ms`)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestConfigMSKIAMCredentials(t *testing.T) {
	g := map[string]any{"brokers": "h:1", "sasl": map[string]any{"mechanism": "AWS_MSK_IAM"}}
	t.Setenv(envAWSAccessKey, "")
	t.Setenv(envAWSSecretKey, "")
	_, err := parseFor("p1", g, nil)
	require.ErrorContains(t, err, `kafka pipeline "p1": aws_msk_iam needs kafka.sasl.access_key and kafka.sasl.secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`)
	require.ErrorContains(t, err, "is not supported")

	t.Setenv(envAWSAccessKey, "AK")
	t.Setenv(envAWSSecretKey, "SK")
	conf, err := parseFor("p1", g, nil)
	require.NoError(t, err)
	require.Equal(t, &SASLConfig{Mechanism: SASLAWSMSKIAM}, conf.SASL)
	require.NotNil(t, saslMechanism(conf.SASL))
}
