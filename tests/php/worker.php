<?php

/**
 * Composer-free jobs worker for the rrjobs tests (relay: pipes, i.e. STDIN/STDOUT).
 *
 * STDOUT carries goridge frames only; every diagnostic goes to STDERR.
 * The behaviour for each job is chosen by its body (a JSON object with an "action" key);
 * see README.md in this directory for the action table and the jobs.log line format.
 */

declare(strict_types=1);

namespace RRJobsTest;

// Nothing but frames may reach STDOUT: route PHP errors and any stray output to STDERR.
\ini_set('display_errors', 'stderr');
\ini_set('log_errors', '0');
\error_reporting(\E_ALL);
\ob_start(static function (string $buf): string {
    if ($buf !== '') {
        \fwrite(\STDERR, $buf);
    }
    return '';
}, 1);

require __DIR__ . '/goridge.php';

final class Worker
{
    private ?string $dir;
    private int $pid;

    public function __construct()
    {
        $dir = \getenv('RRJOBS_TEST_DIR');
        $this->dir = ($dir === false || $dir === '') ? null : \rtrim($dir, '/');
        $this->pid = \getmypid();
    }

    public function run(): int
    {
        while (true) {
            $frame = FrameIO::read(\STDIN);
            if ($frame === null) {
                return 0; // RR closed the pipe
            }

            if ($frame->has(Frame::CONTROL)) {
                $cmd = \json_decode($frame->payload, true);
                if (\is_array($cmd) && !empty($cmd['stop'])) {
                    return 0;
                }
                if (\is_array($cmd) && \array_key_exists('pid', $cmd)) {
                    $this->send(new Frame(\json_encode(['pid' => $this->pid]), [], Frame::CONTROL));
                    continue;
                }
                self::diag('unknown control frame: ' . $frame->payload);
                continue;
            }

            $ctxLen = $frame->options[0] ?? 0;
            $ctxRaw = (string) \substr($frame->payload, 0, $ctxLen);
            $body = (string) \substr($frame->payload, $ctxLen);
            $exit = $this->handle($ctxRaw, $body);
            if ($exit !== null) {
                return $exit;
            }
        }
    }

    /** Handle one job; returns an exit code when the worker must stop afterwards. */
    private function handle(string $ctxRaw, string $body): ?int
    {
        $ctx = \json_decode($ctxRaw, true);
        if (!\is_array($ctx)) {
            self::diag('job context is not a JSON object: ' . $ctxRaw);
            $ctx = [];
        }
        $id = (string) ($ctx['id'] ?? '');
        $headers = \is_array($ctx['headers'] ?? null) ? $ctx['headers'] : [];

        $args = \json_decode($body, true);
        if (!\is_array($args) || \array_is_list($args) && $args !== []) {
            $args = [];
        }
        $action = \is_string($args['action'] ?? null) ? $args['action'] : 'ack';
        // "unless_header": act as ack when the job carries that header (e.g. a poison job that
        // behaves once it reached its dead-letter pipeline).
        // "name=value" also requires that value.
        if (\is_string($args['unless_header'] ?? null)) {
            [$hName, $hValue] = \array_pad(\explode('=', $args['unless_header'], 2), 2, null);
            if (\array_key_exists($hName, $headers)
                && ($hValue === null || \in_array($hValue, (array) $headers[$hName], true))) {
                $action = 'ack';
            }
        }

        $this->log([
            'event' => 'start',
            'pid' => $this->pid,
            'id' => $id,
            'job' => $ctx['job'] ?? null,
            'driver' => $ctx['driver'] ?? null,
            'queue' => $ctx['queue'] ?? null,
            'pipeline' => $ctx['pipeline'] ?? null,
            'headers' => (object) $headers,
            'payload' => $body,
            'action' => $action,
            'ts' => \microtime(true),
        ]);

        $delay = (int) ($args['delay'] ?? 0);
        $exitAfter = null;

        switch ($action) {
            case 'complete':
                $type = 0;
                $data = [];
                break;

            case 'nack':
                $type = 3;
                $data = ['message' => 'nacked', 'requeue' => (bool) ($args['requeue'] ?? false), 'delay_seconds' => $delay];
                break;

            case 'requeue':
                $type = 4;
                $data = ['message' => 'requeued', 'delay_seconds' => $delay];
                $h = self::replyHeaders($args, $headers);
                if ($h !== []) {
                    $data['headers'] = $h;
                }
                break;

            case 'requeue_until':
                $times = (int) ($args['times'] ?? 1);
                // exact "attempts" first, else a case-insensitive match (a driver may canonicalise names)
                $key = 'attempts';
                if (!\array_key_exists($key, $headers)) {
                    foreach (\array_keys($headers) as $name) {
                        if (\strcasecmp((string) $name, 'attempts') === 0) {
                            $key = (string) $name;
                            break;
                        }
                    }
                }
                $attempts = (int) (((array) ($headers[$key] ?? []))[0] ?? 0);
                if ($attempts < $times) {
                    $type = 4;
                    $h = $headers;
                    $h[$key] = [(string) ($attempts + 1)];
                    $data = ['message' => 'requeued', 'delay_seconds' => $delay, 'headers' => $h];
                } else {
                    $type = 2;
                    $data = [];
                }
                break;

            case 'fail':
                $type = 1;
                $data = ['message' => 'failed', 'requeue' => (bool) ($args['requeue'] ?? false), 'delay_seconds' => $delay];
                $h = self::replyHeaders($args, $headers);
                if ($h !== []) {
                    $data['headers'] = $h;
                }
                break;

            case 'error_frame':
                // what $worker->error($msg) sends: ERROR flag, no options, the message as payload
                $this->send(new Frame((string) ($args['message'] ?? 'boom'), [], Frame::ERROR));
                $this->done($id, $action, 'error');
                return null;

            case 'garbage':
                $this->send(new Frame('foo', [0]));
                $this->done($id, $action, 'garbage');
                return null;

            case 'crash':
                self::diag("crash requested by job $id");
                return 1;

            case 'crash_once':
                if ($this->firstTime('crashed', $id)) {
                    self::diag("crash_once: crashing on the first delivery of job $id");
                    return 1;
                }
                $type = 2;
                $data = [];
                break;

            case 'sleep':
                \usleep(\max(0, (int) ($args['ms'] ?? 0)) * 1000);
                $type = 2;
                $data = [];
                break;

            case 'sleep_once':
                if ($this->firstTime('slept', $id)) {
                    \usleep(\max(0, (int) ($args['ms'] ?? 0)) * 1000);
                }
                $type = 2;
                $data = [];
                break;

            case 'exit_after':
                $type = 2;
                $data = [];
                $exitAfter = 0;
                break;

            case 'ack':
            default:
                $type = 2;
                $data = [];
                break;
        }

        $this->reply($type, $data);
        $this->done($id, $action, $type);

        return $exitAfter;
    }

