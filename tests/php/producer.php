<?php

/**
 * Composer-free jobs producer for the rrjobs tests: drives the jobs.* RPC service the way
 * spiral/roadrunner-jobs does (goridge RPC, protobuf codec).
 *
 *   php producer.php <host:port|tcp://host:port|unix:///path> <command> [json-args]
 *
 * Prints exactly one JSON line: {"ok":true,"result":...} (exit 0) or {"ok":false,"error":"..."} (exit 1).
 * See README.md in this directory for the commands and their arguments.
 */

declare(strict_types=1);

namespace RRJobsTest;

\ini_set('display_errors', 'stderr');
\error_reporting(\E_ALL);

require __DIR__ . '/goridge.php';

const USAGE = 'usage: php producer.php <host:port> <push|push_batch|push_each|list|stat|declare|pause|resume|destroy> [json-args]';

final class UsageException extends \InvalidArgumentException
{
}

/** Build a Job message from the CLI's job object; returns [job message, id]. */
function buildJob(array $a): array
{
    // like the official client: a uuid4 per job unless one is given ("" is sent as is)
    $id = \array_key_exists('id', $a) && $a['id'] !== null ? (string) $a['id'] : uuid4();

    $payload = $a['payload'] ?? '';
    if (!\is_string($payload)) {
        $payload = \json_encode($payload, \JSON_UNESCAPED_SLASHES);
    }

    $options = [
        'priority' => (int) ($a['priority'] ?? 0),
        'pipeline' => (string) ($a['pipeline'] ?? ''),
        'delay' => (int) ($a['delay'] ?? 0),
        'auto_ack' => (bool) ($a['auto_ack'] ?? false),
        // KafkaOptions
        'topic' => (string) ($a['topic'] ?? ''),
        'metadata' => (string) ($a['metadata'] ?? ''),
        'offset' => (int) ($a['offset'] ?? 0),
        'partition' => (int) ($a['partition'] ?? 0),
    ];

    $job = [
        'job' => (string) ($a['job'] ?? 'test'),
        'id' => $id,
        'payload' => $payload,
        'headers' => Proto::headers(\is_array($a['headers'] ?? null) ? $a['headers'] : []),
        'options' => $options,
    ];

    return [$job, $id];
}

/** Stringify a declare map the way the official client does (ints decimal, bools true/false, arrays JSON). */
function stringMap(array $m): array
{
    $out = [];
    foreach ($m as $k => $v) {
        $out[(string) $k] = match (true) {
            \is_bool($v) => $v ? 'true' : 'false',
            \is_array($v) => \json_encode($v, \JSON_UNESCAPED_SLASHES),
            $v === null => '',
            default => (string) $v,
        };
    }

    return $out;
}

/** @return list<string> */
function pipelineNames(array $args): array
{
    $names = \array_is_list($args) ? $args : ($args['pipelines'] ?? null);
    if (\is_string($names)) {
        $names = [$names];
    }
    if (!\is_array($names)) {
        throw new UsageException('expected {"pipelines":[...]}');
    }

    return \array_map('strval', \array_values($names));
}

function run(array $argv): array
{
    if (\count($argv) < 3) {
        throw new UsageException(USAGE);
    }
    [, $address, $command] = $argv;
    $args = [];
    if (isset($argv[3]) && $argv[3] !== '') {
        $args = \json_decode($argv[3], true);
        if (!\is_array($args)) {
            throw new UsageException('json-args must be a JSON object: ' . \json_last_error_msg());
        }
    }

    $timeout = (float) (\getenv('RRJOBS_RPC_TIMEOUT') ?: 65);
    $rpc = new RPCClient($address, 5.0, $timeout);
    $out = [];

    switch ($command) {
        case 'push':
            [$job, $id] = buildJob($args);
            $out['result'] = $rpc->callProto('jobs.Push', 'PushRequest', ['job' => $job], 'Empty');
            $out['id'] = $id;
            break;

        case 'push_batch':
            $jobs = [];
            $ids = [];
            foreach ((array) ($args['jobs'] ?? []) as $j) {
                [$jobs[], $ids[]] = buildJob((array) $j);
            }
            $out['result'] = $rpc->callProto('jobs.PushBatch', 'PushBatchRequest', ['jobs' => $jobs], 'Empty');
            $out['ids'] = $ids;
            break;

        case 'push_each':
            // one jobs.Push call per job over the same connection (seq 1, 2, ...)
            $ids = [];
            foreach ((array) ($args['jobs'] ?? []) as $j) {
                [$job, $ids[]] = buildJob((array) $j);
                $rpc->callProto('jobs.Push', 'PushRequest', ['job' => $job], 'Empty');
            }
            $out['result'] = [];
            $out['ids'] = $ids;
            break;

        case 'list':
            // the official client sends an empty body
            $out['result'] = $rpc->callProto('jobs.List', 'Empty', null, 'Pipelines');
            break;

        case 'stat':
            $out['result'] = $rpc->callProto('jobs.Stat', 'Empty', null, 'Stats');
            break;

        case 'declare':
            if (!\is_array($args['pipeline'] ?? null)) {
                throw new UsageException('expected {"pipeline":{"name":...,"driver":...}}');
            }
            $out['result'] = $rpc->callProto('jobs.Declare', 'DeclareRequest', ['pipeline' => stringMap($args['pipeline'])], 'Empty');
            break;

        case 'pause':
            $out['result'] = $rpc->callProto('jobs.Pause', 'Pipelines', ['pipelines' => pipelineNames($args)], 'Empty');
            break;

        case 'resume':
            $out['result'] = $rpc->callProto('jobs.Resume', 'Pipelines', ['pipelines' => pipelineNames($args)], 'Empty');
            break;

        case 'destroy':
            $out['result'] = $rpc->callProto('jobs.Destroy', 'Pipelines', ['pipelines' => pipelineNames($args)], 'Pipelines');
            break;

        default:
            throw new UsageException("unknown command '$command'\n" . USAGE);
    }
    $rpc->close();

    // decoded messages are objects, even when empty
    $out['result'] = (object) $out['result'];

    return ['ok' => true] + $out;
}

try {
    $res = run($argv);
    $code = 0;
} catch (\Throwable $e) {
    $kind = match (true) {
        $e instanceof ServiceException => 'service',
        $e instanceof UsageException => 'usage',
        default => 'transport',
    };
    $res = ['ok' => false, 'error' => $e->getMessage(), 'kind' => $kind];
    if ($kind === 'usage') {
        \fwrite(\STDERR, $e->getMessage() . "\n");
    }
    $code = 1;
}
echo \json_encode($res, \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_INVALID_UTF8_SUBSTITUTE), "\n";
exit($code);
