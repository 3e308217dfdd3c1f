<?php

declare(strict_types=1);

namespace PhaseNode;

/**
 * The daemon refused or failed a request, or could not be reached: the
 * daemon's one-line message, its error code (`bad_request`, `not_found`,
 * `unreachable`, `job_failed`, `timeout`, …) and the HTTP status (0 when
 * there was none).
 */
class PhaseNodeException extends \RuntimeException
{
    public function __construct(
        string $message,
        private readonly string $errorCode = 'error',
        private readonly int $status = 0,
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, 0, $previous);
    }

    public function errorCode(): string
    {
        return $this->errorCode;
    }

    public function status(): int
    {
        return $this->status;
    }
}