    /**
     * Headers for requeue/fail replies: the action's "headers" ({name: [values]} or {name: value});
     * with "with_task_headers": true they are merged over the headers the job arrived with
     * (what the official client sends).
     */
    private static function replyHeaders(array $args, array $taskHeaders): array
    {
        $out = !empty($args['with_task_headers']) ? $taskHeaders : [];
        if (\is_array($args['headers'] ?? null)) {
            foreach ($args['headers'] as $name => $values) {
                $list = [];
                foreach (\is_array($values) ? $values : [$values] as $v) {
                    $list[] = \is_scalar($v) ? (\is_bool($v) ? ($v ? 'true' : 'false') : (string) $v) : \json_encode($v);
                }
                $out[(string) $name] = $list;
            }
        }

        return $out;
    }

    /** Reply frame: flags 0, options [0] (empty header), payload = {"type":N,"data":...}. */
    private function reply(int $type, array $data): void
    {
        // an empty data array encodes as [] (as the official client sends for ack/complete);
        // a non-empty one is an object, and headers are always an object
        if (\array_key_exists('headers', $data)) {
            $data['headers'] = (object) $data['headers'];
        }
        $json = \json_encode(['type' => $type, 'data' => $data], \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_INVALID_UTF8_SUBSTITUTE);
        $this->send(new Frame($json, [0]));
    }

    private function send(Frame $frame): void
    {
        FrameIO::write(\STDOUT, $frame);
    }

    /** True only for the first caller (across worker processes) for this marker and job id. */
    private function firstTime(string $marker, string $id): bool
    {
        $dir = $this->dir;
        if ($dir === null) {
            $dir = \sys_get_temp_dir();
            self::diag("RRJOBS_TEST_DIR is not set; keeping $marker markers in $dir");
        }
        $safe = \preg_replace('/[^A-Za-z0-9._-]/', '_', $id);
        if ($safe !== $id) {
            $safe .= '-' . \substr(\md5($id), 0, 8);
        }
        $fh = @\fopen("$dir/$marker-$safe", 'x'); // atomic create-if-absent
        if ($fh === false) {
            return false;
        }
        \fclose($fh);

        return true;
    }

    private function done(string $id, string $action, int|string $replyType): void
    {
        $this->log([
            'event' => 'done',
            'pid' => $this->pid,
            'id' => $id,
            'action' => $action,
            'reply_type' => $replyType,
            'ts' => \microtime(true),
        ]);
    }

    private function log(array $entry): void
    {
        if ($this->dir === null) {
            return;
        }
        $line = \json_encode($entry, \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_INVALID_UTF8_SUBSTITUTE);
        if ($line === false) {
            self::diag('cannot encode log line: ' . \json_last_error_msg());
            return;
        }
        if (@\file_put_contents($this->dir . '/jobs.log', $line . "\n", \FILE_APPEND | \LOCK_EX) === false) {
            self::diag("cannot append to {$this->dir}/jobs.log");
        }
    }

    private static function diag(string $msg): void
    {
        \fwrite(\STDERR, '[worker ' . \getmypid() . "] $msg\n");
    }
}

try {
    $relay = \getenv('RR_RELAY');
    if ($relay !== false && $relay !== '' && $relay !== 'pipes') {
        throw new \RuntimeException("only the pipes relay is supported, RR_RELAY=$relay");
    }
    $code = (new Worker())->run();
} catch (\Throwable $e) {
    \fwrite(\STDERR, '[worker ' . \getmypid() . '] fatal: ' . $e->getMessage() . "\n");
    $code = 1;
}
exit($code);
