"""Submits 100 hello jobs at once through the daemon of $PHASE_DATA_DIR and
prints each verified result as it comes:

    python examples/many.py [path/to/hello.wasm] [COUNT]
"""

import sys
from pathlib import Path

from phase_node import Client

module = sys.argv[1] if len(sys.argv) > 1 else str(
    Path(__file__).resolve().parents[3] / "wasm-examples" / "out" / "hello.wasm"
)
count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
client = Client()
jobs = [client.create_job(module).with_timeout(30).start(f"job {i}") for i in range(count)]
for i, job in enumerate(jobs):
    result = client.wait(job)
    result.receipt.verify()
    print(f"{i:3} {result.stdout.strip()!r:>12}  worker {result.worker[-8:]}  receipt {result.receipt.cid} verified")
