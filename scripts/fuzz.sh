#!/usr/bin/env bash
# Runs every fuzz target of protocol/fuzz (cargo-fuzz, libFuzzer with
# AddressSanitizer) for SECONDS each (default 10) and prints each target's
# executions. The test command runs it for 10 s a target, one after
# another; `scripts/fuzz.sh 3600` is the long run. With FUZZ_JOBS=N, N
# targets run at once (each still runs SECONDS of wall time; on a machine
# with fewer cores than N they share them, so compare executions, not
# seconds). Installs cargo-fuzz from crates.io if it is missing. The stable
# toolchain builds the targets (RUSTC_BOOTSTRAP=1 allows the sanitizer
# flags cargo-fuzz passes). A crash leaves its input in
# protocol/fuzz/artifacts/TARGET/ and fails.
#
#   [FUZZ_JOBS=N] scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-10}"
jobs="${FUZZ_JOBS:-1}"
case "$seconds$jobs" in
  '' | *[!0-9]*) echo "usage: [FUZZ_JOBS=N] scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz --version 0.13.2
fi
cd "$root/protocol/fuzz"
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

# One target: its log in $logs/TARGET.log, its verdict in $logs/TARGET.rc.
fuzz_one() {
  local target="$1" rc=0
  mkdir -p "corpus/$target"
  cargo fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 >"$logs/$target.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$target.rc"
}

running=0
for target in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$target" &
  running=$((running + 1))
done
wait

failed=0
for target in "${targets[@]}"; do
  if [ "$(cat "$logs/$target.rc")" != 0 ]; then
    tail -n 40 "$logs/$target.log" >&2
    echo "fuzz: $target FAILED (input in protocol/fuzz/artifacts/$target/)" >&2
    failed=1
    continue
  fi
  runs="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$logs/$target.log" | tail -n 1)"
  echo "fuzz: $target: ${runs:-ran}, no crash"
done
exit "$failed"
