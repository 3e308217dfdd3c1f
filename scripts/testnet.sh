#!/usr/bin/env bash
# Starts a local testnet of phase-node daemons on 127.0.0.1 (loopback only).
#
#   scripts/testnet.sh [--nodes N] [--check] [--check-jobs] [--then CMD]
#
# N nodes (default 5), each with its own data dir, QUIC on a free port, no
# mDNS; the first is the bootstrap node of the others; every node is also a
# worker. Waits until every node is part of the DHT (connected to the first,
# a bootstrap query completed) and finds the next node by a DHT lookup of its
# PeerId (no routing table holds every node past a few dozen), prints how
# long that took and their multiaddrs, and stops them all on exit or
# Ctrl-C. With --check it adds a file on the first node, gets it from the
# last (a provider lookup), compares, and exits (non-zero on any failure). With --check-jobs it submits every
# example job (examples/*.job.json but fetch-url, which needs a worker whose
# net_allow names its host; wasm-examples must be built) from the
# last node, checks each output and verifies each receipt and its signer,
# and runs the deterministic job on 3 workers that must agree. With
# --then CMD it runs CMD (after the checks, with TESTNET_DIR holding
# node1..nodeN data dirs, TESTNET_NODES, TESTNET_PIDS and PHASE_NODE in
# its environment), stops the nodes and exits with CMD's status. Without
# any of these, it runs until Ctrl-C.
#
# The binary: $PHASE_NODE, else phase-node on PATH, else built with cargo.
set -euo pipefail

nodes=5
check=0
check_jobs=0
then_cmd=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes="${2:?--nodes needs a number}"; shift 2 ;;
    --check) check=1; shift ;;
    --check-jobs) check_jobs=1; shift ;;
    --then) then_cmd="${2:?--then needs a command}"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "testnet.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$nodes" =~ ^[0-9]+$ ]] && [ "$nodes" -ge 2 ] || { echo "testnet.sh: --nodes must be at least 2" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${PHASE_NODE:-}"
if [ -z "$bin" ]; then
  if command -v phase-node >/dev/null; then
    bin="$(command -v phase-node)"
  else
    (cd "$root" && cargo build --quiet -p phase-node)
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/phase-node"
  fi
fi

work="$(mktemp -d -t phase-testnet.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts node $1 (bootstrapping to $2 if given) and sets $addr to its
# address. Runs in this shell (not a subshell), so $pids and the fd stay here.
start_node() {
  local i="$1" bootstrap="${2:-}" fifo="$work/out$1"
  mkfifo "$fifo"
  local args=(--data-dir "$work/node$i" start --listen /ip4/127.0.0.1/udp/0/quic-v1 --no-mdns --slots 2)
  [ -n "$bootstrap" ] && args+=(--bootstrap "$bootstrap")
  "$bin" "${args[@]}" >"$fifo" 2>"$work/node$i.log" &
  pids+=($!)
  # Keep the read end open for the node's lifetime; read its first line.
  local fd
  exec {fd}<"$fifo"
  addr=""
  if ! read -r -t 60 -u "$fd" addr || [ -z "$addr" ]; then
    echo "testnet.sh: node $i did not start; its log:" >&2
    cat "$work/node$i.log" >&2
    exit 1
  fi
}

started=$(date +%s.%N)
addrs=()
start_node 1
addrs+=("$addr")
for i in $(seq 2 "$nodes"); do
  start_node "$i" "${addrs[0]}"
  addrs+=("$addr")
done
for i in $(seq 1 "$nodes"); do
  timeout 120 "$bin" --data-dir "$work/node$i" peers --wait >/dev/null \
    || { echo "testnet.sh: node $i did not join the DHT: $(tail -n 3 "$work/node$i.log")" >&2; exit 1; }
done
# Each node finds the next one (the last finds the first) through the DHT.
for i in $(seq 1 "$nodes"); do
  next=$((i % nodes + 1))
  peer="${addrs[$((next - 1))]##*/p2p/}"
  timeout 120 "$bin" --data-dir "$work/node$i" dht find-peer "$peer" >/dev/null \
    || { echo "testnet.sh: node $i cannot find node $next ($peer) in the DHT" >&2; exit 1; }
done
echo "testnet: $nodes nodes joined and found each other in $(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$started") s"
for i in $(seq 1 "$nodes"); do
  echo "node $i: ${addrs[$((i - 1))]}"
