#!/usr/bin/env bash
# The long chaos run: the test node/tests/chaos.rs (three workers, a
# requester daemon and daemonless `submit`s on loopback; workers, the
# requester daemon and submissions SIGKILLed and restarted at random, `gc`
# in a loop, workers restarted below their disk reserve) for SECONDS
# (default 600) on a release build, then the check that no submitted job
# was lost. Prints one line of numbers. The test suite runs the same test
# for 30 s on a debug build.
#
#   scripts/chaos.sh [SECONDS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-600}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/chaos.sh [SECONDS]" >&2; exit 2 ;;
esac
"$root/scripts/build-wasm-examples.sh"
PHASE_CHAOS_SECONDS="$seconds" cargo test --release --locked -p phase-node --test chaos -- --nocapture
