<?php

declare(strict_types=1);

namespace PhaseNode\Tests;

/**
 * A worker daemon and a requester daemon bootstrapped from it, for the
 * client to talk to, on loopback only. The phase-node binary is
 * `$PHASE_NODE`, else the one on the PATH.
 */
final class Network
{
    private const DEADLINE = 120.0;

    public readonly string $dir;
    public readonly Daemon $worker;
    public readonly Daemon $requester;

    public function __construct()
    {
        $this->dir = sys_get_temp_dir() . '/phase-php-' . bin2hex(random_bytes(6));
        mkdir($this->dir, 0700, true);
        $this->worker = new Daemon($this->dir . '/w', []);
        $this->requester = new Daemon($this->dir . '/r', ['--no-worker', '--bootstrap', $this->worker->addr]);
        [$code, , $err] = $this->requester->cli(['peers', '--wait', '1']);
        if ($code !== 0) {
            $this->stop();
            throw new \RuntimeException("the requester found no peer: $err");
        }
    }

    public static function binary(): string
    {
        $found = getenv('PHASE_NODE') ?: trim((string) shell_exec('command -v phase-node'));
        if ($found === '') {
            throw new \RuntimeException('set PHASE_NODE to the phase-node binary (or put it on the PATH)');
        }
        return $found;
    }

    public static function hello(): string
    {
        $path = getenv('HELLO_WASM') ?: dirname(__DIR__, 3) . '/wasm-examples/out/hello.wasm';
        if (!is_file($path)) {
            throw new \RuntimeException("build the guests first (scripts/build-wasm-examples.sh): $path");
        }
        return $path;
    }

    public function stop(): void
    {
        $this->requester->stop();
        $this->worker->stop();
        exec('rm -rf ' . escapeshellarg($this->dir));
    }

    public static function deadline(): float
    {
        return microtime(true) + self::DEADLINE;
    }
}

/** One `phase-node start`, its first address and its API socket. */
final class Daemon
{
    /** @var resource */
    private $process;
    public readonly string $addr;
    public readonly string $socket;

    /** @param list<string> $extra */
    public function __construct(public readonly string $data, array $extra)
    {
        $command = array_merge(
            [Network::binary(), '--data-dir', $data, 'start', '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--slots', '1'],
            $extra,
        );
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        if ($process === false) {
            throw new \RuntimeException('cannot start phase-node');
        }
        $this->process = $process;
        // The first line of stdout is its first address, once it listens.
        $this->addr = trim((string) fgets($pipes[1]));
        if ($this->addr === '') {
            throw new \RuntimeException('phase-node start exited');
        }
        $this->socket = $data . '/api.sock';
        $deadline = Network::deadline();
        while (!file_exists($this->socket)) {
            if (microtime(true) > $deadline) {
                throw new \RuntimeException("the daemon's API socket never appeared");
            }
            usleep(50_000);
        }
    }

    /**
     * Runs `phase-node --data-dir DATA ARGS…`: exit code, stdout, stderr.
     *
     * @param list<string> $args
     * @param array<string, string> $env
     * @return array{int, string, string}
     */
    public function cli(array $args, array $env = []): array
    {
        return run(array_merge([Network::binary(), '--data-dir', $this->data], $args), $env);
    }

    public function stop(): void
    {
        proc_terminate($this->process);
        $deadline = microtime(true) + 10;
        while (proc_get_status($this->process)['running']) {
            if (microtime(true) > $deadline) {
                proc_terminate($this->process, 9);
                break;
            }
            usleep(20_000);
        }
        proc_close($this->process);
    }
}

/**
 * Runs a command to its end with no stdin: exit code, stdout, stderr.
 *
 * @param list<string> $command
 * @param array<string, string> $env added to this process's environment
 * @return array{int, string, string}
 */
function run(array $command, array $env = []): array
{
    $process = proc_open(
        $command,
        [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
        $pipes,
        null,
        array_merge(getenv(), $env),
    );
    if ($process === false) {
        throw new \RuntimeException('cannot run ' . $command[0]);
    }
    $out = stream_get_contents($pipes[1]);
    $err = stream_get_contents($pipes[2]);
    fclose($pipes[1]);
    fclose($pipes[2]);
    return [proc_close($process), (string) $out, (string) $err];
}
