package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/roadrunner-server/api/v4/plugins/v4/jobs"
	rrerrors "github.com/roadrunner-server/errors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rrjobs/jobs/drivers/driverkit"
)

const (
	// setupTimeout bounds the client setup and queue declaration at construction.
	setupTimeout = 30 * time.Second
	// opTimeout bounds the calls of Ack, Nack, Requeue, State and visibility changes.
	opTimeout = 15 * time.Second
	// receiveSlack is added to the longest long poll (20 s) to bound one ReceiveMessage call.
	receiveSlack = 15 * time.Second
	// maxFailWait caps the pause between receives while SQS fails.
	maxFailWait = 5 * time.Second
	// maxIdleWait caps the pause after an empty short poll (wait_time_seconds 0 and a queue
	// without ReceiveMessageWaitTimeSeconds); a push from this process ends it at once.
	maxIdleWait = time.Second
	// defaultQueueVisibility is assumed when the queue's VisibilityTimeout cannot be read.
	defaultQueueVisibility = 30
	// handBackGrace bounds the hand-back of queued jobs when Stop's own deadline has passed.
	handBackGrace = 2 * time.Second
	// batchSize is SQS's batch limit.
	batchSize = 10
)

// Driver is the sqs jobs.Driver of one pipeline.
//
// While the pipeline consumes, a receiver long-polls the queue for up to prefetch messages at a
// time while fewer than max_messages_in_flight of this pipeline's jobs are held by this process
// (in the shared priority queue or at a worker), and inserts them into the shared queue. Held jobs
// keep their messages invisible: every visibility_timeout/3 the visibility of the jobs that need it
// is extended (ChangeMessageVisibilityBatch), so a job that waits or runs longer than the timeout
// is not delivered again. The shared queue's Insert is never called with mu held.
type Driver struct {
	log      *zap.Logger
	pq       jobs.Queue
	pipeline string
	conf     Config
	client   *sqs.Client
	queueURL string
	// visibility is the visibility timeout (seconds) of received messages: visibility_timeout, or
	// the queue's own. 0 disables the extension.
	visibility int
	wake       chan struct{}

	life       context.Context
	lifeCancel context.CancelFunc
	bgWG       sync.WaitGroup

	mu      sync.Mutex
	consume driverkit.ConsumeState // guarded by mu
	held    map[*Item]struct{}     // received and not settled: in the shared queue or at a worker
	slot    chan struct{}          // a held job was settled
	recvErr error
}

var _ jobs.Driver = (*Driver)(nil)

// NewDriver connects to SQS, creates the queue (or looks it up with skip_queue_declaration), reads
// its visibility timeout and returns a driver that does not consume until Run.
func NewDriver(log *zap.Logger, pipeline string, conf Config, pq jobs.Queue) (*Driver, error) {
	const op = rrerrors.Op("sqs_new_driver")
	if pq == nil {
		return nil, rrerrors.E(op, fmt.Errorf("sqs pipeline %q: nil queue", pipeline))
	}
	if pipeline == "" {
		return nil, rrerrors.E(op, errors.New("sqs pipeline: empty pipeline name"))
	}
	if log == nil {
		log = zap.NewNop()
	}
	if conf.Queue == "" {
		conf.Queue = DefaultQueue
	}
	if conf.Priority <= 0 {
		conf.Priority = DefaultPriority
	}
	conf.Prefetch = min(max(conf.Prefetch, 1), MaxPrefetch)
	if conf.MaxInFlight <= 0 {
		conf.MaxInFlight = conf.Prefetch
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	client, err := newClient(ctx, conf)
	if err != nil {
		return nil, rrerrors.E(op, fmt.Errorf("sqs pipeline %q: %w", pipeline, err))
	}
	d := &Driver{
		consume:  driverkit.ConsumeState{Driver: pluginName, Pipeline: pipeline},
		log:      log,
		pq:       pq,
		pipeline: pipeline,
		conf:     conf,
		client:   client,
		wake:     make(chan struct{}, 1),
		held:     map[*Item]struct{}{},
		slot:     make(chan struct{}, 1),
	}
	if d.queueURL, err = d.declare(ctx); err != nil {
		return nil, rrerrors.E(op, fmt.Errorf("sqs pipeline %q: %w", pipeline, err))
	}
	d.visibility = conf.VisibilityTimeout
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(d.queueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout, types.QueueAttributeNameFifoQueue},
	})
	switch {
	case err != nil:
		log.Warn("queue attributes could not be read, assuming the SQS defaults", zap.String("pipeline", pipeline),
			zap.String("queue", conf.Queue), zap.Error(err))
		if d.visibility == 0 {
			d.visibility = defaultQueueVisibility
		}
	default:
		if d.visibility == 0 {
			n, perr := strconv.Atoi(attrs.Attributes[string(types.QueueAttributeNameVisibilityTimeout)])
			if perr != nil {
				n = defaultQueueVisibility
			}
			d.visibility = n
		}
		if attrs.Attributes[string(types.QueueAttributeNameFifoQueue)] == "true" {
			d.conf.FIFO = true
		}
	}
	if d.visibility == 0 {
		log.Warn("the queue's visibility timeout is 0: received jobs are visible to other consumers at once and may run more than once",
			zap.String("pipeline", pipeline), zap.String("queue", conf.Queue))
	}
	d.life, d.lifeCancel = context.WithCancel(context.Background())
	return d, nil
}

