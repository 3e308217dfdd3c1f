#!/usr/bin/env bash
# Benchmark (not a test): one file fetched from one peer over loopback QUIC,
# phase-node next to iroh + iroh-blobs (../shared/bench/iroh-bench), in one
# invocation on the same file, alternating, RUNS runs each (fresh processes
# and stores every run). Prints every run, both medians, the ratio
# phase-node / iroh, and each side's peak RSS.
#
#   scripts/bench-vs-iroh.sh [SIZE_MIB] [RUNS]        (default 1024 3)
#
# phase-node: two daemons (`start`, the provider with the file added, the
# fetcher bootstrapped to it), timed from `get CID -o FILE` to its exit.
# iroh: `iroh-bench send` and `iroh-bench get` as two processes (its MB/s,
# transfer only). Both sides write the file to disk. Everything runs in a
# private network namespace (`unshare -rn`, only `lo`): iroh 0.35 probes
# the default gateway for port mapping and has no switch for it.
#
# Binaries: $PHASE_NODE_BIN and $IROH_BENCH_BIN, else release builds of this
# tree and of ../shared/bench/iroh-bench (its own target dir). MB = 10^6.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mib="${1:-1024}"
runs="${2:-3}"

if [ -z "${BENCH_IN_NETNS:-}" ]; then
  phase="${PHASE_NODE_BIN:-}"
  if [ -z "$phase" ]; then
    (cd "$root" && cargo build --quiet --release -p phase-node)
    phase="${CARGO_TARGET_DIR:-$root/target}/release/phase-node"
  fi
  iroh="${IROH_BENCH_BIN:-}"
  if [ -z "$iroh" ]; then
    iroh_target="$HOME/.cache/iroh-bench-target"
    (cd "$root/../shared/bench/iroh-bench" && CARGO_TARGET_DIR="$iroh_target" cargo build --quiet --release --locked)
    iroh="$iroh_target/release/iroh-bench"
  fi
  exec unshare -rn env BENCH_IN_NETNS=1 PHASE_NODE_BIN="$phase" IROH_BENCH_BIN="$iroh" "$0" "$size_mib" "$runs"
fi

ip link set lo up
bin="$PHASE_NODE_BIN"
iroh="$IROH_BENCH_BIN"
# shellcheck source=bench-daemons.sh
. "$root/scripts/bench-daemons.sh"
bytes=$((size_mib * 1024 * 1024))
head -c "$bytes" /dev/urandom >"$work/file"
echo "# $("$bin" --version); iroh-bench: $iroh; $size_mib MiB, $runs runs each, alternating"

# The peak RSS (KiB) of a process still running.
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

stop() { kill -TERM "$@"; wait "$@" 2>/dev/null || true; }

phase_run() { # run number; prints "MB/s provider-KiB fetcher-KiB"
  start "p$1"; local p=$pid first="$addr"
  local cid
  cid="$("$bin" --data-dir "$work/p$1" add "$work/file")"
  start "f$1" "$first"; local f=$pid
  "$bin" --data-dir "$work/f$1" peers --wait 1 >/dev/null
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" --data-dir "$work/f$1" get "$cid" -o "$work/got" 2>/dev/null
  t1=$(date +%s.%N)
  cmp "$work/file" "$work/got"
  local prss frss
  prss=$(hwm "$p"); frss=$(hwm "$f")
  stop "$p" "$f"
  rm -rf "$work/p$1" "$work/f$1" "$work/got"
  echo "$(python3 -c "print(round($bytes / ($t1 - $t0) / 1e6, 1))") $prss $frss"
}

iroh_run() { # run number; prints "MB/s sender-KiB getter-KiB"
  /usr/bin/time -v -o "$work/send.time" "$iroh" send --exit-after 1 "$work/file" >"$work/send.out" 2>"$work/send.err" &
  local s=$!
  for _ in $(seq 1 1200); do
    grep -q '^READY' "$work/send.out" 2>/dev/null && break
    kill -0 "$s" 2>/dev/null || { cat "$work/send.err" >&2; exit 1; }
    sleep 0.1
  done
  local ready ticket hash
  ready=$(grep '^READY' "$work/send.out")
  ticket=$(sed -n 's/.* ticket=\([^ ]*\).*/\1/p' <<<"$ready")
  hash=$(sed -n 's/.* hash=\([0-9a-f]*\).*/\1/p' <<<"$ready")
  /usr/bin/time -v -o "$work/get.time" "$iroh" get "$ticket" "$hash" "$work/got" >"$work/get.out" 2>"$work/get.err"
  wait "$s"
  cmp "$work/file" "$work/got"
  rm -f "$work/got"
  local mbs
  mbs=$(sed -n 's/.* MB\/s=\([0-9.]*\).*/\1/p' "$work/get.out")
  rssof() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
  echo "$mbs $(rssof "$work/send.time") $(rssof "$work/get.time")"
}

p_results=(); i_results=()
for i in $(seq 1 "$runs"); do
  read -r mbs a b < <(iroh_run "$i")
  i_results+=("$mbs")
  echo "run $i iroh:       $mbs MB/s   peak RSS sender $((a / 1024)) MiB, getter $((b / 1024)) MiB"
  read -r mbs a b < <(phase_run "$i")
  p_results+=("$mbs")
  echo "run $i phase-node: $mbs MB/s   peak RSS provider $((a / 1024)) MiB, fetcher $((b / 1024)) MiB"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
pm=$(median "${p_results[@]}"); im=$(median "${i_results[@]}")
echo "median: phase-node $pm MB/s, iroh $im MB/s, ratio $(python3 -c "print(round($pm / $im, 2))")"