done

if [ "$check" = 1 ]; then
  head -c $((3 * 1024 * 1024 + 17)) /dev/urandom >"$work/file"
  cid="$("$bin" --data-dir "$work/node1" add "$work/file")"
  timeout 120 "$bin" --data-dir "$work/node$nodes" get "$cid" -o "$work/fetched" 2>/dev/null
  if cmp -s "$work/file" "$work/fetched"; then
    echo "check: $cid added on node 1 and fetched on node $nodes: identical"
  else
    echo "check: FAILED: $cid fetched on node $nodes differs" >&2
    exit 1
  fi
fi

# Submits examples/$1.job.json from the last node (extra flags after it),
# checks the receipt of every replica (signature, signer = its worker) and
# that the result's stdout equals $expected (ANY: not compared). Prints one line per job.
check_job() {
  local name="$1"; shift
  local requester="$work/node$nodes"
  local out="$work/$name.json"
  if ! timeout 120 "$bin" --data-dir "$requester" submit "$root/examples/$name.job.json" --json "$@" >"$out" 2>"$work/$name.err"; then
    echo "check-jobs: FAILED: $name: $(tail -n 3 "$work/$name.err")" >&2
    exit 1
  fi
  # One line per replica: worker, receipt CID, result CID; then the job id.
  local fields
  fields="$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
for x in r["results"]:
    print(x["worker"], x["receipt_cid"], x["result"], x["status"].replace(" ", "_"))
if r["agreement"] is not None and not r["agreement"]["agreed"]:
    print("DISAGREE")
print("job", r["job"])
' "$out")"
  if grep -q DISAGREE <<<"$fields"; then
    echo "check-jobs: FAILED: $name: replicas disagree" >&2; exit 1
  fi
  local job; job="$(awk '$1 == "job" {print $2}' <<<"$fields")"
  local n=0 worker receipt result status
  while read -r worker receipt result status; do
    [ "$worker" = job ] && continue
    n=$((n + 1))
    "$bin" --data-dir "$requester" verify "$receipt" --expect-worker "$worker" >/dev/null \
      || { echo "check-jobs: FAILED: $name: receipt $receipt does not verify as signed by $worker" >&2; exit 1; }
    rm -rf "$work/$name.result"
    "$bin" --data-dir "$requester" get "$result" -o "$work/$name.result" >/dev/null 2>"$work/$name.get.err" \
      || { echo "check-jobs: FAILED: $name: get $result: $(cat "$work/$name.get.err")" >&2; exit 1; }
    if [ "$expected" != ANY ] && [ "$(cat "$work/$name.result/stdout")" != "$expected" ]; then
      echo "check-jobs: FAILED: $name: stdout on $worker was '$(cat "$work/$name.result/stdout")', expected '$expected'" >&2
      exit 1
    fi
    echo "check-jobs: $name: ${status//_/ } on $worker, receipt verified, stdout as expected"
  done <<<"$fields"
  local shown
  shown="$("$bin" --data-dir "$requester" receipt "$job")" \
    || { echo "check-jobs: FAILED: $name: phase-node receipt $job" >&2; exit 1; }
  grep -q '^signature: valid' <<<"$shown" \
    || { echo "check-jobs: FAILED: $name: receipt of $job: $shown" >&2; exit 1; }
  [ "$n" -ge 1 ] || { echo "check-jobs: FAILED: $name: no result" >&2; exit 1; }
}