// declare creates the queue with the configured attributes and tags, or only looks it up with
// skip_queue_declaration, and returns its URL. A queue that exists with other attributes is used
// as it is.
func (d *Driver) declare(ctx context.Context) (string, error) {
	name := aws.String(d.conf.Queue)
	if !d.conf.SkipDeclare {
		out, err := d.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: name, Attributes: d.conf.Attributes, Tags: d.conf.Tags})
		if err == nil {
			return aws.ToString(out.QueueUrl), nil
		}
		var exists *types.QueueNameExists
		if !errors.As(err, &exists) {
			return "", fmt.Errorf("create queue %q: %w", d.conf.Queue, err)
		}
		d.log.Warn("the queue exists with other attributes than configured; it is used as it is",
			zap.String("pipeline", d.pipeline), zap.String("queue", d.conf.Queue), zap.Error(err))
	}
	out, err := d.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: name})
	if err != nil {
		if d.conf.SkipDeclare {
			return "", fmt.Errorf("look up queue %q (skip_queue_declaration is set, so it must exist): %w", d.conf.Queue, err)
		}
		return "", fmt.Errorf("look up queue %q: %w", d.conf.Queue, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// Push sends the job as a message. Delays up to 15 minutes are native; longer ones are an error.
func (d *Driver) Push(ctx context.Context, msg jobs.Message) error {
	const op = rrerrors.Op("sqs_push")
	if msg == nil {
		return rrerrors.E(op, fmt.Errorf("sqs pipeline %q: nil message", d.pipeline))
	}
	if d.isStopped() {
		return rrerrors.E(op, fmt.Errorf("sqs pipeline %q is stopped, job %q was not pushed", d.pipeline, msg.ID()))
	}
	delay := msg.Delay()
	if delay > MaxDelay {
		return rrerrors.E(op, fmt.Errorf("sqs pipeline %q: job %q: delay of %d seconds is longer than the SQS maximum of %d seconds (15 minutes), the job was not pushed",
			d.pipeline, msg.ID(), delay, MaxDelay))
	}
	delay = max(delay, 0)
	if d.conf.FIFO && delay > 0 {
		d.log.Warn("FIFO queues have no per-message delay: the job is pushed without it (set the queue's DelaySeconds attribute instead)",
			zap.String("pipeline", d.pipeline), zap.String("id", msg.ID()), zap.Int64("delay_seconds", delay))
		delay = 0
	}
	prio := msg.Priority()
	if prio <= 0 {
		prio = d.conf.Priority
	}
	id := msg.ID()
	if id == "" {
		id = newUUID()
	}
	o := outgoing{id: id, job: msg.Name(), payload: msg.Payload(), headers: msg.Headers(), priority: prio, delay: delay, autoAck: msg.AutoAck()}
	if err := d.send(ctx, o, d.conf.MessageGroupID, dedupID(id)); err != nil {
		return rrerrors.E(op, fmt.Errorf("sqs pipeline %q: push job %q to queue %q: %w", d.pipeline, id, d.conf.Queue, err))
	}
	if delay == 0 {
		d.signal()
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was pushed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", id), zap.Int64("delay_seconds", delay))
	}
	return nil
}

// send sends one message. On a FIFO queue group and dedup are its MessageGroupId and
// MessageDeduplicationId. A queue deleted behind our back is created again (unless
// skip_queue_declaration) and the send retried once.
func (d *Driver) send(ctx context.Context, o outgoing, group, dedup string) error {
	if d.conf.FIFO && group == "" {
		return fmt.Errorf("%s is required to send to the FIFO queue %q", keyMessageGroupID, d.conf.Queue)
	}
	body, attrs, err := encode(o)
	if err != nil {
		return fmt.Errorf("encode headers: %w", err)
	}
	in := &sqs.SendMessageInput{
		QueueUrl:          aws.String(d.queueURL),
		MessageBody:       aws.String(body),
		MessageAttributes: attrs,
		DelaySeconds:      int32(o.delay), //nolint:gosec // 0..900
	}
	if group != "" {
		in.MessageGroupId = aws.String(group)
	}
	if d.conf.FIFO {
		in.MessageDeduplicationId = aws.String(dedup)
	}
	_, err = d.client.SendMessage(ctx, in)
	if err != nil && isNonExistentQueue(err) && !d.conf.SkipDeclare && d.redeclare(ctx) {
		_, err = d.client.SendMessage(ctx, in)
	}
	return err
}

// redeclare creates the queue again after SQS said it does not exist.
func (d *Driver) redeclare(ctx context.Context) bool {
	_, err := d.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(d.conf.Queue), Attributes: d.conf.Attributes, Tags: d.conf.Tags})
	if err != nil {
		d.log.Error("the queue does not exist and could not be created again", zap.String("pipeline", d.pipeline),
			zap.String("queue", d.conf.Queue), zap.Error(err))
		return false
	}
	d.log.Warn("the queue did not exist any more and was created again", zap.String("pipeline", d.pipeline), zap.String("queue", d.conf.Queue))
	return true
}

