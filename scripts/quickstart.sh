#!/usr/bin/env bash
# For a new user on a fresh machine: installs what is needed (the wasm rustup
# targets), builds phase-node and the example guests, and runs the hello job.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/build-wasm-examples.sh"
cargo build --locked -p phase-node
bin="${CARGO_TARGET_DIR:-$root/target}/debug/phase-node"
echo "\$ echo -n 'Hello, World' | phase-node run wasm-examples/out/hello.wasm" >&2
printf 'Hello, World' | "$bin" run "$root/wasm-examples/out/hello.wasm"
