#!/usr/bin/env bash
# Runs every fuzz target of protocol/fuzz (cargo-fuzz, libFuzzer with
# AddressSanitizer) for SECONDS each (default 10), one after another, and
# prints each target's executions. The test command runs it for 10 s a
# target; `scripts/fuzz.sh 3600` is the long run. Installs cargo-fuzz from
# crates.io if it is missing. The stable toolchain builds the targets
# (RUSTC_BOOTSTRAP=1 allows the sanitizer flags cargo-fuzz passes).
# A crash leaves its input in protocol/fuzz/artifacts/TARGET/ and fails.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-10}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
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
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  if ! cargo fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target FAILED (input in protocol/fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  runs="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -n 1)"
  echo "fuzz: $target: ${runs:-ran}, no crash"
  rm -f "$log"
done
