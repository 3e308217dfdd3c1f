"""Submits hello.wasm with "Hello, World" on stdin through the daemon of
$PHASE_DATA_DIR (default ~/.local/share/phase-node), prints what it wrote
and checks the worker's signature here:

    python examples/submit.py [path/to/hello.wasm]
"""

import sys
from pathlib import Path

from phase_node import Client

module = sys.argv[1] if len(sys.argv) > 1 else str(
    Path(__file__).resolve().parents[3] / "wasm-examples" / "out" / "hello.wasm"
)
client = Client()
result = client.create_job(module).with_memory(64).with_timeout(30).submit("Hello, World")
print(result.stdout, end="")
if result.receipt.verify():
    print(f"receipt verified: worker {result.worker} signed result {result.result_cid}")
