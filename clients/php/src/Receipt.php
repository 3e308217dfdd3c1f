<?php

declare(strict_types=1);

namespace PhaseNode;

/**
 * A worker's signed statement of a run, as the daemon reported it, and its
 * check in PHP itself: the ed25519 signature (libsodium) over the exact
 * bytes the worker signed (`phase-receipt-v1`, then the receipt's canonical
 * DAG-CBOR), with the key the worker's PeerId holds, and those bytes decoded
 * to confirm they name the job, worker, result and fuel the daemon reported.
 * Nothing here trusts the daemon.
 */
final class Receipt
{
    /** What a worker signs before the receipt's canonical DAG-CBOR. */
    public const DOMAIN = 'phase-receipt-v1';
    /** Largest signed receipt this decodes. */
    public const MAX_SIGNED = 64 * 1024;

    /**
     * @param array<string, mixed> $fields the receipt's fields (`job`, `worker`, `result`, `fuel_consumed`, …)
     * @param string $cid the receipt's CID
     * @param string $signedBytes what the worker signed
     * @param string $signature the ed25519 signature (64 bytes)
     * @param string $publicKey the key the daemon says signed (32 bytes)
     */
    public function __construct(
        public readonly array $fields,
        public readonly string $cid,
        public readonly string $signedBytes,
        public readonly string $signature,
        public readonly string $publicKey,
    ) {
    }

    /** @param array<mixed> $answer a `GET /api/v1/jobs/{id}/result` answer in state `done` */
    public static function fromAnswer(array $answer): self
    {
        $decode = static function (string $field) use ($answer): string {
            $bytes = is_string($answer[$field] ?? null) ? base64_decode($answer[$field], true) : false;
            if ($bytes === false) {
                throw new ReceiptException("the daemon's answer carries no whole receipt: $field is not base64");
            }
            return $bytes;
        };
        $fields = $answer['receipt']['receipt'] ?? null;
        if (!is_array($fields) || !is_string($answer['receipt_cid'] ?? null)) {
            throw new ReceiptException("the daemon's answer carries no whole receipt");
        }
        return new self($fields, $answer['receipt_cid'], $decode('signed_bytes'), $decode('signature'), $decode('public_key'));
    }

    public function job(): string
    {
        return (string) ($this->fields['job'] ?? '');
    }

    public function worker(): string
    {
        return (string) ($this->fields['worker'] ?? '');
    }

    public function result(): string
    {
        return (string) ($this->fields['result'] ?? '');
    }

    public function fuelConsumed(): int
    {
        return (int) ($this->fields['fuel_consumed'] ?? 0);
    }

    /**
     * True if the worker signed exactly this receipt; else throws
     * ReceiptException saying what does not hold.
     */
    public function verify(): bool
    {
        $worker = $this->worker();
        $key = self::peerKey($worker);
        if (!hash_equals($key, $this->publicKey)) {
            throw new ReceiptException("the key given is not the one worker $worker holds");
        }
        if (strlen($this->signedBytes) > self::MAX_SIGNED || !str_starts_with($this->signedBytes, self::DOMAIN)) {
            throw new ReceiptException('the signed bytes are not a phase receipt');
        }
        if (strlen($this->signature) !== SODIUM_CRYPTO_SIGN_BYTES
            || !sodium_crypto_sign_verify_detached($this->signature, $this->signedBytes, $key)) {
            throw new ReceiptException("the signature does not hold for worker $worker");
        }
        $at = strlen(self::DOMAIN);
        $signed = Cbor::decode($this->signedBytes, $at);
        if ($at !== strlen($this->signedBytes) || !is_array($signed)) {
            throw new ReceiptException('the signed bytes are not one receipt');
        }
        $checks = [
            'job' => self::cidBytes($this->job()),
            'worker' => self::base58($worker),
            'result' => self::cidBytes($this->result()),
            'fuel_consumed' => $this->fuelConsumed(),
        ];
        foreach ($checks as $name => $expected) {
            if (($signed[$name] ?? null) !== $expected) {
                throw new ReceiptException("the signed receipt says another $name than the daemon reported");
            }
        }
        return true;
    }

    /** The ed25519 public key a PeerId holds (an identity multihash of the protobuf-encoded key). */
    public static function peerKey(string $peerId): string
    {
        $raw = self::base58($peerId);
        // 0x00 identity multihash, 36 bytes: 0x08 0x01 (ed25519), 0x12 0x20, the key.
        if (strlen($raw) !== 38 || !str_starts_with($raw, "\x00\x24\x08\x01\x12\x20")) {
            throw new ReceiptException("worker $peerId does not hold an ed25519 key");
        }
        return substr($raw, 6);
    }

    /** Bitcoin-alphabet base58, as PeerIds are written. */
    private static function base58(string $text): string
    {
        static $alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
        if ($text === '' || strlen($text) > 128) {
            throw new ReceiptException("`$text` is not a PeerId");
        }
        $bytes = []; // little-endian base-256 digits
        foreach (str_split($text) as $char) {
            $carry = strpos($alphabet, $char);
            if ($carry === false) {
                throw new ReceiptException("`$text` is not base58");
            }
            foreach ($bytes as $i => $byte) {
                $carry += $byte * 58;
                $bytes[$i] = $carry & 0xff;
                $carry >>= 8;
            }
            while ($carry > 0) {
                $bytes[] = $carry & 0xff;
                $carry >>= 8;
            }
        }
        $zeros = strlen($text) - strlen(ltrim($text, '1'));
        return str_repeat("\0", $zeros) . implode('', array_map('chr', array_reverse($bytes)));
    }

    /** A CIDv1 string (multibase base32, `b…`) as its bytes. */
    public static function cidBytes(string $cid): string
    {
        if (!str_starts_with($cid, 'b') || strlen($cid) > 256) {
            throw new ReceiptException("`$cid` is not a base32 CIDv1");
        }
        $alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
        $bits = 0;
        $value = 0;
        $out = '';
        foreach (str_split(substr($cid, 1)) as $char) {
            $digit = strpos($alphabet, $char);
            if ($digit === false) {
                throw new ReceiptException("`$cid` is not a base32 CIDv1");
            }
            $value = (($value << 5) | $digit) & 0xfff;
            $bits += 5;
            if ($bits >= 8) {
                $bits -= 8;
                $out .= chr(($value >> $bits) & 0xff);
            }
        }
        return $out;
    }
}
