<?php

/**
 * Composer-free test library for the rrjobs project.
 *
 *  - Frame / FrameIO: goridge v1 frames over PHP streams (pipes or sockets);
 *  - Proto:           a tiny schema-driven protobuf encoder/decoder for the jobs.v1 messages;
 *  - RPCClient:       a goridge RPC client (protobuf codec) over stream_socket_client().
 *
 * Written for this project from the wire description in
 * /work/shared/reference/wire-protocol.md (§1, §2); it is not derived from any upstream PHP package.
 */

declare(strict_types=1);

namespace RRJobsTest;

final class GoridgeException extends \RuntimeException
{
}

/** RPC call answered with an ERROR frame: the message is the server's error text. */
final class ServiceException extends \RuntimeException
{
}

/** One goridge v1 frame. */
final class Frame
{
    public const VERSION = 1;

    // byte 1 (flags)
    public const CONTROL = 0x01;
    public const CODEC_RAW = 0x04;
    public const CODEC_JSON = 0x08;
    public const CODEC_MSGPACK = 0x10;
    public const CODEC_GOB = 0x20;
    public const ERROR = 0x40;
    public const CODEC_PROTO = 0x80;

    // byte 10 (stream flags)
    public const STREAM = 0x01;
    public const STOP = 0x02;
    public const PING = 0x04;
    public const PONG = 0x08;

    public const HEADER_SIZE = 12;
    public const MAX_OPTIONS = 10;

    /**
     * @param list<int> $options uint32 values
     */
    public function __construct(
        public string $payload = '',
        public array $options = [],
        public int $flags = 0,
        public int $streamFlags = 0,
    ) {
    }

    public function has(int $flag): bool
    {
        return ($this->flags & $flag) === $flag;
    }

    /** Serialise: 12-byte header, options, payload. */
    public function pack(): string
    {
        $n = \count($this->options);
        if ($n > self::MAX_OPTIONS) {
            throw new GoridgeException("too many frame options: $n");
        }
        $len = \strlen($this->payload);
        if ($len > 0xFFFFFFFF) {
            throw new GoridgeException("payload too large: $len");
        }
        $first6 = \pack('CCV', (self::VERSION << 4) | (3 + $n), $this->flags & 0xFF, $len);
        $head = $first6 . \pack('VCC', \crc32($first6), $this->streamFlags & 0xFF, 0);
        foreach ($this->options as $o) {
            $head .= \pack('V', $o & 0xFFFFFFFF);
        }

        return $head . $this->payload;
    }
}

/** Reads and writes frames on a PHP stream resource. */
final class FrameIO
{
    /**
     * Read exactly $len bytes. Returns null on a clean EOF before the first byte when $eofOk.
     *
     * @param resource $stream
     */
    public static function readExact($stream, int $len, bool $eofOk = false): ?string
    {
        $buf = '';
        while (\strlen($buf) < $len) {
            $chunk = @\fread($stream, $len - \strlen($buf));
            if ($chunk === false || $chunk === '') {
                $meta = @\stream_get_meta_data($stream);
                if (!empty($meta['timed_out'])) {
                    throw new GoridgeException('read timed out');
                }
                if ($chunk === false || \feof($stream)) {
                    if ($eofOk && $buf === '') {
                        return null;
                    }
                    throw new GoridgeException(\sprintf('unexpected EOF: got %d of %d bytes', \strlen($buf), $len));
                }
                continue; // interrupted (e.g. EINTR); try again
            }
            $buf .= $chunk;
        }

        return $buf;
    }

    /**
     * Read one frame. Returns null on EOF at a frame boundary.
     *
     * @param resource $stream
     */
    public static function read($stream): ?Frame
    {
        $h = self::readExact($stream, Frame::HEADER_SIZE, true);
        if ($h === null) {
            return null;
        }
        $b0 = \ord($h[0]);
        $version = $b0 >> 4;
        $hl = $b0 & 0x0F;
        if ($version !== Frame::VERSION) {
            throw new GoridgeException(\sprintf('unsupported frame version %d (header %s)', $version, \bin2hex($h)));
        }
        $u = \unpack('Vlen/Vcrc', \substr($h, 2, 8));
        $crc = \crc32(\substr($h, 0, 6));
        if ($crc !== $u['crc']) {
            throw new GoridgeException(\sprintf('frame CRC mismatch: header %s, want %08x', \bin2hex($h), $crc));
        }
        if ($hl < 3) {
            throw new GoridgeException("bad header length $hl");
        }
        $options = [];
        if ($hl > 3) {
            $raw = self::readExact($stream, ($hl - 3) * 4);
            $options = \array_values(\unpack('V*', $raw));
        }
        $payload = $u['len'] > 0 ? self::readExact($stream, $u['len']) : '';

        return new Frame($payload, $options, \ord($h[1]), \ord($h[10]));
    }