// Run starts consuming the pipeline.
func (d *Driver) Run(_ context.Context, _ jobs.Pipeline) error {
	return driverkit.WithOp("sqs_run", d.lifecycle().Run(zap.String("queue", d.conf.Queue), zap.Bool("fifo", d.conf.FIFO)))
}

// Resume starts consuming again after Pause.
func (d *Driver) Resume(_ context.Context, _ string) error {
	return driverkit.WithOp("sqs_resume", d.lifecycle().Resume())
}

// Pause stops receiving: a long poll in progress is cancelled. Jobs already received still run
// (their visibility is still extended) and pushes are sent. It waits for the receiver to exit, or
// for ctx.
func (d *Driver) Pause(ctx context.Context, _ string) error {
	return driverkit.WithOp("sqs_pause", d.lifecycle().Pause(ctx))
}

// lifecycle is Run, Resume and Pause on this driver's consume loop.
func (d *Driver) lifecycle() *driverkit.Lifecycle {
	return &driverkit.Lifecycle{
		Mu: &d.mu, State: &d.consume, Parent: d.life, Log: d.log, LoopName: "receiver",
		First: func() {
			d.bgWG.Add(1)
			go d.extendLoop()
		},
		Loop: d.receiveLoop,
	}
}

// Stop stops consuming for good. The pipeline's jobs waiting in the shared queue are taken out and
// made visible again at once (auto_ack ones, already deleted, are sent again), so another consumer
// gets them; jobs at a worker keep their visibility until it expires (it is no longer extended)
// and can still be acked. Idempotent; bounded by ctx.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	done, first := d.consume.Stop()
	d.mu.Unlock()
	if !first {
		return nil
	}

	// Free room for a receiver blocked in Insert, then wait for it to exit. The messages are handed
	// back only then, so the receiver's last (cancelled) long poll cannot take them again.
	taken := d.takeFromQueue()
	if !driverkit.WaitDone(ctx, done) {
		d.log.Warn("pipeline receiver is still blocked inserting a job into the full queue",
			zap.String("driver", pluginName), zap.String("pipeline", d.pipeline))
	}
	taken = append(taken, d.takeFromQueue()...)
	handCtx := ctx
	if ctx.Err() != nil { // the wait used up the budget: a last short one for the hand-back
		var cancel context.CancelFunc
		handCtx, cancel = context.WithTimeout(context.Background(), handBackGrace)
		defer cancel()
	}
	released := d.handBackItems(handCtx, taken)
	d.lifeCancel()
	d.bgWG.Wait()

	d.mu.Lock()
	atWorkers := len(d.held)
	d.mu.Unlock()
	d.log.Info("pipeline was stopped", zap.String("driver", pluginName), zap.String("pipeline", d.pipeline),
		zap.Int("released", released), zap.Int("left_to_visibility_expiry", atWorkers))
	return nil
}

