#!/usr/bin/env bash
# Scale benchmark (a benchmark, not a test): how the cost of a phase-node
# network grows with its size, on loopback.
#
#   scripts/bench-scale.sh [N ...]        (default: 10 30 100)
#
# For each N it starts N real daemons with scripts/testnet.sh (every node a
# worker with 2 slots, all bootstrapped to node 1), then measures:
#   - convergence: start of node 1 until every node is part of the DHT and
#     has found the next node by a lookup of its PeerId;
#   - a provider lookup of the wasi-p1 capability key from every node (each
#     node's first, so none is answered from memory): median and p95;
#   - a provider lookup of a content root added on node 1, from every other
#     node: median and p95;
#   - 200 hello jobs submitted from node N (8 at a time): distinct workers
#     they ran on, and jobs per second;
#   - resident memory (VmRSS) of the daemons: median and total.
# Prints one table row per N. The binary: $PHASE_NODE, else a release build
# (cargo build --release). Everything stays on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS=200
AT_ONCE=8

# Runs inside the testnet (testnet.sh --then): prints one "row:" line.
measure() {
  local n="$TESTNET_NODES" dir="$TESTNET_DIR" bin="$PHASE_NODE"
  local cap="$dir/cap.txt" content="$dir/content.txt" workers="$dir/workers.txt"
  : >"$cap"; : >"$content"; : >"$workers"
  for i in $(seq 1 "$n"); do
    "$bin" --data-dir "$dir/node$i" dht providers --capability wasi-p1 --json \
      | python3 -c 'import json, sys; a = json.load(sys.stdin); print(a["millis"], len(a["providers"]))' >>"$cap"
  done
  head -c $((1024 * 1024)) /dev/urandom >"$dir/content.bin"
  local cid first
  cid="$("$bin" --data-dir "$dir/node1" add "$dir/content.bin")"
  first="$("$bin" --data-dir "$dir/node1" id --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["peer_id"])')"
  for i in $(seq 2 "$n"); do
    "$bin" --data-dir "$dir/node$i" dht providers "$cid" --json \
      | python3 -c 'import json, sys; a = json.load(sys.stdin); print(a["millis"], int(sys.argv[1] in a["providers"]))' "$first" >>"$content"
  done
  local started ended
  started=$(date +%s.%N)
  seq 1 "$JOBS" | xargs -P "$AT_ONCE" -I{} sh -c \
    '"$1" --data-dir "$2" submit "$3" --json 2>/dev/null | python3 -c "import json, sys; print(json.load(sys.stdin)[\"results\"][0][\"worker\"])" || echo FAILED' \
    _ "$bin" "$dir/node$n" "$root/examples/hello.job.json" >>"$workers"
  ended=$(date +%s.%N)
  local rss=()
  for pid in $TESTNET_PIDS; do
    rss+=("$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")")
  done
  python3 - "$cap" "$content" "$workers" "$started" "$ended" "${rss[@]}" <<'EOF'
import statistics, sys
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
cap = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
content = [tuple(map(int, l.split())) for l in open(sys.argv[2])]
workers = [l.strip() for l in open(sys.argv[3])]
started, ended = float(sys.argv[4]), float(sys.argv[5])
rss = [int(x) for x in sys.argv[6:]]
done = [w for w in workers if w != "FAILED"]
cap_ms = [m for m, _ in cap]
content_ms = [m for m, _ in content]
print("row:", " ".join(str(x) for x in [
    statistics.median(cap_ms), pct(cap_ms, 95), min(f for _, f in cap),
    statistics.median(content_ms), pct(content_ms, 95), sum(f for _, f in content), len(content),
    len(set(done)), len(done), len(workers), f"{len(done) / (ended - started):.1f}",
    f"{statistics.median(rss) / 1024:.0f}", f"{sum(rss) / 1024:.0f}",
]))
EOF
}

if [ "${1:-}" = --measure ]; then
  measure
  exit 0
fi

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 30 100)
for n in "${sizes[@]}"; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 2 ] || { echo "bench-scale.sh: sizes must be numbers of at least 2" >&2; exit 2; }
done
if [ -z "${PHASE_NODE:-}" ]; then
  (cd "$root" && cargo build --quiet --release -p phase-node)
  export PHASE_NODE="${CARGO_TARGET_DIR:-$root/target}/release/phase-node"
fi
[ -f "$root/wasm-examples/out/hello.wasm" ] || "$root/scripts/build-wasm-examples.sh"

echo "| nodes | convergence | capability lookup median / p95 (providers found, least) | content lookup median / p95 (found) | 200 hello jobs: distinct workers (done, jobs/s) | RSS median / total |"
echo "| --- | --- | --- | --- | --- | --- |"
for n in "${sizes[@]}"; do
  out="$("$root/scripts/testnet.sh" --nodes "$n" --then "'$root/scripts/bench-scale.sh' --measure")" \
    || { echo "bench-scale.sh: the testnet of $n nodes failed" >&2; exit 1; }
  conv="$(sed -n 's/^testnet: .* in \([0-9.]*\) s$/\1/p' <<<"$out")"
  read -r _ cm cp cf tm tp tf tn wd wn wt rate rm rt <<<"$(grep '^row:' <<<"$out")"
  echo "| $n | ${conv} s | ${cm} / ${cp} ms ($cf) | ${tm} / ${tp} ms ($tf of $tn) | $wd ($wn of $wt, $rate/s) | ${rm} / ${rt} MiB |"
done