    /**
     * Write a whole frame (loops over partial writes).
     *
     * @param resource $stream
     */
    public static function write($stream, Frame $frame): void
    {
        $data = $frame->pack();
        $off = 0;
        $total = \strlen($data);
        while ($off < $total) {
            $n = @\fwrite($stream, $off === 0 ? $data : \substr($data, $off));
            if ($n === false || $n === 0) {
                $meta = @\stream_get_meta_data($stream);
                if (!empty($meta['timed_out'])) {
                    throw new GoridgeException('write timed out');
                }
                throw new GoridgeException(\sprintf('write failed after %d of %d bytes', $off, $total));
            }
            $off += $n;
        }
        \fflush($stream);
    }
}

/**
 * Minimal protobuf (proto3) codec, driven by a hand-written schema of the jobs.v1 messages.
 *
 * PHP representation of a message: an associative array keyed by field name.
 *  - scalars: string / int / bool; repeated: list; map: [key => value];
 *  - nested messages: arrays (null = absent);
 *  - Job.headers: ['name' => ['value' => ['v1', ...]]] (HeaderValue messages), see Proto::headers().
 * Encoding skips proto3 defaults ('' / 0 / false / [] / null); decoding fills them in and skips unknown fields.
 * uint64 values above PHP_INT_MAX come back negative (two's complement).
 */
final class Proto
{
    public const WT_VARINT = 0;
    public const WT_I64 = 1;
    public const WT_LEN = 2;
    public const WT_I32 = 5;

    /**
     * field spec: [number, type, kind?]; type = scalar name or message name;
     * kind = 'repeated' or ['map', keyType] (then type is the value type).
     */
    public const SCHEMA = [
        'Empty' => [],
        'HeaderValue' => [
            'value' => [1, 'string', 'repeated'],
        ],
        'Options' => [
            'priority' => [1, 'int64'],
            'pipeline' => [2, 'string'],
            'delay' => [3, 'int64'],
            'auto_ack' => [6, 'bool'],
            'topic' => [7, 'string'],
            'metadata' => [8, 'string'],
            'offset' => [9, 'int64'],
            'partition' => [10, 'int32'],
        ],
        'Job' => [
            'job' => [1, 'string'],
            'id' => [2, 'string'],
            'payload' => [3, 'bytes'],
            'headers' => [4, 'HeaderValue', ['map', 'string']],
            'options' => [5, 'Options'],
        ],
        'PushRequest' => [
            'job' => [1, 'Job'],
        ],
        'PushBatchRequest' => [
            'jobs' => [1, 'Job', 'repeated'],
        ],
        'DeclareRequest' => [
            'pipeline' => [1, 'string', ['map', 'string']],
        ],
        'Pipelines' => [
            'pipelines' => [1, 'string', 'repeated'],
        ],
        'Stat' => [
            'pipeline' => [1, 'string'],
            'driver' => [2, 'string'],
            'queue' => [3, 'string'],
            'active' => [4, 'int64'],
            'delayed' => [5, 'int64'],
            'reserved' => [6, 'int64'],
            'ready' => [7, 'bool'],
            'priority' => [8, 'uint64'],
        ],
        'Stats' => [
            'stats' => [1, 'Stat', 'repeated'],
        ],
    ];

    private const VARINT_TYPES = ['int64' => true, 'int32' => true, 'uint64' => true, 'uint32' => true, 'bool' => true];

    // ---- primitives -------------------------------------------------------------------------

