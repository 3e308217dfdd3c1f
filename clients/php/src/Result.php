<?php

declare(strict_types=1);

namespace PhaseNode;

/** A finished job: its outputs, exit code, result CID and the worker's signed receipt. */
final class Result
{
    public function __construct(
        private readonly string $job,
        private readonly string $stdout,
        private readonly string $stderr,
        private readonly ?int $exitCode,
        private readonly string $status,
        private readonly string $resultCid,
        private readonly string $worker,
        private readonly Receipt $receipt,
    ) {
    }

    /** @param array<mixed> $answer a `GET /api/v1/jobs/{id}/result` answer in state `done` */
    public static function fromAnswer(string $job, array $answer): self
    {
        foreach (['stdout', 'stderr', 'status', 'result', 'worker'] as $field) {
            if (!is_string($answer[$field] ?? null)) {
                throw new PhaseNodeException("the daemon's answer has no $field", 'bad_answer');
            }
        }
        return new self(
            $job,
            $answer['stdout'],
            $answer['stderr'],
            isset($answer['exit_code']) ? (int) $answer['exit_code'] : null,
            $answer['status'],
            $answer['result'],
            $answer['worker'],
            Receipt::fromAnswer($answer),
        );
    }

    public function job(): string
    {
        return $this->job;
    }

    /** What the job wrote to stdout (the first 1 MiB). */
    public function stdout(): string
    {
        return $this->stdout;
    }

    /** What the job wrote to stderr (the first 1 MiB). */
    public function stderr(): string
    {
        return $this->stderr;
    }

    /** The guest's exit code; null when it did not exit (a trap, a limit). */
    public function exitCode(): ?int
    {
        return $this->exitCode;
    }

    /** How the run ended, in words (`exited with code 0`, `out of fuel`, …). */
    public function status(): string
    {
        return $this->status;
    }

    /** The CID of the result directory (stdout, stderr, output/). */
    public function resultCid(): string
    {
        return $this->resultCid;
    }

    /** The PeerId of the worker that ran it. */
    public function worker(): string
    {
        return $this->worker;
    }

    public function receipt(): Receipt
    {
        return $this->receipt;
    }
}
