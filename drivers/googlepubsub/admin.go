package googlepubsub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/googleapis/gax-go/v2"
	"go.uber.org/zap"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// noRetry turns off the client library's own retries: the driver retries transient errors itself
// (retryRPC), so that a failure reports the server's error rather than "context deadline exceeded".
var noRetry = gax.WithRetry(func() gax.Retryer { return nil })

// clientOptions are the connection settings of conf, as the stock driver builds them.
func clientOptions(conf Config) []option.ClientOption {
	var opts []option.ClientOption
	if conf.Insecure {
		opts = append(opts,
			option.WithoutAuthentication(),
			option.WithTelemetryDisabled(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		)
	}
	if !conf.EndpointFromEnv {
		// With PUBSUB_EMULATOR_HOST (and no endpoint key) the client library connects there itself.
		opts = append(opts, option.WithEndpoint(conf.Endpoint))
	}
	return opts
}

// newClient connects (lazily: gRPC dials on the first call) to conf's endpoint.
func newClient(ctx context.Context, conf Config) (*pubsub.Client, error) {
	c, err := pubsub.NewClient(ctx, conf.ProjectID, clientOptions(conf)...)
	if err != nil {
		if !conf.Insecure && !conf.EndpointFromEnv {
			return nil, fmt.Errorf("create the client for %s: %w (for the emulator set %s.%s: true, or %s)",
				conf.Endpoint, err, globalSection, keyInsecure, emulatorEnv)
		}
		return nil, fmt.Errorf("create the client for %s: %w", conf.Endpoint, err)
	}
	return c, nil
}

// transient reports whether a failed call may succeed when tried again.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.Internal, codes.Unknown, codes.ResourceExhausted:
		return true
	}
	return false
}

// retryRPC calls fn until it succeeds, fails for good or ctx ends, and returns fn's last error
// (not ctx's), so the caller can say what went wrong.
func retryRPC(ctx context.Context, fn func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		err := fn(ctx)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		if !sleepCtx(ctx, wait) {
			return err
		}
		wait = min(wait*2, maxRetryWait)
	}
}

// sleepCtx sleeps for d unless ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func topicPath(project, id string) string { return "projects/" + project + "/topics/" + id }

func subscriptionPath(project, id string) string {
	return "projects/" + project + "/subscriptions/" + id
}

// setup creates what is missing: the topic, the dead-letter topic with a subscription of the same
// name (a topic without subscriptions drops what is published to it), and the pipeline's
// subscription with the dead-letter policy. An existing subscription must be attached to the
// topic; its dead-letter policy is brought in line with the config when one is configured. It
// records the subscription's message retention and ack deadline.
func (d *Driver) setup(ctx context.Context) error {
	if err := d.ensureTopic(ctx, d.topic); err != nil {
		return err
	}
	var policy *pb.DeadLetterPolicy
	if d.dlt != "" {
		if err := d.ensureTopic(ctx, d.dlt); err != nil {
			return err
		}
		dltSub := subscriptionPath(d.conf.ProjectID, d.conf.DeadLetterTopic)
		if _, err := d.ensureSubscription(ctx, &pb.Subscription{Name: dltSub, Topic: d.dlt, AckDeadlineSeconds: int32(d.conf.AckDeadline / time.Second)}); err != nil {
			return err
		}
		policy = &pb.DeadLetterPolicy{DeadLetterTopic: d.dlt, MaxDeliveryAttempts: int32(d.conf.MaxDeliveryAttempts)} //nolint:gosec // validated 5..100
	}
	sub, err := d.ensureSubscription(ctx, &pb.Subscription{
		Name:               d.sub,
		Topic:              d.topic,
		AckDeadlineSeconds: int32(d.conf.AckDeadline / time.Second),
		DeadLetterPolicy:   policy,
	})
	if err != nil {
		return err
	}
	if sub.GetTopic() != d.topic {
		return fmt.Errorf("subscription %s exists but is attached to topic %q, not %s: set %s to another name",
			d.sub, sub.GetTopic(), d.topic, keySubscription)
	}
	if policy != nil && !samePolicy(sub.GetDeadLetterPolicy(), policy) {
		err := retryRPC(ctx, func(ctx context.Context) error {
			var err error
			sub, err = d.client.SubscriptionAdminClient.UpdateSubscription(ctx, &pb.UpdateSubscriptionRequest{
				Subscription: &pb.Subscription{Name: d.sub, Topic: d.topic, DeadLetterPolicy: policy},
				UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"dead_letter_policy"}},
			}, noRetry)
			return err
		})
		if err != nil {
			return fmt.Errorf("set the dead-letter policy (topic %s, %d attempts) of the existing subscription %s: %w",
				d.dlt, d.conf.MaxDeliveryAttempts, d.sub, err)
		}
		d.log.Info("dead-letter policy of the existing subscription was updated", zap.String("pipeline", d.pipeline),
			zap.String("subscription", d.sub), zap.String("dead_letter_topic", d.dlt), zap.Int("max_delivery_attempts", d.conf.MaxDeliveryAttempts))
	}
	if r := sub.GetMessageRetentionDuration(); r != nil && r.IsValid() {
		d.retention = r.AsDuration()
	}
	d.subAckDeadline = time.Duration(sub.GetAckDeadlineSeconds()) * time.Second
	return nil
}