    public static function varint(int $v): string
    {
        $out = '';
        // logical shift right by 7 of a 64-bit two's complement value
        $mask = \PHP_INT_MAX >> 6;
        do {
            $b = $v & 0x7F;
            $v = ($v >> 7) & $mask;
            $out .= \chr($v !== 0 ? ($b | 0x80) : $b);
        } while ($v !== 0);

        return $out;
    }

    public static function readVarint(string $buf, int &$pos): int
    {
        $result = 0;
        $shift = 0;
        $len = \strlen($buf);
        while (true) {
            if ($pos >= $len) {
                throw new GoridgeException('protobuf: truncated varint');
            }
            if ($shift >= 64) {
                throw new GoridgeException('protobuf: varint too long');
            }
            $b = \ord($buf[$pos++]);
            $result |= ($b & 0x7F) << $shift;
            if ($b < 0x80) {
                return $result;
            }
            $shift += 7;
        }
    }

    public static function tag(int $field, int $wireType): string
    {
        return self::varint(($field << 3) | $wireType);
    }

    public static function lenDelimited(int $field, string $data): string
    {
        return self::tag($field, self::WT_LEN) . self::varint(\strlen($data)) . $data;
    }

    // ---- encoding ---------------------------------------------------------------------------

    public static function encode(string $type, ?array $msg): string
    {
        if (!isset(self::SCHEMA[$type])) {
            throw new \InvalidArgumentException("unknown message type $type");
        }
        $msg ??= [];
        foreach ($msg as $name => $_) {
            if (!isset(self::SCHEMA[$type][$name])) {
                throw new \InvalidArgumentException("unknown field $type.$name");
            }
        }
        $out = '';
        foreach (self::SCHEMA[$type] as $name => $spec) {
            if (!\array_key_exists($name, $msg) || $msg[$name] === null) {
                continue;
            }
            [$num, $ftype] = $spec;
            $kind = $spec[2] ?? null;
            $value = $msg[$name];
            if ($kind === 'repeated') {
                foreach ((array) $value as $item) {
                    $out .= self::encodeField($num, $ftype, $item, true);
                }
            } elseif (\is_array($kind)) { // map
                foreach ((array) $value as $k => $v) {
                    $entry = self::encodeField(1, $kind[1], self::scalarKey($kind[1], $k), true)
                        . self::encodeField(2, $ftype, $v, true);
                    $out .= self::lenDelimited($num, $entry);
                }
            } else {
                $out .= self::encodeField($num, $ftype, $value, false);
            }
        }

        return $out;
    }

    private static function scalarKey(string $type, int|string $k): int|string
    {
        // PHP turns numeric string keys into ints; map keys here are strings
        return $type === 'string' ? (string) $k : (int) $k;
    }

    /** @param bool $force encode even a default value (repeated elements, map entries) */
    private static function encodeField(int $num, string $type, mixed $value, bool $force): string
    {
        switch ($type) {
            case 'string':
            case 'bytes':
                $s = (string) $value;
                return ($s === '' && !$force) ? '' : self::lenDelimited($num, $s);
            case 'bool':
                $b = (bool) $value;
                return (!$b && !$force) ? '' : self::tag($num, self::WT_VARINT) . ($b ? "\x01" : "\x00");
            case 'int64':
            case 'uint64':
            case 'int32':
            case 'uint32':
                $i = (int) $value;
                if ($type === 'uint32') {
                    $i &= 0xFFFFFFFF;
                }
                return ($i === 0 && !$force) ? '' : self::tag($num, self::WT_VARINT) . self::varint($i);
            default:
                if (!isset(self::SCHEMA[$type])) {
                    throw new \InvalidArgumentException("unknown field type $type");
                }
                return self::lenDelimited($num, self::encode($type, (array) $value));
        }
    }

    // ---- decoding ---------------------------------------------------------------------------

