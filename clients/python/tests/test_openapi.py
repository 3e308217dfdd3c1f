"""node/openapi.json against the running daemons: every operation it lists is
called, and each answer's status must be one the document gives for that
operation, its content type the documented one, and a JSON body must
validate against the documented schema (JSON Schema 2020-12, as OpenAPI 3.1
uses). An operation the document lists but this test does not call fails
the test, so a new route is checked from the day it is documented."""

import json
from pathlib import Path
from urllib.parse import quote

import jsonschema
import pytest

from phase_node import Client

ROOT = Path(__file__).resolve().parents[3]
DOC = json.loads((ROOT / "node" / "openapi.json").read_text())
MISSING = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def operations():
    for path, ops in DOC["paths"].items():
        for method in ops:
            yield method.upper(), path


def raw(client: Client, method: str, path: str, body=None, data: bytes = None):
    """One call: status, content type and body bytes, errors included."""
    headers = {"Host": "localhost"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = client._connection()
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def check(method: str, template: str, status: int, content_type: str, body: bytes):
    """The answer is one the document describes."""
    op = DOC["paths"][template][method.lower()]
    documented = op["responses"].get(str(status))
    assert documented is not None, f"{method} {template} answered {status}, not documented: {body[:300]!r}"
    content = documented.get("content", {})
    if not content:
        return
    mime = content_type.split(";")[0].strip()
    assert mime in content, f"{method} {template} {status}: {mime}, documented {list(content)}"
    schema = content[mime].get("schema")
    if mime != "application/json" or schema is None:
        return
    # The operation's schema inside a document that carries the components,
    # so `#/components/schemas/…` resolves.
    wrapped = dict(schema, components=DOC["components"])
    try:
        jsonschema.Draft202012Validator(wrapped).validate(json.loads(body))
    except jsonschema.ValidationError as e:
        pytest.fail(f"{method} {template} {status}: {e.message} at {list(e.absolute_path)}")


def test_every_documented_route_answers_as_documented(network, hello):
    worker, requester = network
    client = Client(socket=requester.socket)
    at_worker = Client(socket=worker.socket)
    done = client.create_job(hello).with_memory(64).submit("Hello, OpenAPI")
    module = client.add(hello)
    worker_id = done.worker
    job = done.job
    calls = [
        # (daemon, method, documented path, the path called, JSON body, raw body)
        (client, "GET", "/api/v1/id", "/api/v1/id", None, None),
        (client, "GET", "/api/v1/peers", "/api/v1/peers", None, None),
        (client, "GET", "/api/v1/peers", "/api/v1/peers?wait=x", None, None),
        (client, "POST", "/api/v1/swarm/connect", f"/api/v1/swarm/connect?addr={quote(worker.addr, safe='')}", None, None),
        (client, "POST", "/api/v1/swarm/connect", "/api/v1/swarm/connect?addr=nonsense", None, None),
        (client, "GET", "/api/v1/dht/peer/{peer}", f"/api/v1/dht/peer/{worker_id}", None, None),
        (client, "GET", "/api/v1/dht/peer/{peer}", "/api/v1/dht/peer/not-a-peer", None, None),
        (client, "GET", "/api/v1/dht/providers", f"/api/v1/dht/providers?cid={module}", None, None),
        (client, "POST", "/api/v1/add", "/api/v1/add", None, b"some bytes"),
        (client, "GET", "/api/v1/cat/{cid}", f"/api/v1/cat/{module}", None, None),
        (client, "GET", "/api/v1/cat/{cid}", f"/api/v1/cat/{MISSING}", None, None),
        (client, "GET", "/api/v1/get/{cid}", f"/api/v1/get/{module}", None, None),
        (client, "GET", "/api/v1/get/{cid}", "/api/v1/get/not-a-cid", None, None),
        (client, "POST", "/api/v1/fetch/{cid}", f"/api/v1/fetch/{done.result_cid}", None, None),
        (client, "GET", "/api/v1/pins", "/api/v1/pins", None, None),
        (client, "POST", "/api/v1/pins/{cid}", f"/api/v1/pins/{module}", None, None),
        (client, "DELETE", "/api/v1/pins/{cid}", f"/api/v1/pins/{MISSING}", None, None),
        (client, "POST", "/api/v1/gc", "/api/v1/gc", None, None),
        (client, "POST", "/api/v1/store/verify", "/api/v1/store/verify", None, None),
        # No guest state in this network: a state that is not there, and a
        # malformed one.
        (client, "GET", "/api/v1/state/{cid}", f"/api/v1/state/{MISSING}", None, None),
        (client, "GET", "/api/v1/state/{cid}/value", f"/api/v1/state/{MISSING}/value?key=k", None, None),
        (client, "GET", "/api/v1/state/{cid}/diff", f"/api/v1/state/{MISSING}/diff?to={MISSING}", None, None),
        (client, "GET", "/api/v1/state/{cid}/diff", "/api/v1/state/nope/diff?to=nope", None, None),
        (client, "POST", "/api/v1/jobs", "/api/v1/jobs",
         {"job": {"module": module, "stdin": {"text": "x"}}, "timeout": "2m", "wait": False}, None),
        (client, "POST", "/api/v1/jobs", "/api/v1/jobs", {"job": {"module": MISSING}, "timeout": "1m"}, None),
        (client, "GET", "/api/v1/jobs", "/api/v1/jobs", None, None),
        (at_worker, "GET", "/api/v1/jobs/{id}", f"/api/v1/jobs/{job}", None, None),
        (at_worker, "GET", "/api/v1/jobs/{id}/receipt", f"/api/v1/jobs/{job}/receipt", None, None),
        (at_worker, "GET", "/api/v1/jobs/{id}/receipt", f"/api/v1/jobs/{MISSING}/receipt", None, None),
        (client, "GET", "/api/v1/jobs/{id}/result", f"/api/v1/jobs/{job}/result", None, None),
        (client, "GET", "/api/v1/jobs/{id}/result", f"/api/v1/jobs/{MISSING}/result", None, None),
        (client, "GET", "/api/v1/submitted/{id}", f"/api/v1/submitted/{job}", None, None),
        (client, "GET", "/api/v1/ledger", "/api/v1/ledger", None, None),
        (client, "GET", "/api/v1/ledger/export", "/api/v1/ledger/export", None, None),
        (client, "GET", "/api/v1/ledger/entries", "/api/v1/ledger/entries?limit=5", None, None),
        (client, "GET", "/api/v1/ledger/entries", "/api/v1/ledger/entries?limit=99999", None, None),
        (at_worker, "GET", "/api/v1/worker", "/api/v1/worker", None, None),
        (client, "GET", "/api/v1/worker", "/api/v1/worker", None, None),
        (at_worker, "PATCH", "/api/v1/worker", "/api/v1/worker", {"slots": 1, "max_memory_total": "1GiB"}, None),
        (at_worker, "PATCH", "/api/v1/worker", "/api/v1/worker", {"slots": 0}, None),
        (at_worker, "POST", "/api/v1/worker/pause", "/api/v1/worker/pause", None, None),
        (at_worker, "POST", "/api/v1/worker/resume", "/api/v1/worker/resume", None, None),
        (client, "GET", "/metrics", "/metrics", None, None),
    ]
    called = set()
    statuses = {}
    for daemon, method, template, path, body, data in calls:
        status, content_type, answer = raw(daemon, method, path, body, data)
        check(method, template, status, content_type, answer)
        called.add((method, template))
        statuses.setdefault((method, template), set()).add(status)
    assert set(operations()) - called == set(), "documented operations this test does not call"
    # The calls meant to succeed did.
    for op in [("GET", "/api/v1/id"), ("POST", "/api/v1/add"), ("GET", "/api/v1/jobs/{id}/result"),
               ("GET", "/api/v1/worker"), ("GET", "/api/v1/ledger/entries"), ("POST", "/api/v1/jobs"),
               ("PATCH", "/api/v1/worker"), ("GET", "/api/v1/get/{cid}"),
               ("POST", "/api/v1/store/verify")]:
        assert statuses[op] & {200, 202}, f"{op}: {statuses[op]}"
