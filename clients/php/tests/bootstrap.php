<?php

declare(strict_types=1);

// The package's own Composer autoloader (`composer dump-autoload` makes it;
// the test command runs that), then the daemons the tests talk to.
require __DIR__ . '/../vendor/autoload.php';
require __DIR__ . '/Network.php';
