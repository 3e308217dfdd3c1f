"""The Python client against real daemons: a job in, its verified result
out; a tampered receipt refused; bad jobs reported with the daemon's line."""

import base64
import dataclasses
from pathlib import Path

import pytest

from phase_node import Client, PhaseNodeError, ReceiptError


def test_hello_runs_and_its_receipt_verifies(network, hello):
    worker, requester = network
    client = Client(socket=requester.socket)
    result = client.create_job(hello).with_memory(64).with_timeout(30).submit("Hello, World")
    assert result.stdout == "dlroW ,olleH\n"
    assert result.stderr == ""
    assert result.exit_code == 0
    assert result.status == "exited with code 0"
    assert result.result_cid.startswith("bafy")
    assert result.worker == Client(socket=worker.socket).request("GET", "/api/v1/id")[1]["peer_id"]
    assert result.receipt.verify() is True
    assert result.receipt.job == result.job
    assert result.receipt.result == result.result_cid


def test_a_local_directory_is_the_jobs_input(network, hello, tmp_path):
    _, requester = network
    client = Client(socket=requester.socket)
    (tmp_path / "texts" / "sub").mkdir(parents=True)
    (tmp_path / "texts" / "a.txt").write_text("one two three")
    (tmp_path / "texts" / "sub" / "b.txt").write_text("four\nfive")
    wordcount = str(Path(hello).with_name("wordcount.wasm"))
    result = client.create_job(wordcount).with_input(str(tmp_path / "texts")).submit()
    assert result.stdout == "3 a.txt\n2 sub/b.txt\nTOTAL 5\n", result.stderr
    assert result.receipt.verify()
    # A symlink in it is refused with the daemon's line, even when it comes
    # first and megabytes follow (the daemon reads them before answering).
    (tmp_path / "texts" / "0-link").symlink_to("/etc/passwd")
    (tmp_path / "texts" / "zz.bin").write_bytes(bytes(range(256)) * 16384)
    with pytest.raises(PhaseNodeError, match="is not a regular file or a directory") as e:
        client.create_job(wordcount).with_input(str(tmp_path / "texts")).submit()
    assert e.value.code == "bad_request"


def test_a_tampered_receipt_is_refused(network, hello):
    _, requester = network
    client = Client(socket=requester.socket)
    receipt = client.create_job(hello).submit("tamper with me").receipt
    assert receipt.verify()
    # One byte of what was signed changed: the signature no longer holds.
    flipped = bytearray(receipt.signed_bytes)
    flipped[-1] ^= 1
    with pytest.raises(ReceiptError, match="signature does not hold"):
        dataclasses.replace(receipt, signed_bytes=bytes(flipped)).verify()
    # The daemon's report changed (another result): the signed bytes say otherwise.
    other = dict(receipt.fields, result="bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
    with pytest.raises(ReceiptError, match="another result"):
        dataclasses.replace(receipt, fields=other).verify()
    # Another key than the worker's.
    with pytest.raises(ReceiptError, match="not the one worker"):
        dataclasses.replace(receipt, public_key=bytes(32)).verify()
    # A bad signature.
    with pytest.raises(ReceiptError):
        dataclasses.replace(receipt, signature=base64.b64decode("AA" * 43 + "==")).verify()


def test_bad_jobs_are_reported_with_the_daemons_line(network, hello):
    _, requester = network
    client = Client(socket=requester.socket)
    missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    with pytest.raises(PhaseNodeError, match=f"job.module: {missing} is not in this node's store") as e:
        client.create_job(missing).submit("x")
    assert e.value.code == "bad_request"
    with pytest.raises(PhaseNodeError, match="job.limits") as e:
        client.create_job(hello).with_memory(1 << 30).submit("x")
    assert e.value.code == "bad_request"


def test_an_unreachable_daemon_is_one_error(tmp_path):
    client = Client(socket=str(tmp_path / "nobody.sock"))
    with pytest.raises(PhaseNodeError, match="cannot reach the daemon") as e:
        client.peers()
    assert e.value.code == "unreachable"


def test_the_example_runs_as_written(network, hello):
    import os
    import subprocess
    import sys
    from pathlib import Path

    _, requester = network
    example = Path(__file__).resolve().parents[1] / "examples" / "submit.py"
    out = subprocess.run(
        [sys.executable, str(example), hello],
        env=dict(os.environ, PHASE_DATA_DIR=str(requester.data)),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("dlroW ,olleH\nreceipt verified: worker 12D3KooW"), out.stdout
