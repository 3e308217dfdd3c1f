#!/usr/bin/env bash
# For a new user on a fresh machine: installs what is needed (the wasm rustup
# targets), builds phase-node and the example guests, then shows the network:
# two daemons on this machine (loopback only, default DHT settings), the
# hello job submitted from one and run on the other, its result and its
# verified receipt. Both daemons are stopped however the script ends.
# The binary: $PHASE_NODE (the README's test sets it), else built with cargo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/build-wasm-examples.sh"
bin="${PHASE_NODE:-}"
if [ -z "$bin" ]; then
  cargo build --locked -p phase-node
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/phase-node"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n$ %s\n' "$*" >&2; }

# Starts a daemon on data dir $1 with the rest as flags; waits for its first
# address (it prints one per line once it listens) and sets $addr to it.
# Runs in this shell (not a subshell), so $pids keeps the daemon.
start() {
  local name="$1"
  shift
  "$bin" --data-dir "$work/$name" start --listen /ip4/127.0.0.1/udp/0/quic-v1 --no-mdns "$@" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pids+=("$!")
  local waited=0
  until [ -s "$work/$name.out" ]; do
    if ! kill -0 "${pids[-1]}" 2>/dev/null || [ "$waited" -ge 1200 ]; then
      echo "quickstart: the daemon on $work/$name did not start:" >&2
      cat "$work/$name.log" >&2
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  addr="$(head -n 1 "$work/$name.out")"
  echo "$addr" >&2
}

# The offline sandbox first, then the network.
say "echo -n 'Hello, World' | phase-node run wasm-examples/out/hello.wasm"
printf 'Hello, World' | "$bin" run "$root/wasm-examples/out/hello.wasm"
echo >&2

say "phase-node --data-dir worker start --listen /ip4/127.0.0.1/udp/0/quic-v1 --no-mdns"
start worker
worker_addr="$addr"
say "phase-node --data-dir requester start --listen /ip4/127.0.0.1/udp/0/quic-v1 --no-mdns --no-worker --bootstrap $worker_addr"
start requester --no-worker --bootstrap "$worker_addr"

say "phase-node --data-dir requester submit --json examples/hello.job.json"
report="$("$bin" --data-dir "$work/requester" submit --json "$root/examples/hello.job.json")"
job="$(sed -n 's/^  "job": "\([a-z0-9]*\)".*/\1/p' <<<"$report")"
result="$(sed -n 's/^ *"result": "\([a-z0-9]*\)".*/\1/p' <<<"$report" | head -n 1)"
echo "job $job ran; result $result" >&2

say "phase-node --data-dir requester get $result -o result && cat result/stdout"
"$bin" --data-dir "$work/requester" get "$result" -o "$work/result" >/dev/null
cat "$work/result/stdout"
echo

say "phase-node --data-dir requester receipt $job"
"$bin" --data-dir "$work/requester" receipt "$job"
echo "(the worker is ${worker_addr##*/p2p/})" >&2
