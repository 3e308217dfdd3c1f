"""The daemon's HTTP API over its Unix socket (or loopback TCP with the
bearer token), and the job builder."""

from __future__ import annotations

import http.client
import json
import os
import socket as _socket
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from ._receipt import Receipt

#: Longest a single API call may take.
CALL_TIMEOUT = 120.0
#: Pause between asks while a job runs.
POLL = 0.1


class PhaseNodeError(Exception):
    """The daemon refused or failed a request: `code` (`bad_request`,
    `not_found`, …) and its one-line message."""

    def __init__(self, message: str, code: str = "error", status: int = 0):
        super().__init__(message)
        self.code = code
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Client:
    """A phase-node daemon: `Client(socket=PATH)` (its data dir's
    `api.sock`), or `Client(url="http://127.0.0.1:5001", token=...)`
    (`start --api`). Without either: the default data dir's socket, or
    `$PHASE_DATA_DIR/api.sock`."""

    def __init__(
        self,
        socket: Optional[str] = None,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = CALL_TIMEOUT,
    ):
        if socket is None and url is None:
            data = os.environ.get("PHASE_DATA_DIR") or os.path.expanduser("~/.local/share/phase-node")
            socket = os.path.join(data, "api.sock")
        self._socket = os.path.expanduser(socket) if socket else None
        self._url = urlsplit(url) if url else None
        if self._url and not token:
            raise ValueError("a TCP API needs its token (<data-dir>/api.token)")
        self._token = token
        self._timeout = timeout
        self._uploaded: dict[tuple[str, int, int], str] = {}

    def _connection(self) -> http.client.HTTPConnection:
        if self._socket:
            return _UnixConnection(self._socket, self._timeout)
        assert self._url is not None
        return http.client.HTTPConnection(self._url.hostname, self._url.port or 80, timeout=self._timeout)

    def request(self, method: str, path: str, body: Any = None, raw: Any = None) -> tuple[int, Any]:
        """One API call: its status and JSON answer. `raw` is a body sent as
        it is (bytes, or a file opened for reading). An error answer raises
        `PhaseNodeError` with the daemon's message."""
        headers = {"Host": "localhost"}
        data = raw
        if raw is not None and not isinstance(raw, (bytes, bytearray)):
            headers["Content-Length"] = str(os.fstat(raw.fileno()).st_size - raw.tell())
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            status, text = response.status, response.read()
        except OSError as e:
            raise PhaseNodeError(f"cannot reach the daemon: {e}", "unreachable") from e
        finally:
            conn.close()
        try:
            answer = json.loads(text) if text else None
        except ValueError as e:
            raise PhaseNodeError(f"the daemon's answer is not JSON ({status})", "bad_answer", status) from e
        if status >= 400:
            error = (answer or {}).get("error", {}) if isinstance(answer, dict) else {}
            raise PhaseNodeError(error.get("message", f"HTTP {status}"), error.get("code", "error"), status)
        return status, answer

    def add(self, path: str) -> str:
        """Uploads a file into the daemon's store (pinned); its CID. A file
        unchanged since it was last uploaded by this client is not sent
        again."""
        p = Path(path)
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._uploaded:
            _, answer = self.request("POST", "/api/v1/add", raw=p.read_bytes())
            self._uploaded[key] = answer["cid"]
        return self._uploaded[key]

    def add_dir(self, path: str) -> str:
        """Uploads a directory (its regular files and folders, as a tar
        archive the daemon makes a UnixFS directory of; pinned); its CID.
        A symlink or special file in it is refused with the daemon's line."""
        if not os.path.isdir(path):
            raise PhaseNodeError(f"{path} is not a directory", "bad_request")
        with tempfile.TemporaryFile() as tmp:
            with tarfile.open(fileobj=tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.add(path, arcname=".", recursive=True)
            tmp.seek(0)
            _, answer = self.request("POST", "/api/v1/add?format=tar", raw=tmp)
        return answer["cid"]

    def create_job(self, module: str) -> "Job":
        """A job running `module` (a `.wasm` file, uploaded on submit, or the
        CID of one in the daemon's store)."""
        return Job(self, module)

    def result(self, job: str) -> dict:
        """`GET /api/v1/jobs/{job}/result`: where the job is, and once done
        what it gave."""
        return self.request("GET", f"/api/v1/jobs/{job}/result")[1]

    def wait(self, job: str, timeout: float = 300.0) -> "JobResult":
        """Waits for `job` (submitted through this daemon) to end: its
        result, or `PhaseNodeError` if it failed or did not end in time."""
        return wait(self, job, timeout)

    def peers(self) -> dict:
        """The daemon's peers (`GET /api/v1/peers`)."""
        return self.request("GET", "/api/v1/peers")[1]


@dataclass(frozen=True)
class JobResult:
    """A finished job: its outputs, exit code and signed receipt."""

    job: str
    stdout: str
    stderr: str
    exit_code: Optional[int]
    status: str
    result_cid: str
    worker: str
    receipt: Receipt


class Job:
    """A job being described; `submit` sends it. Every `with_…` returns the
    job, so calls chain."""

    def __init__(self, client: Client, module: str):
        self._client = client
        self._module = module
        self._limits: dict[str, Any] = {}
        self._args: list[str] = []
        self._env: dict[str, str] = {}
        self._input: Optional[str] = None
        self._deterministic = True

    def with_memory(self, mib: int) -> "Job":
        """Memory limit, in MiB."""
        self._limits["memory"] = f"{int(mib)}MiB"
        return self

    def with_timeout(self, seconds: float) -> "Job":
        """Wall-time limit, in seconds."""
        self._limits["timeout"] = f"{int(seconds * 1000)}ms"
        return self

    def with_fuel(self, fuel: int) -> "Job":
        """Fuel limit (wasm instructions, roughly)."""
        self._limits["fuel"] = int(fuel)
        return self

    def with_max_output(self, mib: int) -> "Job":
        """Cap on stdout, stderr and output/, each, in MiB."""
        self._limits["max_output"] = f"{int(mib)}MiB"
        return self

    def with_args(self, args: list[str]) -> "Job":
        self._args = [str(a) for a in args]
        return self

    def with_env(self, env: dict[str, str]) -> "Job":
        self._env = {str(k): str(v) for k, v in env.items()}
        return self

    def with_input(self, directory: str) -> "Job":
        """The directory mounted at /input: a local directory (uploaded on
        submit), or the CID of a directory in the daemon's store."""
        self._input = directory
        return self

    def nondeterministic(self) -> "Job":
        """Let the job read the clock and randomness (not rerunnable)."""
        self._deterministic = False
        return self

    def spec(self, stdin: Optional[str] = None) -> dict:
        """The job as `POST /api/v1/jobs` takes it (uploads the module)."""
        module = self._module
        if os.path.exists(module):
            module = self._client.add(module)
        job: dict[str, Any] = {"module": module, "deterministic": self._deterministic}
        if stdin is not None:
            job["stdin"] = {"text": stdin}
        if self._input:
            directory = self._input
            job["input"] = self._client.add_dir(directory) if os.path.isdir(directory) else directory
        if self._args:
            job["args"] = self._args
        if self._env:
            job["env"] = self._env
        if self._limits:
            job["limits"] = self._limits
        return job

    def start(self, stdin: Optional[str] = None, timeout: float = 300.0) -> str:
        """Submits the job and returns its id at once (the daemon goes on in
        the background; `Client.result(id)` says where it is)."""
        body = {"job": self.spec(stdin), "timeout": f"{int(timeout)}s", "wait": False}
        return self._client.request("POST", "/api/v1/jobs", body=body)[1]["job"]

    def submit(self, stdin: Optional[str] = None, timeout: float = 300.0) -> JobResult:
        """Submits the job and waits (up to `timeout` seconds) for its
        verified result."""
        job = self.start(stdin, timeout)
        return wait(self._client, job, timeout)


def wait(client: Client, job: str, timeout: float = 300.0) -> JobResult:
    """Waits for `job` (submitted from this daemon) to end; its result, or
    `PhaseNodeError` if it failed or did not end in time."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.result(job)
        state = answer["state"]
        if state == "done":
            return JobResult(
                job=job,
                stdout=answer["stdout"],
                stderr=answer["stderr"],
                exit_code=answer.get("exit_code"),
                status=answer["status"],
                result_cid=answer["result"],
                worker=answer["worker"],
                receipt=Receipt.from_answer(answer),
            )
        if state == "failed":
            raise PhaseNodeError(answer.get("error", "the job failed"), "job_failed")
        if time.monotonic() > deadline:
            raise PhaseNodeError(f"job {job} did not end within {timeout:.0f} s", "timeout")
        time.sleep(POLL)