func samePolicy(a, b *pb.DeadLetterPolicy) bool {
	return a.GetDeadLetterTopic() == b.GetDeadLetterTopic() && a.GetMaxDeliveryAttempts() == b.GetMaxDeliveryAttempts()
}

func (d *Driver) ensureTopic(ctx context.Context, name string) error {
	err := retryRPC(ctx, func(ctx context.Context) error {
		_, err := d.client.TopicAdminClient.CreateTopic(ctx, &pb.Topic{Name: name}, noRetry)
		return err
	})
	switch {
	case err == nil:
		d.log.Debug("topic was created", zap.String("pipeline", d.pipeline), zap.String("topic", name))
		return nil
	case status.Code(err) == codes.AlreadyExists:
		return nil
	case status.Code(err) == codes.PermissionDenied:
		// Publishers often may not create topics: the topic may exist all the same.
		gerr := retryRPC(ctx, func(ctx context.Context) error {
			_, err := d.client.TopicAdminClient.GetTopic(ctx, &pb.GetTopicRequest{Topic: name}, noRetry)
			return err
		})
		if gerr == nil {
			return nil
		}
		return fmt.Errorf("create topic %s: %w", name, err)
	default:
		return fmt.Errorf("create topic %s: %w", name, err)
	}
}

// ensureSubscription creates s, or returns the existing subscription of that name.
func (d *Driver) ensureSubscription(ctx context.Context, s *pb.Subscription) (*pb.Subscription, error) {
	var sub *pb.Subscription
	err := retryRPC(ctx, func(ctx context.Context) error {
		var err error
		sub, err = d.client.SubscriptionAdminClient.CreateSubscription(ctx, s, noRetry)
		return err
	})
	if err == nil {
		d.log.Debug("subscription was created", zap.String("pipeline", d.pipeline), zap.String("subscription", s.GetName()), zap.String("topic", s.GetTopic()))
		return sub, nil
	}
	if status.Code(err) != codes.AlreadyExists && status.Code(err) != codes.PermissionDenied {
		return nil, fmt.Errorf("create subscription %s on topic %s: %w", s.GetName(), s.GetTopic(), err)
	}
	gerr := retryRPC(ctx, func(ctx context.Context) error {
		var err error
		sub, err = d.client.SubscriptionAdminClient.GetSubscription(ctx, &pb.GetSubscriptionRequest{Subscription: s.GetName()}, noRetry)
		return err
	})
	if gerr != nil {
		return nil, fmt.Errorf("create subscription %s on topic %s: %w", s.GetName(), s.GetTopic(), errors.Join(err, gerr))
	}
	return sub, nil
}

// publish sends one message to topic and returns its message id once Pub/Sub stored it.
func (d *Driver) publish(ctx context.Context, topic string, m *pb.PubsubMessage) (string, error) {
	var resp *pb.PublishResponse
	err := retryRPC(ctx, func(ctx context.Context) error {
		var err error
		resp, err = d.client.TopicAdminClient.Publish(ctx, &pb.PublishRequest{Topic: topic, Messages: []*pb.PubsubMessage{m}}, noRetry)
		return err
	})
	if err != nil {
		return "", d.describe(err)
	}
	if ids := resp.GetMessageIds(); len(ids) == 1 {
		return ids[0], nil
	}
	return "", fmt.Errorf("publish to %s: Pub/Sub returned %d message ids for one message", topic, len(resp.GetMessageIds()))
}

// acknowledge acks messages, in batches.
func (d *Driver) acknowledge(ctx context.Context, ackIDs []string) error {
	return d.batch(ackIDs, func(ids []string) error {
		return retryRPC(ctx, func(ctx context.Context) error {
			return d.client.SubscriptionAdminClient.Acknowledge(ctx, &pb.AcknowledgeRequest{Subscription: d.sub, AckIds: ids}, noRetry)
		})
	})
}

// modack sets the ack deadline of messages to seconds from now: 0 is a nack (delivered again at
// once), more hands the message back to be delivered again after that time (at most 600 s).
func (d *Driver) modack(ctx context.Context, ackIDs []string, seconds int) error {
	seconds = min(max(seconds, 0), maxNackDelaySeconds)
	return d.batch(ackIDs, func(ids []string) error {
		return retryRPC(ctx, func(ctx context.Context) error {
			return d.client.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pb.ModifyAckDeadlineRequest{
				Subscription: d.sub, AckIds: ids, AckDeadlineSeconds: int32(seconds), //nolint:gosec // bounded
			}, noRetry)
		})
	})
}

func (d *Driver) batch(ackIDs []string, fn func([]string) error) error {
	var errs []error
	for len(ackIDs) > 0 {
		n := min(len(ackIDs), ackBatch)
		if err := fn(ackIDs[:n]); err != nil {
			errs = append(errs, err)
		}
		ackIDs = ackIDs[n:]
	}
	if len(errs) > 0 {
		return d.describe(errors.Join(errs...))
	}
	return nil
}

// describe explains the errors of a closed client.
func (d *Driver) describe(err error) error {
	if err != nil && d.isClosed() && (status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled)) {
		return fmt.Errorf("the pipeline is stopped (client closed): %w", err)
	}
	return err
}
