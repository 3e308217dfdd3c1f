#!/usr/bin/env bash
# Benchmark (not a test): the cost of the `phase` host calls, with
# `phase-node run --json` of wasm-examples' state-bench guest (release
# build; numbers go in docs/performance.md):
#   - state_get of a 32-byte value from a warm state: ns per call, the
#     same loop without the call subtracted;
#   - a run that sets 10,000 keys: wall time, fuel, the calls' fuel;
#   - the next run, on that state, setting one key: blocks it read.
# PHASE_NODE_BIN=/path/to/phase-node benchmarks that binary instead.
#   [PHASE_NODE_BIN=…] scripts/bench-state.sh [CALLS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
calls="${1:-1000000}"
if [ -n "${PHASE_NODE_BIN:-}" ]; then
  bin="$PHASE_NODE_BIN"
else
  (cd "$root" && cargo build --quiet --release -p phase-node)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/phase-node"
fi
guest="$root/wasm-examples/out/state-bench.wasm"
[ -f "$guest" ] || "$root/scripts/build-wasm-examples.sh"
work="$(mktemp -d -t phase-bench-state.XXXXXX)"
trap 'rm -rf "$work"' EXIT

field() { sed -n "s/^  \"$1\": \\(.*\\),\$/\\1/p" "$2" | head -n 1; }
run() { # name args...; leaves $work/name.json
  local name=$1; shift
  "$bin" --data-dir "$work/data" run --json "$@" >"$work/$name.json"
}
# Compile once, so no row pays for it.
run warm "$guest" loop 1
run loop --fuel 100000000000 "$guest" loop "$calls"
run get --fuel 100000000000 "$guest" get "$calls"
loop_ms=$(field wall_time_ms "$work/loop.json")
get_ms=$(field wall_time_ms "$work/get.json")
echo "state_get of a 32-byte value, warm: $calls calls in $get_ms ms, the bare loop $loop_ms ms"
echo "  = $(echo "($get_ms - $loop_ms) * 1000000 / $calls" | bc) ns per call; fuel per call $(echo "$(field host_fuel "$work/get.json") / $calls" | bc)"

run set --fuel 100000000000 "$guest" set 10000
state=$(sed -n 's/^  "state_after": "\(.*\)",$/\1/p' "$work/set.json")
echo "set 10,000 keys of 32 bytes: $(field wall_time_ms "$work/set.json") ms, fuel $(field fuel_consumed "$work/set.json") (host calls $(field host_fuel "$work/set.json")), state $(field state_bytes "$work/set.json") bytes"
run one --state "$state" "$guest" set 1
echo "then one key set on that state: host fuel $(field host_fuel "$work/one.json") = $(echo "($(field host_fuel "$work/one.json") - 10000 - 37) / 200000" | bc) state blocks read (BLOCK_FUEL each)"
