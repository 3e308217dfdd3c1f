#!/usr/bin/env bash
# The long soak: the test node/tests/soak.rs (three daemons; honest jobs
# beside compile bombs, output floods, memory hogs and infinite loops, with
# pin ls / gc / add and garbage peers against the workers) for SECONDS
# (default 300) on a release build. The test suite runs the same test for
# 20 s on a debug build.
#
#   scripts/soak.sh [SECONDS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-300}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/soak.sh [SECONDS]" >&2; exit 2 ;;
esac
"$root/scripts/build-wasm-examples.sh"
PHASE_SOAK_SECONDS="$seconds" cargo test --release --locked -p phase-node --test soak -- --nocapture
