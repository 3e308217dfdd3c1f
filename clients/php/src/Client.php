<?php

declare(strict_types=1);

namespace PhaseNode;

/**
 * A phase-node daemon, through its HTTP API: `new Client(['socket' => PATH])`
 * (the data dir's `api.sock`) or `new Client(['url' => 'http://127.0.0.1:5001',
 * 'token' => ...])` (`phase-node start --api`, the token in
 * `<data-dir>/api.token`). Without either: `$PHASE_DATA_DIR/api.sock`, else
 * the default data dir's.
 */
final class Client
{
    /** Longest one API call may take, in seconds. */
    public const CALL_TIMEOUT = 120.0;
    /** Pause between asks while a job runs, in seconds. */
    public const POLL = 0.1;
    /** Largest answer read from the daemon (a result carries up to 1 MiB of each output). */
    private const MAX_ANSWER = 16 * 1024 * 1024;

    private ?string $socket = null;
    private ?string $url = null;
    private ?string $token = null;
    private float $timeout;
    /** @var array<string, string> uploaded files (path, size, mtime) → CID */
    private array $uploaded = [];

    /** @param array{socket?: string, url?: string, token?: string, timeout?: float} $options */
    public function __construct(array $options = [])
    {
        $unknown = array_diff(array_keys($options), ['socket', 'url', 'token', 'timeout']);
        if ($unknown !== []) {
            throw new \InvalidArgumentException('unknown option ' . implode(', ', $unknown) . '; expected socket, url, token or timeout');
        }
        $this->timeout = (float) ($options['timeout'] ?? self::CALL_TIMEOUT);
        if (isset($options['url'])) {
            if (!isset($options['token']) || $options['token'] === '') {
                throw new \InvalidArgumentException('a TCP API needs its token (<data-dir>/api.token)');
            }
            $this->url = rtrim($options['url'], '/');
            $this->token = $options['token'];
            return;
        }
        $socket = $options['socket'] ?? null;
        if ($socket === null) {
            $data = getenv('PHASE_DATA_DIR') ?: ((getenv('HOME') ?: '.') . '/.local/share/phase-node');
            $socket = $data . '/api.sock';
        }
        $this->socket = $socket;
    }

