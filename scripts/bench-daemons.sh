# Sourced by the fetch benchmarks: a scratch folder removed on exit, and
# phase-node daemons started in it (stopped on exit). Needs $bin, the binary.

work="$(mktemp -d -t phase-bench.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start() { # name [bootstrap]; sets $addr and $pid
  local fifo="$work/$1.out" args=(--data-dir "$work/$1" start --listen /ip4/127.0.0.1/udp/0/quic-v1 --no-mdns --dht-mode server)
  mkfifo "$fifo"
  [ -n "${2:-}" ] && args+=(--bootstrap "$2")
  "$bin" "${args[@]}" >"$fifo" 2>"$work/$1.log" &
  pid=$!
  pids+=("$pid")
  local fd
  exec {fd}<"$fifo"
  read -r -t 60 -u "$fd" addr
}
