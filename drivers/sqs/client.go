package sqs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

const (
	// nonExistentQueue is the query-compatible code SQS reports for a missing queue.
	nonExistentQueue = "AWS.SimpleQueueService.NonExistentQueue"
	// defaultEndpointRegion signs requests to a custom endpoint when no region is configured.
	defaultEndpointRegion = "us-east-1"
	dialTimeout           = 5 * time.Second
	// retryAttempts and retryMaxBackoff bound the SDK's retries of one call (stock retried 60 times,
	// so a push to an unreachable endpoint took minutes to fail).
	retryAttempts   = 3
	retryMaxBackoff = 2 * time.Second
)

// newClient builds the SQS client: static credentials when key and secret are set, otherwise the
// default AWS chain (environment, shared config, web identity, ECS, EC2 instance role).
func newClient(ctx context.Context, conf Config) (*sqs.Client, error) {
	httpClient := awshttp.NewBuildableClient().WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = dialTimeout
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = retryAttempts
				o.MaxBackoff = retryMaxBackoff
				// No client-side retry quota: after an outage the first calls must not fail with
				// "retry quota exceeded".
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if conf.Region != "" {
		opts = append(opts, config.WithRegion(conf.Region))
	}
	if conf.Key != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(conf.Key, conf.Secret, conf.SessionToken)))
	}
	if conf.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(conf.Endpoint))
	}
	awsConf, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load the AWS configuration: %w", err)
	}
	if awsConf.Region == "" {
		if conf.Endpoint == "" {
			return nil, fmt.Errorf("no AWS region: set %s.%s in .rr.yaml or AWS_REGION", globalSection, keyRegion)
		}
		awsConf.Region = defaultEndpointRegion
	}
	return sqs.NewFromConfig(awsConf), nil
}

// isNonExistentQueue reports whether err says the queue does not exist.
func isNonExistentQueue(err error) bool {
	var missing *types.QueueDoesNotExist
	if errors.As(err, &missing) {
		return true
	}
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == nonExistentQueue
}

// apiCode is the SQS error code of err, or "".
func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}