// State reports the queue's counts from GetQueueAttributes: Active = ApproximateNumberOfMessages
// (visible), Delayed = ApproximateNumberOfMessagesDelayed, Reserved =
// ApproximateNumberOfMessagesNotVisible (received by any consumer and not yet deleted). While SQS
// cannot be reached the counts are zero and ErrorMessage says why.
func (d *Driver) State(ctx context.Context) (*jobs.State, error) {
	d.mu.Lock()
	st := &jobs.State{
		Pipeline: d.pipeline,
		Driver:   pluginName,
		Queue:    d.conf.Queue,
		Priority: uint64(d.conf.Priority), //nolint:gosec // validated >= 1
		Ready:    d.consume.Running(),
	}
	recvErr, running := d.recvErr, d.consume.Running()
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	out, err := d.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(d.queueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	switch {
	case err != nil:
		st.ErrorMessage = fmt.Sprintf("sqs pipeline %q: read the queue attributes of %q: %v", d.pipeline, d.conf.Queue, err)
		return st, nil
	case running && recvErr != nil:
		st.ErrorMessage = fmt.Sprintf("sqs pipeline %q: receive failed: %v", d.pipeline, recvErr)
	}
	count := func(name types.QueueAttributeName) int64 {
		n, err := strconv.ParseInt(out.Attributes[string(name)], 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	st.Active = count(types.QueueAttributeNameApproximateNumberOfMessages)
	st.Delayed = count(types.QueueAttributeNameApproximateNumberOfMessagesDelayed)
	st.Reserved = count(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)
	return st, nil
}

// signal wakes the receiver from an idle pause (a job was pushed or a slot was freed).
func (d *Driver) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Driver) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.consume.Stopped()
}

// receiveLoop receives messages until ctx ends. A ReceiveMessage in progress is cancelled by ctx;
// messages a cancelled call had already taken come back after their visibility timeout.
func (d *Driver) receiveLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	var failWait, idleWait time.Duration
	for {
		n := d.waitSlots(ctx)
		if n == 0 {
			return
		}
		started := time.Now()
		// After a failure a short long poll confirms soon that receiving works again.
		msgs, err := d.receive(ctx, n, failWait > 0)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.setRecvErr(err)
			if isNonExistentQueue(err) && !d.conf.SkipDeclare {
				d.redeclare(ctx)
			}
			failWait = min(max(failWait*2, 100*time.Millisecond), maxFailWait)
			if !d.sleep(ctx, failWait, false) {
				return
			}
			continue
		}
		failWait = 0
		d.setRecvErr(nil)
		if len(msgs) == 0 {
			if time.Since(started) < time.Second { // a short poll: do not spin on an empty queue
				idleWait = min(max(idleWait*2, 50*time.Millisecond), maxIdleWait)
				if !d.sleep(ctx, idleWait, true) {
					return
				}
			}
			continue
		}
		idleWait = 0
		d.accept(ctx, msgs, started)
		if ctx.Err() != nil {
			return
		}
	}
}

// sleep waits for wait, ctx (false) or, when wakeable, a local push.
func (d *Driver) sleep(ctx context.Context, wait time.Duration, wakeable bool) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	var wake chan struct{}
	if wakeable {
		wake = d.wake
	}
	select {
	case <-t.C:
	case <-wake:
	case <-ctx.Done():
		return false
	}
	return true
}

// waitSlots blocks until this pipeline holds fewer than max_messages_in_flight jobs and returns how
// many to receive (at most prefetch), or 0 when ctx ends.
func (d *Driver) waitSlots(ctx context.Context) int {
	for {
		d.mu.Lock()
		free := d.conf.MaxInFlight - len(d.held)
		d.mu.Unlock()
		if free > 0 {
			return min(free, d.conf.Prefetch)
		}
		select {
		case <-d.slot:
		case <-ctx.Done():
			return 0
		}
	}
}