    public static function decode(string $type, string $buf): array
    {
        if (!isset(self::SCHEMA[$type])) {
            throw new \InvalidArgumentException("unknown message type $type");
        }
        $schema = self::SCHEMA[$type];
        $byNum = [];
        $msg = [];
        foreach ($schema as $name => $spec) {
            $byNum[$spec[0]] = $name;
            $kind = $spec[2] ?? null;
            $msg[$name] = $kind !== null ? [] : self::defaultValue($spec[1]);
        }

        $pos = 0;
        $len = \strlen($buf);
        while ($pos < $len) {
            $key = self::readVarint($buf, $pos);
            $num = $key >> 3;
            $wt = $key & 7;
            if (!isset($byNum[$num])) {
                self::skip($buf, $pos, $wt);
                continue;
            }
            $name = $byNum[$num];
            [, $ftype] = $schema[$name];
            $kind = $schema[$name][2] ?? null;

            if (\is_array($kind)) { // map entry
                $entry = self::readLen($buf, $pos, $wt);
                [$k, $v] = self::decodeMapEntry($entry, $kind[1], $ftype);
                $msg[$name][$k] = $v;
                continue;
            }

            if ($kind === 'repeated' && $wt === self::WT_LEN && isset(self::VARINT_TYPES[$ftype])) {
                // packed repeated scalars
                $packed = self::readLen($buf, $pos, $wt);
                $p = 0;
                while ($p < \strlen($packed)) {
                    $msg[$name][] = self::convertVarint($ftype, self::readVarint($packed, $p));
                }
                continue;
            }

            $value = self::decodeValue($buf, $pos, $wt, $ftype);
            if ($kind === 'repeated') {
                $msg[$name][] = $value;
            } else {
                $msg[$name] = $value; // last one wins (proto3 semantics)
            }
        }

        return $msg;
    }

    private static function defaultValue(string $type): mixed
    {
        return match ($type) {
            'string', 'bytes' => '',
            'bool' => false,
            'int64', 'uint64', 'int32', 'uint32' => 0,
            default => null, // message
        };
    }

    private static function decodeValue(string $buf, int &$pos, int $wt, string $type): mixed
    {
        if (isset(self::VARINT_TYPES[$type])) {
            if ($wt !== self::WT_VARINT) {
                throw new GoridgeException("protobuf: wire type $wt for $type");
            }
            return self::convertVarint($type, self::readVarint($buf, $pos));
        }
        $data = self::readLen($buf, $pos, $wt);
        if ($type === 'string' || $type === 'bytes') {
            return $data;
        }

        return self::decode($type, $data);
    }

    private static function convertVarint(string $type, int $v): int|bool
    {
        switch ($type) {
            case 'bool':
                return $v !== 0;
            case 'int32':
                $v &= 0xFFFFFFFF;
                return $v >= 0x80000000 ? $v - 0x100000000 : $v;
            case 'uint32':
                return $v & 0xFFFFFFFF;
            default:
                return $v;
        }
    }

    private static function decodeMapEntry(string $entry, string $keyType, string $valueType): array
    {
        $k = self::defaultValue($keyType);
        $v = isset(self::SCHEMA[$valueType]) ? self::decode($valueType, '') : self::defaultValue($valueType);
        $p = 0;
        while ($p < \strlen($entry)) {
            $key = self::readVarint($entry, $p);
            $num = $key >> 3;
            $wt = $key & 7;
            if ($num === 1) {
                $k = self::decodeValue($entry, $p, $wt, $keyType);
            } elseif ($num === 2) {
                $v = self::decodeValue($entry, $p, $wt, $valueType);
            } else {
                self::skip($entry, $p, $wt);
            }
        }

        return [$k, $v];
    }

    private static function readLen(string $buf, int &$pos, int $wt): string
    {
        if ($wt !== self::WT_LEN) {
            throw new GoridgeException("protobuf: expected length-delimited field, got wire type $wt");
        }
        $n = self::readVarint($buf, $pos);
        if ($n < 0 || $pos + $n > \strlen($buf)) {
            throw new GoridgeException('protobuf: truncated length-delimited field');
        }
        $data = (string) \substr($buf, $pos, $n);
        $pos += $n;

        return $data;
    }

    private static function skip(string $buf, int &$pos, int $wt): void
    {
        switch ($wt) {
            case self::WT_VARINT:
                self::readVarint($buf, $pos);
                return;
            case self::WT_I64:
                $pos += 8;
                break;
            case self::WT_LEN:
                self::readLen($buf, $pos, $wt);
                return;
            case self::WT_I32:
                $pos += 4;
                break;
            default:
                throw new GoridgeException("protobuf: unsupported wire type $wt");
        }
        if ($pos > \strlen($buf)) {
            throw new GoridgeException('protobuf: truncated fixed-width field');
        }
    }

