#!/usr/bin/env bash
# Benchmark (not a test): fetching a 1 GiB file over loopback QUIC from one
# provider and from three, with the peak RSS of every daemon, and the idle
# RSS of a node, and the CPU seconds the fetching daemon and the first
# provider spent on each get. Release build; numbers go in docs/performance.md.
# PHASE_NODE_BIN=/path/to/phase-node benchmarks that binary instead of
# building this tree (to compare two builds in one session).
#   [PHASE_NODE_BIN=…] scripts/bench-fetch.sh [SIZE_MIB]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mib="${1:-1024}"
if [ -n "${PHASE_NODE_BIN:-}" ]; then
  bin="$PHASE_NODE_BIN"
else
  (cd "$root" && cargo build --quiet --release -p phase-node)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/phase-node"
fi

# shellcheck source=bench-daemons.sh
. "$root/scripts/bench-daemons.sh"
# CPU seconds (user + system) a process has used so far.
tck="$(getconf CLK_TCK)"
cpu() { awk -v t="$tck" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
rss() { awk '/VmHWM/ {peak = $2} /VmRSS/ {now = $2} END {printf "%.0f MiB now, %.0f MiB peak\n", now / 1024, peak / 1024}' "/proc/$1/status"; }

head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$work/file"
start p1; first="$addr"; p1=$pid
echo "idle RSS of a node: $(rss "$p1")"
cid="$("$bin" --data-dir "$work/p1" add "$work/file")"

measure() { # fetcher-name providers
  start "$1" "$first"; local f=$pid
  "$bin" --data-dir "$work/$1" peers --wait "$2" >/dev/null
  local t0 t1 f0 p0 f1 p1cpu
  f0=$(cpu "$f"); p0=$(cpu "$p1")
  t0=$(date +%s.%N)
  "$bin" --data-dir "$work/$1" get "$cid" -o "$work/got-$1" 2>/dev/null
  t1=$(date +%s.%N)
  f1=$(cpu "$f"); p1cpu=$(cpu "$p1")
  cmp "$work/file" "$work/got-$1"
  echo "$1: $size_mib MiB from $2 provider(s) in $(echo "$t1 - $t0" | bc) s = $(echo "$size_mib / ($t1 - $t0)" | bc) MiB/s"
  echo "  CPU: fetcher daemon $(echo "$f1 - $f0" | bc) s, provider p1 $(echo "$p1cpu - $p0" | bc) s"
  echo "  fetcher RSS: $(rss "$f")"
  echo "  provider p1 RSS: $(rss "$p1")"
}

measure f1 1
for n in p2 p3; do
  start "$n" "$first"
  "$bin" --data-dir "$work/$n" add "$work/file" >/dev/null
done
measure f3 3