    /**
     * One API call: the decoded JSON answer. An error answer throws
     * PhaseNodeException with the daemon's message and code.
     *
     * @param array<mixed>|null $json a body sent as JSON
     * @param string|resource|null $raw a body sent as it is: bytes, or an open file streamed from where it is
     * @return array<mixed>
     */
    public function request(string $method, string $path, ?array $json = null, mixed $raw = null): array
    {
        $headers = [];
        $body = $raw;
        if ($json !== null) {
            $body = json_encode($json, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
            $headers[] = 'Content-Type: application/json';
        }
        if ($this->token !== null) {
            $headers[] = 'Authorization: Bearer ' . $this->token;
        }
        $curl = curl_init(($this->url ?? 'http://localhost') . $path);
        $answer = '';
        $options = [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_TIMEOUT_MS => (int) ($this->timeout * 1000),
            CURLOPT_WRITEFUNCTION => static function ($curl, string $chunk) use (&$answer): int {
                if (strlen($answer) + strlen($chunk) > self::MAX_ANSWER) {
                    return 0;
                }
                $answer .= $chunk;
                return strlen($chunk);
            },
        ];
        if ($this->socket !== null) {
            $options[CURLOPT_UNIX_SOCKET_PATH] = $this->socket;
        }
        if (is_resource($body)) {
            $stat = fstat($body);
            $headers[] = 'Content-Type: application/octet-stream';
            $options[CURLOPT_HTTPHEADER] = $headers;
            $options[CURLOPT_UPLOAD] = true;
            $options[CURLOPT_INFILE] = $body;
            $options[CURLOPT_INFILESIZE] = $stat === false ? -1 : $stat['size'] - ftell($body);
        } elseif ($body !== null) {
            $options[CURLOPT_POSTFIELDS] = $body;
        }
        curl_setopt_array($curl, $options);
        $ok = curl_exec($curl);
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $error = curl_error($curl);
        curl_close($curl);
        if ($ok === false) {
            if (strlen($answer) >= self::MAX_ANSWER) {
                throw new PhaseNodeException('the daemon\'s answer is larger than ' . self::MAX_ANSWER . ' bytes', 'bad_answer', $status);
            }
            throw new PhaseNodeException("cannot reach the daemon: $error", 'unreachable');
        }
        try {
            $decoded = $answer === '' ? [] : json_decode($answer, true, 64, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new PhaseNodeException("the daemon's answer is not JSON ($status)", 'bad_answer', $status, $e);
        }
        if (!is_array($decoded)) {
            throw new PhaseNodeException("the daemon's answer is not a JSON object ($status)", 'bad_answer', $status);
        }
        if ($status >= 400) {
            $error = is_array($decoded['error'] ?? null) ? $decoded['error'] : [];
            throw new PhaseNodeException(
                (string) ($error['message'] ?? "HTTP $status"),
                (string) ($error['code'] ?? 'error'),
                $status,
            );
        }
        return $decoded;
    }

    /**
     * Uploads a file into the daemon's store (pinned) and returns its CID. A
     * file unchanged since this client last uploaded it is not sent again.
     */
    public function add(string $path): string
    {
        clearstatcache(true, $path);
        $stat = @stat($path);
        if ($stat === false || !is_file($path)) {
            throw new PhaseNodeException("cannot read $path: no such file", 'bad_request');
        }
        $key = (realpath($path) ?: $path) . "\0" . $stat['size'] . "\0" . $stat['mtime'];
        if (!isset($this->uploaded[$key])) {
            $bytes = file_get_contents($path);
            if ($bytes === false) {
                throw new PhaseNodeException("cannot read $path", 'bad_request');
            }
            $this->uploaded[$key] = (string) $this->request('POST', '/api/v1/add', null, $bytes)['cid'];
        }
        return $this->uploaded[$key];
    }

    /**
     * Uploads a directory (its regular files, as a tar archive the daemon
     * makes a UnixFS directory of; pinned) and returns its CID. Empty
     * folders are left out.
     */
    public function addDirectory(string $path): string
    {
        if (!is_dir($path)) {
            throw new PhaseNodeException("$path is not a directory", 'bad_request');
        }
        $tar = tempnam(sys_get_temp_dir(), 'phase-') ?: throw new PhaseNodeException('cannot make a temporary file');
        unlink($tar);
        $tar .= '.tar';
        try {
            (new \PharData($tar))->buildFromDirectory($path);
            $file = fopen($tar, 'rb') ?: throw new PhaseNodeException("cannot read $tar");
            try {
                // Streamed from the file, not read into memory first.
                return (string) $this->request('POST', '/api/v1/add?format=tar', null, $file)['cid'];
            } finally {
                fclose($file);
            }
        } catch (\UnexpectedValueException | \PharException $e) {
            throw new PhaseNodeException("cannot pack $path: {$e->getMessage()}", 'bad_request', 0, $e);
        } finally {
            @unlink($tar);
        }
    }

    /** A job running `$module`: a `.wasm` file (uploaded on submit) or the CID of one in the daemon's store. */
    public function createJob(string $module): Job
    {
        return new Job($this, $module);
    }

    /**
     * `GET /api/v1/jobs/{job}/result`: where the job is, and once done what it gave.
     *
     * @return array<mixed>
     */
    public function result(string $job): array
    {
        return $this->request('GET', '/api/v1/jobs/' . rawurlencode($job) . '/result');
    }

    /** Waits up to `$timeout` seconds for a job submitted through this daemon to end. */
    public function wait(string $job, float $timeout = 300.0): Result
    {
        $deadline = microtime(true) + $timeout;
        while (true) {
            $answer = $this->result($job);
            switch ($answer['state'] ?? null) {
                case 'done':
                    return Result::fromAnswer($job, $answer);
                case 'failed':
                    throw new PhaseNodeException((string) ($answer['error'] ?? 'the job failed'), 'job_failed');
            }
            if (microtime(true) > $deadline) {
                throw new PhaseNodeException(sprintf('job %s did not end within %.0f s', $job, $timeout), 'timeout');
            }
            usleep((int) (self::POLL * 1e6));
        }
    }

    /**
     * The daemon's identity (`GET /api/v1/id`).
     *
     * @return array<mixed>
     */
    public function id(): array
    {
        return $this->request('GET', '/api/v1/id');
    }

    /**
     * The daemon's peers (`GET /api/v1/peers`).
     *
     * @return array<mixed>
     */
    public function peers(): array
    {
        return $this->request('GET', '/api/v1/peers');
    }
}
