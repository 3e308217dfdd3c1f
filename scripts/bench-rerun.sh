#!/usr/bin/env bash
# Benchmark (not a test): `phase-node verify --rerun` of the hello job's
# receipt with a warm module cache, whole process, beside `phase-node run`
# of the same module on the same stdin, alternating, in one data dir
# (release build; numbers go in docs/performance.md). Two daemons on
# loopback make the receipt: a worker, and the requester whose data dir the
# reruns read.
# PHASE_NODE_BIN=/path/to/phase-node benchmarks that binary instead.
#   [PHASE_NODE_BIN=…] scripts/bench-rerun.sh [ROUNDS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-10}"
if [ -n "${PHASE_NODE_BIN:-}" ]; then
  bin="$PHASE_NODE_BIN"
else
  (cd "$root" && cargo build --quiet --release -p phase-node)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/phase-node"
fi
[ -f "$root/wasm-examples/out/hello.wasm" ] || "$root/scripts/build-wasm-examples.sh"
work="$(mktemp -d -t phase-bench-rerun.XXXXXX)"
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

listen=/ip4/127.0.0.1/udp/0/quic-v1
"$bin" --data-dir "$work/w" start --listen $listen --no-mdns >"$work/w.addr" 2>"$work/w.log" &
until [ -s "$work/w.addr" ]; do sleep 0.1; done
"$bin" --data-dir "$work/c" start --listen $listen --no-mdns --no-worker \
  --bootstrap "$(head -n 1 "$work/w.addr")" >"$work/c.addr" 2>"$work/c.log" &
until [ -s "$work/c.addr" ]; do sleep 0.1; done
"$bin" --data-dir "$work/c" peers --wait 1 >/dev/null
"$bin" --data-dir "$work/c" submit "$root/examples/hello.job.json" --json >"$work/report.json"
receipt=$(sed -n 's/^      "receipt_cid": "\(.*\)",$/\1/p' "$work/report.json" | head -n 1)
# Warm: the module compiled into the requester's cache once.
"$bin" --data-dir "$work/c" verify --rerun "$receipt" >/dev/null

ms() { # command...: wall milliseconds of the whole process
  local start end
  start=$(date +%s%N)
  "$@" >/dev/null
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}
rerun_ms=() run_ms=()
for _ in $(seq "$rounds"); do
  rerun_ms+=("$(ms "$bin" --data-dir "$work/c" verify --rerun "$receipt")")
  run_ms+=("$(ms sh -c "printf 'Hello, World' | '$bin' --data-dir '$work/c' run --deterministic '$root/wasm-examples/out/hello.wasm'")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
r=$(median "${rerun_ms[@]}") u=$(median "${run_ms[@]}")
echo "verify --rerun of the hello receipt, warm cache: median ${r} ms of $rounds (${rerun_ms[*]})"
echo "run of hello.wasm, warm cache:                   median ${u} ms of $rounds (${run_ms[*]})"
echo "ratio rerun/run: $(echo "scale=2; $r / $u" | bc)"
