"""A job's signed receipt, and its check: the ed25519 signature over the
exact bytes the worker signed, with the key the worker's PeerId holds, and
those bytes decoded to confirm they say what the daemon reported."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: What a worker signs before the receipt's canonical DAG-CBOR.
DOMAIN = b"phase-receipt-v1"
#: Largest signed receipt a client decodes.
MAX_SIGNED = 64 * 1024

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class ReceiptError(Exception):
    """The receipt does not verify: one line says why."""


def _b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        i = _B58.find(ch)
        if i < 0:
            raise ReceiptError(f"`{text}` is not base58")
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + body


def peer_key(peer_id: str) -> bytes:
    """The ed25519 public key a PeerId holds (identity multihash of the
    protobuf-encoded key)."""
    raw = _b58decode(peer_id)
    # 0x00 identity multihash, 36 bytes: 0x08 0x01 (ed25519), 0x12 0x20, key.
    if len(raw) != 38 or raw[:6] != b"\x00\x24\x08\x01\x12\x20":
        raise ReceiptError(f"worker {peer_id} does not hold an ed25519 key")
    return raw[6:]


def peer_bytes(peer_id: str) -> bytes:
    """A PeerId's bytes, as DAG-CBOR holds them."""
    return _b58decode(peer_id)


def cid_bytes(cid: str) -> bytes:
    """A CIDv1 string (base32, `b…`) as its bytes."""
    if not cid.startswith("b"):
        raise ReceiptError(f"`{cid}` is not a base32 CIDv1")
    body = cid[1:].upper()
    return base64.b32decode(body + "=" * (-len(body) % 8))


def _cbor(data: bytes, at: int, depth: int = 0) -> tuple[Any, int]:
    """One DAG-CBOR item at `at`: its value and where the next begins. CIDs
    (tag 42) come back as their bytes."""
    if depth > 16:
        raise ReceiptError("the signed bytes nest too deep")
    if at >= len(data):
        raise ReceiptError("the signed bytes end early")
    head = data[at]
    major, info = head >> 5, head & 0x1F
    at += 1
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        if at + size > len(data):
            raise ReceiptError("the signed bytes end early")
        arg = int.from_bytes(data[at : at + size], "big")
        at += size
    else:
        raise ReceiptError("the signed bytes are not canonical DAG-CBOR")
    if major == 0:
        return arg, at
    if major == 1:
        return -1 - arg, at
    if major in (2, 3):
        if at + arg > len(data):
            raise ReceiptError("the signed bytes end early")
        chunk = data[at : at + arg]
        return (chunk if major == 2 else chunk.decode("utf-8")), at + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, at = _cbor(data, at, depth + 1)
            items.append(item)
        return items, at
    if major == 5:
        out = {}
        for _ in range(arg):
            key, at = _cbor(data, at, depth + 1)
            value, at = _cbor(data, at, depth + 1)
            out[key] = value
        return out, at
    if major == 6 and arg == 42:
        value, at = _cbor(data, at, depth + 1)
        if not isinstance(value, bytes) or value[:1] != b"\0":
            raise ReceiptError("a CID in the signed bytes is malformed")
        return value[1:], at
    if major == 7 and info in (20, 21, 22):
        return {20: False, 21: True, 22: None}[info], at
    raise ReceiptError("the signed bytes are not DAG-CBOR a receipt uses")


@dataclass(frozen=True)
class Receipt:
    """A worker's signed statement of a run, as the daemon reported it."""

    #: The receipt's fields (`job`, `worker`, `result`, `status`,
    #: `fuel_consumed`, …), as JSON.
    fields: dict
    #: Its CID.
    cid: str
    #: What the worker signed, the signature, and its key, as the daemon
    #: gave them (checked by `verify`).
    signed_bytes: bytes
    signature: bytes
    public_key: bytes

    @classmethod
    def from_answer(cls, answer: dict) -> "Receipt":
        """The receipt in a `GET /api/v1/jobs/{id}/result` answer."""
        try:
            return cls(
                fields=answer["receipt"]["receipt"],
                cid=answer["receipt_cid"],
                signed_bytes=base64.b64decode(answer["signed_bytes"], validate=True),
                signature=base64.b64decode(answer["signature"], validate=True),
                public_key=base64.b64decode(answer["public_key"], validate=True),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ReceiptError(f"the daemon's answer carries no whole receipt: {e}") from e

    @property
    def job(self) -> str:
        return self.fields["job"]

    @property
    def worker(self) -> str:
        return self.fields["worker"]

    @property
    def result(self) -> str:
        return self.fields["result"]

    @property
    def fuel_consumed(self) -> int:
        return self.fields["fuel_consumed"]

    def verify(self) -> bool:
        """True if the worker signed exactly this receipt; else raises
        `ReceiptError` saying what does not hold."""
        key = peer_key(self.worker)
        if key != self.public_key:
            raise ReceiptError(f"the key given is not the one worker {self.worker} holds")
        if len(self.signed_bytes) > MAX_SIGNED or not self.signed_bytes.startswith(DOMAIN):
            raise ReceiptError("the signed bytes are not a phase receipt")
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(self.signature, self.signed_bytes)
        except InvalidSignature:
            raise ReceiptError(f"the signature does not hold for worker {self.worker}") from None
        signed, end = _cbor(self.signed_bytes, len(DOMAIN))
        if end != len(self.signed_bytes) or not isinstance(signed, dict):
            raise ReceiptError("the signed bytes are not one receipt")
        checks = {
            "job": cid_bytes(self.job),
            "worker": peer_bytes(self.worker),
            "result": cid_bytes(self.result),
            "fuel_consumed": self.fuel_consumed,
        }
        for name, expected in checks.items():
            if signed.get(name) != expected:
                raise ReceiptError(f"the signed receipt says another {name} than the daemon reported")
        return True
