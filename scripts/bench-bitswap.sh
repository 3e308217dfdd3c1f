#!/usr/bin/env bash
# Bitswap throughput, side by side on loopback TCP (never part of the test
# suite): one file of SIZE MiB (default 256) moved
#   Helia <- phase-node   (a Helia node fetches what a daemon added)
#   Kubo <- phase-node    (a Kubo node fetches what a daemon added)
#   phase-node <- Helia   (a daemon fetches what a Helia node added)
#   phase-node <- Kubo    (a daemon fetches what a Kubo node added)
#   Helia <- Helia, Kubo <- Helia, Kubo <- Kubo   (the references)
# and prints MB/s, peak RSS of the fetching side, and the ratios.
#
#   scripts/bench-bitswap.sh [SIZE_MIB]
#
# Needs interop/helia (npm ci, Node 20) and interop/kubo (its .venv, as
# scripts/test.sh makes it). The binary: $PHASE_NODE, else a release build
# (cargo build --release). Kubo's peak RSS is its Python process's (the
# Kubo library runs inside it).
set -euo pipefail
size_mib="${1:-256}"
[[ "$size_mib" =~ ^[0-9]+$ ]] && [ "$size_mib" -ge 1 ] || { echo "bench-bitswap.sh: SIZE_MIB must be a number" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
helia_dir="$root/interop/helia"
[ -d "$helia_dir/node_modules/helia" ] || (cd "$helia_dir" && npm ci --no-audit --no-fund --loglevel=error)
kubo_dir="$root/interop/kubo"
[ -x "$kubo_dir/.venv/bin/python" ] || { echo "bench-bitswap.sh: interop/kubo/.venv is missing (scripts/test.sh makes it)" >&2; exit 1; }
bin="${PHASE_NODE:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --quiet -p phase-node)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/phase-node"
fi

work="$(mktemp -d -t phase-bench-bitswap.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

file="$work/data.bin"
head -c "$((size_mib << 20))" /dev/urandom >"$file"
bytes=$((size_mib << 20))
helia() { (cd "$helia_dir" && node --import ./polyfill.mjs helia.mjs "$@"); }
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.1f", b / s / 1e6 }'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
peak_mib() { awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$1/status"; }

# start_daemon DIR: a daemon on 127.0.0.1 TCP; sets $addr and $dpid.
start_daemon() {
  local fifo="$1.out"
  mkfifo "$fifo"
  "$bin" --data-dir "$1" start --no-mdns --dht-mode server --no-worker \
    --listen /ip4/127.0.0.1/tcp/0 >"$fifo" 2>"$1.log" &
  dpid=$!
  pids+=("$dpid")
  exec 9<"$fifo"
  read -r addr <&9
}

# 1. Helia <- phase-node
start_daemon "$work/a"
cid="$("$bin" --data-dir "$work/a" add "$file")"
/usr/bin/time -f "%M" -o "$work/helia1.rss" bash -c "cd '$helia_dir' && node --import ./polyfill.mjs helia.mjs fetch '$cid' '$addr' '$work/out1' 2>/dev/null" >"$work/helia1.json"
cmp -s "$file" "$work/out1" || { echo "bench-bitswap: Helia got other bytes" >&2; exit 1; }
h_from_p_s="$(jq -r '.ms / 1000' "$work/helia1.json")"
h_from_p_rss=$(( $(cat "$work/helia1.rss") / 1024 ))

# kubo_fetch NAME CID ADDR: Kubo fetches into $work/NAME; sets $k_s and $k_rss.
kubo_fetch() {
  /usr/bin/time -f "%M" -o "$work/$1.rss" "$kubo_dir/.venv/bin/python" "$kubo_dir/kubo.py" fetch "$2" "$3" "$work/$1" 2>/dev/null >"$work/$1.json"
  cmp -s "$file" "$work/$1" || { echo "bench-bitswap: Kubo got other bytes ($1)" >&2; exit 1; }
  k_s="$(jq -r '.ms / 1000' "$work/$1.json")"
  k_rss=$(( $(cat "$work/$1.rss") / 1024 ))
}

# 2. Kubo <- phase-node
kubo_fetch out-kp "$cid" "$addr"
k_from_p_s="$k_s"; k_from_p_rss="$k_rss"
kill -TERM "$dpid"; wait "$dpid" 2>/dev/null || true

# Helia serving the file (for 3, 5 and 6).
mkfifo "$work/hin"
(cd "$helia_dir" && exec node --import ./polyfill.mjs helia.mjs serve "$file" <"$work/hin" >"$work/serve.json" 2>/dev/null) &
pids+=("$!")
exec 8>"$work/hin"
for _ in $(seq 1 600); do [ -s "$work/serve.json" ] && break; sleep 0.1; done
hcid="$(jq -r .cid "$work/serve.json")"
haddr="$(jq -r '.addrs[0]' "$work/serve.json")"

# 3. phase-node <- Helia
start_daemon "$work/b"
"$bin" --data-dir "$work/b" swarm connect "$haddr" >/dev/null
t0="$(now)"
"$bin" --data-dir "$work/b" get "$hcid" -o "$work/out2" >/dev/null 2>&1
p_from_h_s="$(elapsed "$t0" "$(now)")"
cmp -s "$file" "$work/out2" || { echo "bench-bitswap: phase-node got other bytes" >&2; exit 1; }
p_from_h_rss="$(peak_mib "$dpid")"
kill -TERM "$dpid"; wait "$dpid" 2>/dev/null || true

# 4. phase-node <- Kubo (Kubo adds as `ipfs add` does by default: CIDv0)
mkfifo "$work/kin"
(exec "$kubo_dir/.venv/bin/python" "$kubo_dir/kubo.py" serve "$file" <"$work/kin" >"$work/kserve.json" 2>/dev/null) &
pids+=("$!")
exec 7>"$work/kin"
for _ in $(seq 1 600); do [ -s "$work/kserve.json" ] && break; sleep 0.1; done
kcid="$(jq -r .cid "$work/kserve.json")"
kaddr="$(jq -r '.addrs[0] + "/p2p/" + .id' "$work/kserve.json")"
start_daemon "$work/c"
"$bin" --data-dir "$work/c" swarm connect "$kaddr" >/dev/null
t0="$(now)"
"$bin" --data-dir "$work/c" get "$kcid" -o "$work/out4" >/dev/null 2>&1
p_from_k_s="$(elapsed "$t0" "$(now)")"
cmp -s "$file" "$work/out4" || { echo "bench-bitswap: phase-node got other bytes from Kubo" >&2; exit 1; }
p_from_k_rss="$(peak_mib "$dpid")"

# 5. Kubo <- Helia, 6. Kubo <- Kubo
kubo_fetch out-kh "$hcid" "$haddr"
k_from_h_s="$k_s"; k_from_h_rss="$k_rss"
kubo_fetch out-kk "$kcid" "$kaddr"
k_from_k_s="$k_s"; k_from_k_rss="$k_rss"
exec 7>&-

# 7. Helia <- Helia
/usr/bin/time -f "%M" -o "$work/helia3.rss" bash -c "cd '$helia_dir' && node --import ./polyfill.mjs helia.mjs fetch '$hcid' '$haddr' '$work/out3' 2>/dev/null" >"$work/helia3.json"
cmp -s "$file" "$work/out3" || { echo "bench-bitswap: Helia got other bytes from Helia" >&2; exit 1; }
h_from_h_s="$(jq -r '.ms / 1000' "$work/helia3.json")"
h_from_h_rss=$(( $(cat "$work/helia3.rss") / 1024 ))
exec 8>&-

row() { printf '%-24s %10s %10s %11s MiB\n' "$1" "$2" "$(mbps "$2")" "$3"; }
printf '%-24s %10s %10s %14s\n' "$size_mib MiB over Bitswap" "seconds" "MB/s" "fetcher peak"
row "Helia <- phase-node" "$h_from_p_s" "$h_from_p_rss"
row "Kubo <- phase-node" "$k_from_p_s" "$k_from_p_rss"
row "phase-node <- Helia" "$p_from_h_s" "$p_from_h_rss"
row "phase-node <- Kubo" "$p_from_k_s" "$p_from_k_rss"
row "Helia <- Helia" "$h_from_h_s" "$h_from_h_rss"
row "Kubo <- Helia" "$k_from_h_s" "$k_from_h_rss"
row "Kubo <- Kubo" "$k_from_k_s" "$k_from_k_rss"
awk -v hh="$h_from_h_s" -v hp="$h_from_p_s" -v ph="$p_from_h_s" \
    -v kh="$k_from_h_s" -v kp="$k_from_p_s" -v kk="$k_from_k_s" -v pk="$p_from_k_s" 'BEGIN {
  printf "serving Helia: phase-node / Helia = %.2fx the speed; serving Kubo: phase-node / Helia = %.2fx, phase-node / Kubo = %.2fx\n", hh / hp, kh / kp, kk / kp
  printf "fetching from Helia: phase-node / Helia = %.2fx; from Kubo: phase-node / Kubo = %.2fx\n", hh / ph, kk / pk }'