// receive asks for up to n messages; quick limits a long poll to 1 second.
func (d *Driver) receive(ctx context.Context, n int, quick bool) ([]types.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, MaxWaitTime*time.Second+receiveSlack)
	defer cancel()
	wait := d.conf.WaitTime
	if quick {
		wait = 1
	}
	out, err := d.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(d.queueURL),
		MaxNumberOfMessages:         int32(n),                        //nolint:gosec // 1..10
		VisibilityTimeout:           int32(d.conf.VisibilityTimeout), //nolint:gosec // 0..43200
		WaitTimeSeconds:             int32(wait),                     //nolint:gosec // 0..20
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		return nil, err
	}
	return out.Messages, nil
}

// accept turns received messages into jobs and inserts them into the shared queue. auto_ack
// messages are deleted first; one that cannot be deleted is left to come back after its visibility
// timeout. Once ctx ends (Pause, Stop) the messages not yet inserted are made visible again.
func (d *Driver) accept(ctx context.Context, msgs []types.Message, received time.Time) {
	until := received.Add(time.Duration(d.visibility) * time.Second)
	for i, m := range msgs {
		if ctx.Err() != nil {
			d.handBack(msgs[i:])
			return
		}
		in := decode(m, d.conf.Priority)
		it := &Item{
			drv: d, id: in.id, job: in.job, payload: in.payload, headers: in.headers, priority: in.priority,
			autoAck: in.autoAck, receipt: aws.ToString(m.ReceiptHandle), messageID: aws.ToString(m.MessageId),
			group: in.group, sysKeys: in.sysKeys, until: until,
		}
		for _, p := range in.problems {
			d.log.Warn("message could not be decoded completely: "+p, zap.String("pipeline", d.pipeline),
				zap.String("id", it.id), zap.String("message_id", it.messageID))
		}
		if in.foreign {
			d.log.Debug("message without rr_id (not pushed by RoadRunner) received", zap.String("pipeline", d.pipeline),
				zap.String("id", it.id), zap.String("message_id", it.messageID))
		}
		if it.autoAck {
			if err := d.deleteMessage(it); err != nil {
				d.log.Error("auto_ack job could not be deleted, it is delivered again after its visibility timeout",
					zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Error(err))
				continue
			}
		}
		d.mu.Lock()
		d.held[it] = struct{}{}
		d.mu.Unlock()
		d.pq.Insert(it)
		if ce := d.log.Check(zapcore.DebugLevel, "job was received"); ce != nil {
			ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.String("message_id", it.messageID))
		}
	}
}

// handBack makes received messages that will not be inserted visible again at once.
func (d *Driver) handBack(msgs []types.Message) {
	items := make([]*Item, 0, len(msgs))
	for _, m := range msgs {
		items = append(items, &Item{drv: d, receipt: aws.ToString(m.ReceiptHandle)})
	}
	for len(items) > 0 {
		n := min(len(items), batchSize)
		ctx, cancel := d.opContext()
		d.makeVisible(ctx, items[:n])
		cancel()
		items = items[n:]
	}
}

func (d *Driver) setRecvErr(err error) {
	d.mu.Lock()
	prev := d.recvErr
	d.recvErr = err
	d.mu.Unlock()
	switch {
	case err != nil && prev == nil:
		d.log.Error("messages could not be received, retrying", zap.String("pipeline", d.pipeline), zap.String("queue", d.conf.Queue), zap.Error(err))
	case err == nil && prev != nil:
		d.log.Info("messages are received again", zap.String("pipeline", d.pipeline), zap.String("queue", d.conf.Queue))
	}
}

// settle ends a held job's life in this process: false when it was already settled.
func (d *Driver) settle(it *Item) bool {
	d.mu.Lock()
	if it.state == stDone {
		d.mu.Unlock()
		return false
	}
	it.state = stDone
	delete(d.held, it)
	d.mu.Unlock()
	select {
	case d.slot <- struct{}{}:
	default:
	}
	return true
}

func (d *Driver) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

func (d *Driver) deleteMessage(it *Item) error {
	ctx, cancel := d.opContext()
	defer cancel()
	_, err := d.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(d.queueURL), ReceiptHandle: aws.String(it.receipt)})
	return err
}

