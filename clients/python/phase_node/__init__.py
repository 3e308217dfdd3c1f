"""A client of the phase-node daemon's HTTP API.

    from phase_node import Client

    client = Client(socket="~/.local/share/phase-node/api.sock")
    result = client.create_job("hello.wasm").with_memory(64).with_timeout(30).submit("Hello, World")
    print(result.stdout, end="")
    result.receipt.verify()  # True, or raises ReceiptError

The receipt's signature is checked here, with the worker's ed25519 key
taken from its PeerId, over the exact bytes the worker signed; those bytes
are decoded here too (canonical DAG-CBOR) and must name the job, worker and
result the daemon reported. A Python user need not trust the local daemon
for any of it.
"""

from ._client import Client, Job, JobResult, PhaseNodeError
from ._receipt import Receipt, ReceiptError

__all__ = ["Client", "Job", "JobResult", "PhaseNodeError", "Receipt", "ReceiptError"]
