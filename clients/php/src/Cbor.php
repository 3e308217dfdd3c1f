<?php

declare(strict_types=1);

namespace PhaseNode;

/**
 * The DAG-CBOR a receipt uses, decoded: integers, byte and text strings,
 * arrays, maps, booleans, null, and CIDs (tag 42, returned as the CID's
 * bytes). Indefinite lengths and floats are refused; depth is capped.
 *
 * @internal
 */
final class Cbor
{
    private const MAX_DEPTH = 16;

    /** Decodes one item at `$at` and moves `$at` past it. */
    public static function decode(string $data, int &$at, int $depth = 0): mixed
    {
        if ($depth > self::MAX_DEPTH) {
            throw new ReceiptException('the signed bytes nest too deep');
        }
        $head = ord(self::take($data, $at, 1));
        $major = $head >> 5;
        $info = $head & 0x1f;
        if ($info < 24) {
            $arg = $info;
        } elseif ($info <= 27) {
            $size = 1 << ($info - 24);
            $arg = 0;
            foreach (str_split(self::take($data, $at, $size)) as $byte) {
                if ($arg > (PHP_INT_MAX >> 8)) {
                    throw new ReceiptException('a number in the signed bytes is too large');
                }
                $arg = ($arg << 8) | ord($byte);
            }
        } else {
            throw new ReceiptException('the signed bytes are not canonical DAG-CBOR');
        }
        switch ($major) {
            case 0:
                return $arg;
            case 1:
                return -1 - $arg;
            case 2:
            case 3:
                return self::take($data, $at, $arg);
            case 4:
                self::fits($data, $at, $arg);
                $items = [];
                for ($i = 0; $i < $arg; $i++) {
                    $items[] = self::decode($data, $at, $depth + 1);
                }
                return $items;
            case 5:
                self::fits($data, $at, $arg);
                $map = [];
                for ($i = 0; $i < $arg; $i++) {
                    $key = self::decode($data, $at, $depth + 1);
                    if (!is_string($key)) {
                        throw new ReceiptException('a map key in the signed bytes is not a string');
                    }
                    $map[$key] = self::decode($data, $at, $depth + 1);
                }
                return $map;
            case 6:
                if ($arg !== 42) {
                    break;
                }
                $cid = self::decode($data, $at, $depth + 1);
                if (!is_string($cid) || !str_starts_with($cid, "\0")) {
                    throw new ReceiptException('a CID in the signed bytes is malformed');
                }
                return substr($cid, 1);
            case 7:
                return match ($info) {
                    20 => false,
                    21 => true,
                    22 => null,
                    default => throw new ReceiptException('the signed bytes are not DAG-CBOR a receipt uses'),
                };
        }
        throw new ReceiptException('the signed bytes are not DAG-CBOR a receipt uses');
    }

    private static function take(string $data, int &$at, int $length): string
    {
        self::fits($data, $at, $length);
        $chunk = substr($data, $at, $length);
        $at += $length;
        return $chunk;
    }

    /** At least `$count` more bytes are there (each item takes one or more). */
    private static function fits(string $data, int $at, int $count): void
    {
        if ($count < 0 || $count > strlen($data) - $at) {
            throw new ReceiptException('the signed bytes end early');
        }
    }
}