// finish implements Ack and a final Nack: the message is deleted.
func (d *Driver) finish(it *Item, what string) error {
	op := rrerrors.Op("sqs_" + what)
	if !d.settle(it) || it.autoAck {
		return nil
	}
	if err := d.deleteMessage(it); err != nil {
		return rrerrors.E(op, fmt.Errorf("sqs pipeline %q: %s job %q: delete the message: %w; it is delivered again after its visibility timeout",
			d.pipeline, what, it.id, err))
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was "+what+"ed"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id))
	}
	return nil
}

// fail implements a plain Nack: as stock, a copy is sent and the original deleted, or with
// retain_failed_jobs the message stays, visible again after error_visibility_timeout (if set) or
// its visibility timeout, so SQS counts the receive (redrive to a dead-letter queue works).
func (d *Driver) fail(it *Item) error {
	const op = rrerrors.Op("sqs_nack")
	if it.autoAck {
		d.settle(it)
		return nil
	}
	if !d.conf.RetainFailedJobs {
		return d.requeue(it, nil, 0)
	}
	if !d.settle(it) {
		return nil
	}
	if d.conf.ErrorVisibilityTimeout == 0 {
		return nil
	}
	ctx, cancel := d.opContext()
	defer cancel()
	_, err := d.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(d.queueURL), ReceiptHandle: aws.String(it.receipt), VisibilityTimeout: int32(d.conf.ErrorVisibilityTimeout), //nolint:gosec // 0..43200
	})
	var notInflight *types.MessageNotInflight
	if err != nil && !errors.As(err, &notInflight) {
		return rrerrors.E(op, fmt.Errorf("sqs pipeline %q: nack job %q: set the visibility timeout to %d s: %w; it is delivered again after its visibility timeout",
			d.pipeline, it.id, d.conf.ErrorVisibilityTimeout, err))
	}
	return nil
}

// requeue implements Requeue and NackWithOptions(true, delay): a copy of the job (headers merged)
// is sent with the delay, and only once SQS has it the original is deleted, so a failed send never
// loses the job (roadrunner-server/sqs#864). On a FIFO queue the copy gets a fresh deduplication id
// (the job id is deduplicated for 5 minutes) and the original's message group.
func (d *Driver) requeue(it *Item, headers map[string][]string, delay int) error {
	const op = rrerrors.Op("sqs_requeue")
	if it.autoAck {
		d.settle(it)
		return nil
	}
	if !d.settle(it) {
		return rrerrors.E(op, fmt.Errorf("sqs pipeline %q: job %q was already acknowledged or requeued", d.pipeline, it.id))
	}
	if delay > MaxDelay {
		d.log.Warn("requeue delay is longer than the SQS maximum, using 900 seconds", zap.String("pipeline", d.pipeline),
			zap.String("id", it.id), zap.Int("delay_seconds", delay))
		delay = MaxDelay
	}
	delay = max(delay, 0)
	if d.conf.FIFO && delay > 0 {
		d.log.Debug("FIFO queues have no per-message delay: the job is requeued without it", zap.String("pipeline", d.pipeline),
			zap.String("id", it.id), zap.Int("delay_seconds", delay))
		delay = 0
	}
	hdr := stripKeys(it.headers, it.sysKeys)
	for k, v := range headers {
		hdr[k] = v
	}
	group := it.group
	if group == "" {
		group = d.conf.MessageGroupID
	}
	o := outgoing{id: it.id, job: it.job, payload: it.payload, headers: hdr, priority: it.priority, delay: int64(delay)}
	ctx, cancel := d.opContext()
	defer cancel()
	if err := d.send(ctx, o, group, newUUID()); err != nil {
		return rrerrors.E(op, fmt.Errorf("sqs pipeline %q: requeue job %q: send the copy: %w; the original message is kept and delivered again after its visibility timeout",
			d.pipeline, it.id, err))
	}
	if _, err := d.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(d.queueURL), ReceiptHandle: aws.String(it.receipt)}); err != nil {
		return rrerrors.E(op, fmt.Errorf("sqs pipeline %q: job %q was requeued, but the original message could not be deleted: %w; it runs once more after its visibility timeout",
			d.pipeline, it.id, err))
	}
	if delay == 0 {
		d.signal()
	}
	if ce := d.log.Check(zapcore.DebugLevel, "job was requeued"); ce != nil {
		ce.Write(zap.String("pipeline", d.pipeline), zap.String("id", it.id), zap.Int("delay_seconds", delay))
	}
	return nil
}
