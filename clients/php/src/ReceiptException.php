<?php

declare(strict_types=1);

namespace PhaseNode;

/** A receipt that does not verify: the message says what does not hold. */
final class ReceiptException extends PhaseNodeException
{
    public function __construct(string $message)
    {
        parent::__construct($message, 'bad_receipt');
    }
}
