# Sourced by the fetch benchmarks: starts phase-node daemons for them.
# Needs $bin (the binary), $work (a scratch folder) and the array pids.

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