    // ---- helpers for jobs.v1 ----------------------------------------------------------------

    /**
     * {name: string|list<scalar>} -> {name: HeaderValue}; values cast to string, empty lists dropped
     * (the official client drops headers without values).
     */
    public static function headers(array $headers): array
    {
        $out = [];
        foreach ($headers as $name => $values) {
            $list = [];
            foreach (\is_array($values) ? $values : [$values] as $v) {
                $list[] = \is_bool($v) ? ($v ? 'true' : 'false') : (\is_scalar($v) ? (string) $v : \json_encode($v));
            }
            if ($list !== []) {
                $out[(string) $name] = ['value' => $list];
            }
        }

        return $out;
    }

    /** Decoded Job.headers ({name: {value: [...]}}) -> {name: [...]}. */
    public static function flattenHeaders(array $headers): array
    {
        $out = [];
        foreach ($headers as $name => $hv) {
            $out[(string) $name] = $hv['value'] ?? [];
        }

        return $out;
    }
}

/** goridge RPC client (net/rpc framing) over a TCP or unix stream socket. */
final class RPCClient
{
    /** process-wide sequence counter, starts at 1 */
    private static int $seq = 1;

    /** @var resource */
    private $socket;

    public function __construct(
        public readonly string $address,
        float $connectTimeout = 5.0,
        float $ioTimeout = 65.0,
    ) {
        $uri = self::normaliseAddress($address);
        $errno = 0;
        $errstr = '';
        $s = @\stream_socket_client($uri, $errno, $errstr, $connectTimeout);
        if ($s === false) {
            throw new GoridgeException("unable to connect to $uri: $errstr ($errno)");
        }
        \stream_set_blocking($s, true);
        $sec = (int) $ioTimeout;
        \stream_set_timeout($s, $sec, (int) (($ioTimeout - $sec) * 1e6));
        $this->socket = $s;
    }

    public static function normaliseAddress(string $address): string
    {
        if (\str_contains($address, '://')) {
            return $address;
        }

        return 'tcp://' . $address;
    }

    public function close(): void
    {
        if (\is_resource($this->socket)) {
            \fclose($this->socket);
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    /**
     * Low-level call: send method . body with the given codec flags, return the reply body
     * (method prefix stripped). Throws ServiceException when the server answers with an ERROR frame.
     */
    public function call(string $method, string $body, int $flags = Frame::CODEC_PROTO): string
    {
        $seq = self::$seq++;
        FrameIO::write($this->socket, new Frame($method . $body, [$seq, \strlen($method)], $flags));

        $resp = FrameIO::read($this->socket);
        if ($resp === null) {
            throw new GoridgeException("connection closed while waiting for the reply to $method");
        }
        if (\count($resp->options) !== 2) {
            throw new GoridgeException(\sprintf('invalid RPC reply: %d options', \count($resp->options)));
        }
        if ($resp->options[0] !== $seq) {
            throw new GoridgeException(\sprintf('RPC reply sequence mismatch: got %d, want %d', $resp->options[0], $seq));
        }
        $data = (string) \substr($resp->payload, $resp->options[1]);
        if ($resp->has(Frame::ERROR)) {
            throw new ServiceException($data);
        }

        return $data;
    }

    /** Protobuf call: encode $request as $reqType (null = empty body), decode the reply as $respType. */
    public function callProto(string $method, string $reqType, ?array $request, string $respType): array
    {
        $body = $request === null ? '' : Proto::encode($reqType, $request);

        return Proto::decode($respType, $this->call($method, $body, Frame::CODEC_PROTO));
    }
}

/** RFC 4122 version 4 UUID string. */
function uuid4(): string
{
    $b = \random_bytes(16);
    $b[6] = \chr((\ord($b[6]) & 0x0F) | 0x40);
    $b[8] = \chr((\ord($b[8]) & 0x3F) | 0x80);
    $h = \bin2hex($b);

    return \sprintf('%s-%s-%s-%s-%s', \substr($h, 0, 8), \substr($h, 8, 4), \substr($h, 12, 4), \substr($h, 16, 4), \substr($h, 20));
}
