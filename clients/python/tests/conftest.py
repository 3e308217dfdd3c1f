"""A worker daemon and a requester daemon bootstrapped from it, for the
client to talk to: the phase-node binary is `$PHASE_NODE`, else the one on
the PATH. Only loopback addresses."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DEADLINE = 120


def binary() -> str:
    found = os.environ.get("PHASE_NODE") or shutil.which("phase-node")
    if not found:
        pytest.fail("set PHASE_NODE to the phase-node binary (or put it on the PATH)")
    return found


class Daemon:
    def __init__(self, data: Path, *extra: str):
        self.data = data
        self.proc = subprocess.Popen(
            [binary(), "--data-dir", str(data), "start", "--no-mdns",
             "--listen", "/ip4/127.0.0.1/tcp/0", "--slots", "1", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        # The first line of stdout is its first address, once it listens.
        self.addr = self.proc.stdout.readline().strip()
        if not self.addr:
            raise RuntimeError(f"phase-node start exited ({self.proc.wait()})")
        self.socket = str(data / "api.sock")
        deadline = time.monotonic() + DEADLINE
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon's API socket never appeared")
            time.sleep(0.05)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [binary(), "--data-dir", str(self.data), *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE,
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def network():
    with tempfile.TemporaryDirectory() as tmp:
        worker = Daemon(Path(tmp) / "w")
        requester = Daemon(Path(tmp) / "r", "--no-worker", "--bootstrap", worker.addr)
        try:
            out = requester.cli("peers", "--wait", "1")
            assert out.returncode == 0, out.stderr
            yield worker, requester
        finally:
            requester.stop()
            worker.stop()


@pytest.fixture(scope="session")
def hello() -> str:
    path = os.environ.get("HELLO_WASM") or str(ROOT / "wasm-examples" / "out" / "hello.wasm")
    assert os.path.exists(path), f"build the guests first (scripts/build-wasm-examples.sh): {path}"
    return path
