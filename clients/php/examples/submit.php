<?php

// Submits hello.wasm with "Hello, World" on stdin through the daemon of
// $PHASE_DATA_DIR (default ~/.local/share/phase-node), prints what it
// wrote and checks the worker's signature here, in PHP:
//
//     php examples/submit.php [path/to/hello.wasm]

declare(strict_types=1);

require __DIR__ . '/../vendor/autoload.php';

use PhaseNode\Client;
use PhaseNode\PhaseNodeException;

$module = $argv[1] ?? __DIR__ . '/../../../wasm-examples/out/hello.wasm';
try {
    $client = new Client();
    $result = $client->createJob($module)
        ->withMemory(64)
        ->withTimeout(30)
        ->submit('Hello, World');
    echo $result->stdout();
    if ($result->receipt()->verify()) {
        echo "receipt verified: worker {$result->worker()} signed result {$result->resultCid()}\n";
    }
} catch (PhaseNodeException $e) {
    fwrite(STDERR, "error: {$e->getMessage()}\n");
    exit(1);
}
