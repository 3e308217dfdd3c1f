<?php

declare(strict_types=1);

namespace PhaseNode;

/** A job being described; `submit()` sends it. Every `with…` returns the job, so calls chain. */
final class Job
{
    /** @var array<string, int|string> */
    private array $limits = [];
    /** @var list<string> */
    private array $args = [];
    /** @var array<string, string> */
    private array $env = [];
    private ?string $input = null;
    private bool $deterministic = true;

    public function __construct(private readonly Client $client, private readonly string $module)
    {
    }

    /** Memory limit, in MiB. */
    public function withMemory(int $mib): self
    {
        $this->limits['memory'] = $mib . 'MiB';
        return $this;
    }

    /** Wall-time limit, in seconds. */
    public function withTimeout(float $seconds): self
    {
        $this->limits['timeout'] = (int) round($seconds * 1000) . 'ms';
        return $this;
    }

    /** Fuel limit (wasm instructions, roughly). */
    public function withFuel(int $fuel): self
    {
        $this->limits['fuel'] = $fuel;
        return $this;
    }

    /** Cap on stdout, stderr and output/, each, in MiB. */
    public function withMaxOutput(int $mib): self
    {
        $this->limits['max_output'] = $mib . 'MiB';
        return $this;
    }

    /** The directory mounted at /input: a local directory (uploaded on submit) or the CID of one in the daemon's store. */
    public function withInput(string $directory): self
    {
        $this->input = $directory;
        return $this;
    }

    /** @param array<string, string> $env environment variables the guest sees */
    public function withEnv(array $env): self
    {
        $this->env = [];
        foreach ($env as $name => $value) {
            $this->env[(string) $name] = (string) $value;
        }
        return $this;
    }

    /** @param list<string> $args the guest's arguments */
    public function withArgs(array $args): self
    {
        $this->args = array_map('strval', array_values($args));
        return $this;
    }

    /** Lets the job read the clock and randomness (its result cannot be rerun). */
    public function nondeterministic(): self
    {
        $this->deterministic = false;
        return $this;
    }

    /**
     * The job as `POST /api/v1/jobs` takes it (uploads the module file).
     *
     * @return array<string, mixed>
     */
    public function spec(?string $stdin = null): array
    {
        $module = $this->module;
        if (is_file($module)) {
            $module = $this->client->add($module);
        }
        $job = ['module' => $module, 'deterministic' => $this->deterministic];
        if ($stdin !== null) {
            $job['stdin'] = ['text' => $stdin];
        }
        if ($this->input !== null) {
            $job['input'] = is_dir($this->input) ? $this->client->addDirectory($this->input) : $this->input;
        }
        if ($this->args !== []) {
            $job['args'] = $this->args;
        }
        if ($this->env !== []) {
            // An object even when the names look like numbers.
            $job['env'] = (object) $this->env;
        }
        if ($this->limits !== []) {
            $job['limits'] = $this->limits;
        }
        return $job;
    }

    /** Submits the job and returns its id at once; `Client::wait($id)` waits for it. */
    public function start(?string $stdin = null, float $timeout = 300.0): string
    {
        $body = ['job' => $this->spec($stdin), 'timeout' => (int) ceil($timeout) . 's', 'wait' => false];
        return (string) $this->client->request('POST', '/api/v1/jobs', $body)['job'];
    }

    /** Submits the job with `$stdin` and waits (up to `$timeout` seconds) for its result. */
    public function submit(?string $stdin = null, float $timeout = 300.0): Result
    {
        return $this->client->wait($this->start($stdin, $timeout), $timeout);
    }
}
