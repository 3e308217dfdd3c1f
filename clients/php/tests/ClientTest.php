<?php

declare(strict_types=1);

namespace PhaseNode\Tests;

use PhaseNode\Client;
use PhaseNode\PhaseNodeException;
use PhaseNode\Receipt;
use PhaseNode\ReceiptException;
use PHPUnit\Framework\TestCase;

/**
 * The PHP client against real daemons: a job in, its verified result out;
 * a tampered receipt refused; bad jobs reported with the daemon's line;
 * the example run as a user runs it.
 */
final class ClientTest extends TestCase
{
    private static ?Network $network = null;

    public static function setUpBeforeClass(): void
    {
        self::$network = new Network();
    }

    public static function tearDownAfterClass(): void
    {
        self::$network?->stop();
        self::$network = null;
    }

    private static function client(): Client
    {
        return new Client(['socket' => self::$network->requester->socket]);
    }

    public function testHelloRunsAndItsReceiptVerifies(): void
    {
        $result = self::client()->createJob(Network::hello())
            ->withMemory(64)
            ->withTimeout(30)
            ->submit('Hello, World');
        $this->assertSame("dlroW ,olleH\n", $result->stdout());
        $this->assertSame('', $result->stderr());
        $this->assertSame(0, $result->exitCode());
        $this->assertSame('exited with code 0', $result->status());
        $this->assertStringStartsWith('bafy', $result->resultCid());
        $worker = (new Client(['socket' => self::$network->worker->socket]))->id()['peer_id'];
        $this->assertSame($worker, $result->worker());
        $this->assertTrue($result->receipt()->verify());
        $this->assertSame($result->job(), $result->receipt()->job());
        $this->assertSame($result->resultCid(), $result->receipt()->result());
    }

    public function testALocalDirectoryIsTheJobsInput(): void
    {
        $dir = sys_get_temp_dir() . '/phase-texts-' . bin2hex(random_bytes(4));
        mkdir("$dir/sub", 0700, true);
        file_put_contents("$dir/a.txt", 'one two three');
        file_put_contents("$dir/sub/b.txt", "four\nfive");
        try {
            $wordcount = dirname(Network::hello()) . '/wordcount.wasm';
            $result = self::client()->createJob($wordcount)->withInput($dir)->submit();
            $this->assertSame("3 a.txt\n2 sub/b.txt\nTOTAL 5\n", $result->stdout(), $result->stderr());
            $this->assertTrue($result->receipt()->verify());
        } finally {
            exec('rm -rf ' . escapeshellarg($dir));
        }
    }

    public function testATamperedReceiptIsRefused(): void
    {
        $r = self::client()->createJob(Network::hello())->submit('tamper with me')->receipt();
        $this->assertTrue($r->verify());
        // One byte of what was signed changed: the signature no longer holds.
        $flipped = $r->signedBytes;
        $flipped[-1] = chr(ord($flipped[-1]) ^ 1);
        $this->assertRefused('signature does not hold', new Receipt($r->fields, $r->cid, $flipped, $r->signature, $r->publicKey));
        // The signature changed.
        $signature = $r->signature;
        $signature[0] = chr(ord($signature[0]) ^ 1);
        $this->assertRefused('signature does not hold', new Receipt($r->fields, $r->cid, $r->signedBytes, $signature, $r->publicKey));
        // The daemon's report changed (another result): the signed bytes say otherwise.
        $other = array_merge($r->fields, ['result' => 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy']);
        $this->assertRefused('another result', new Receipt($other, $r->cid, $r->signedBytes, $r->signature, $r->publicKey));
        $more = array_merge($r->fields, ['fuel_consumed' => $r->fuelConsumed() + 1]);
        $this->assertRefused('another fuel_consumed', new Receipt($more, $r->cid, $r->signedBytes, $r->signature, $r->publicKey));
        // Another key than the worker's.
        $this->assertRefused('not the one worker', new Receipt($r->fields, $r->cid, $r->signedBytes, $r->signature, str_repeat("\0", 32)));
        // A receipt that names another worker: its key is not the one given.
        $requester = self::client()->id()['peer_id'];
        $stranger = array_merge($r->fields, ['worker' => $requester]);
        $this->assertRefused('not the one worker', new Receipt($stranger, $r->cid, $r->signedBytes, $r->signature, $r->publicKey));
    }

    private function assertRefused(string $says, Receipt $receipt): void
    {
        try {
            $receipt->verify();
            $this->fail("a tampered receipt verified (expected: $says)");
        } catch (ReceiptException $e) {
            $this->assertStringContainsString($says, $e->getMessage());
            $this->assertSame('bad_receipt', $e->errorCode());
        }
    }

    public function testBadJobsAreReportedWithTheDaemonsLine(): void
    {
        $missing = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy';
        try {
            self::client()->createJob($missing)->submit('x');
            $this->fail('a job with a missing module was accepted');
        } catch (PhaseNodeException $e) {
            $this->assertSame("job.module: $missing is not in this node's store (upload it with POST /api/v1/add)", $e->getMessage());
            $this->assertSame('bad_request', $e->errorCode());
            $this->assertSame(400, $e->status());
        }
        try {
            self::client()->createJob(Network::hello())->withMemory(1 << 30)->submit('x');
            $this->fail('a job asking for 1 PiB was accepted');
        } catch (PhaseNodeException $e) {
            $this->assertStringStartsWith('job.limits', $e->getMessage());
            $this->assertSame('bad_request', $e->errorCode());
        }
        try {
            self::client()->createJob('/no/such/module.wasm')->submit('x');
            $this->fail('a module file that does not exist was accepted');
        } catch (PhaseNodeException $e) {
            $this->assertStringContainsString('/no/such/module.wasm', $e->getMessage());
        }
    }

    public function testAnUnreachableDaemonIsOneError(): void
    {
        $client = new Client(['socket' => sys_get_temp_dir() . '/nobody-' . bin2hex(random_bytes(4)) . '.sock']);
        try {
            $client->peers();
            $this->fail('a daemon that is not there answered');
        } catch (PhaseNodeException $e) {
            $this->assertStringStartsWith('cannot reach the daemon', $e->getMessage());
            $this->assertSame('unreachable', $e->errorCode());
        }
    }

    public function testTheExampleRunsAsWritten(): void
    {
        [$code, $out, $err] = run(
            [PHP_BINARY, dirname(__DIR__) . '/examples/submit.php', Network::hello()],
            ['PHASE_DATA_DIR' => self::$network->requester->data],
        );
        $this->assertSame(0, $code, $err);
        $this->assertStringStartsWith("dlroW ,olleH\nreceipt verified: worker 12D3KooW", $out);
    }
}