if [ "$check_jobs" = 1 ]; then
  [ -f "$root/wasm-examples/out/hello.wasm" ] || { echo "testnet.sh: build the guests first (scripts/build-wasm-examples.sh)" >&2; exit 1; }
  expected='dlroW ,olleH'; check_job hello
  check_job hello-component
  expected=$'1\nvisits=1'; check_job kv-component
  expected="$(sha256sum <"$root/examples/texts/hello.txt")"; check_job sha256
  words="$(find "$root/examples/texts" -type f -exec cat {} + | wc -w)"
  expected="$(cd "$root/examples/texts" && for f in $(find . -type f | sed 's|^\./||' | LC_ALL=C sort); do echo "$(wc -w <"$f") $f"; done; echo "TOTAL $words")"
  check_job wordcount
  # Its output depends on the job id (randomness is seeded by it): what
  # matters is that 3 workers agree, which check_job verifies.
  expected=ANY; check_job deterministic --replicas 3
  # A short-lived requester: no daemon on its data dir; it joins through
  # node 1 on a free loopback port, prints the job's stdout and leaves.
  out="$(timeout 120 "$bin" --data-dir "$work/client" submit "$root/examples/hello.job.json" \
    --bootstrap "${addrs[0]}" --listen /ip4/127.0.0.1/udp/0/quic-v1 --no-mdns 2>"$work/client.err")" \
    || { echo "check-jobs: FAILED: short-lived requester: $(tail -n 3 "$work/client.err")" >&2; exit 1; }
  [ "$out" = 'dlroW ,olleH' ] || { echo "check-jobs: FAILED: short-lived requester printed '$out'" >&2; exit 1; }
  echo "check-jobs: hello from a short-lived requester: stdout as expected"
  # -o DIR: the result package on disk (stdout, stderr, output/); status
  # tells the job is done.
  timeout 120 "$bin" --data-dir "$work/node$nodes" submit "$root/examples/wordcount.job.json" -o "$work/package" 2>"$work/package.err" \
    || { echo "check-jobs: FAILED: submit -o: $(cat "$work/package.err")" >&2; exit 1; }
  grep -q "^TOTAL $words\$" "$work/package/output/report.txt" \
    || { echo "check-jobs: FAILED: submit -o: no report in $work/package/output" >&2; exit 1; }
  echo "check-jobs: submit -o: result package written (stdout, stderr, output/report.txt)"
  job="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job"])' "$work/hello.json")"
  state="$("$bin" --data-dir "$work/node$nodes" status "$job")"
  grep -q '^done: exited with code 0' <<<"$state" \
    || { echo "check-jobs: FAILED: status $job: $state" >&2; exit 1; }
  echo "check-jobs: status: done"
  # A job that runs out of fuel: a signed receipt says so, and submit exits
  # with run's code for it (135) and one line naming it.
  printf '{"module": {"path": "%s"}, "limits": {"fuel": 1000000}}\n' "$root/wasm-examples/out/loop.wasm" >"$work/fuel.job.json"
  code=0
  timeout 120 "$bin" --data-dir "$work/node$nodes" submit "$work/fuel.job.json" >/dev/null 2>"$work/fuel.err" || code=$?
  if [ "$code" != 135 ] || ! grep -q 'ran out of fuel' "$work/fuel.err"; then
    echo "check-jobs: FAILED: out-of-fuel job exited $code: $(cat "$work/fuel.err")" >&2; exit 1
  fi
  echo "check-jobs: out-of-fuel job: exit 135, $(cat "$work/fuel.err")"
  echo "check-jobs: all example jobs passed"
fi
if [ -n "$then_cmd" ]; then
  code=0
  TESTNET_DIR="$work" TESTNET_NODES="$nodes" TESTNET_PIDS="${pids[*]}" PHASE_NODE="$bin" \
    bash -c "$then_cmd" || code=$?
  exit "$code"
fi
[ "$check" = 1 ] || [ "$check_jobs" = 1 ] && exit 0

echo "testnet of $nodes nodes running; Ctrl-C stops it"
while true; do wait -n "${pids[@]}" || true; echo "testnet.sh: a node exited" >&2; exit 1; done
