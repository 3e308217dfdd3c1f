#!/usr/bin/env bash
# Builds the guest programs in wasm-examples/ and copies them to
# wasm-examples/out/: every default member for wasm32-wasip1 (core modules);
# hello also for wasm32-wasip2 (a component, out/hello-component.wasm), and
# the components kv-component and fetch-url for wasm32-wasip2 only.
# Installs the two rustup targets if they are missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="$root/wasm-examples/Cargo.toml"
out="$root/wasm-examples/out"
# Guests get their own target dir: their release profile never mixes with the host's.
target="${CARGO_TARGET_DIR:-$root/target}/wasm-examples"

installed="$(rustup target list --installed)"
for t in wasm32-wasip1 wasm32-wasip2; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

CARGO_TARGET_DIR="$target" cargo build --quiet --release --manifest-path "$manifest" --target wasm32-wasip1
CARGO_TARGET_DIR="$target" cargo build --quiet --release --manifest-path "$manifest" --target wasm32-wasip2 -p hello -p kv-component -p fetch-url

mkdir -p "$out"
for bin in hello wordcount sha256 manyfiles loop memhog stack-overflow print-forever escape clock-random output-flood probe-fs state-abuse counter state-bench; do
  cp "$target/wasm32-wasip1/release/$bin.wasm" "$out/$bin.wasm"
done
cp "$target/wasm32-wasip2/release/hello.wasm" "$out/hello-component.wasm"
for bin in kv-component fetch-url; do
  cp "$target/wasm32-wasip2/release/$bin.wasm" "$out/$bin.wasm"
done
echo "built $(ls "$out" | wc -l) guests in $out" >&2
