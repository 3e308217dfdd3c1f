#!/usr/bin/env bash
# A small internet in network namespaces, and phase-node daemons behind NAT
# routers in it (root only; nothing leaves the namespaces it creates).
#
#   scripts/nat-lab.sh [--reps N] [--transport tcp|quic|both]
#                      [--scenario all|direct|symmetric|relay-restart]
#                      [--symmetric] [--json FILE]
#
# The internet is a bridge on 198.51.100.0/24 (a documentation range):
#   relay  198.51.100.1   public bootstrap node, relay and AutoNAT server
#   pub    198.51.100.2   a public node (requester or worker in scenarios)
#   r1/r2  198.51.100.11/.12   NAT routers of home networks 10.0.1.0/24 and
#          10.0.2.0/24, one daemon behind each (h1 at 10.0.1.2, h2 at
#          10.0.2.2). Endpoint-independent masquerade (keeps the port) by
#          default; --symmetric (random port per destination) on both.
# Routers drop every new connection from the internet; only replies (and
# punched holes) come in.
#
# Scenarios (all by default):
#   direct         N fresh pairs (new identities) per transport: h1 submits
#                  hello.job.json, h2 runs it; the receipt verifies, the
#                  connection that carried the job is direct (peers --json)
#                  and r1's conntrack holds a flow between 198.51.100.11 and
#                  198.51.100.12, and the requester's relayed bytes stay
#                  within one circuit's limit. Prints how many went direct
#                  and the time to a reservation and from relayed contact
#                  to direct.
#   symmetric      h2 behind a symmetric NAT, the requester public: the job
#                  completes. Then both NATs symmetric and a public worker
#                  with fewer slots: the requester reports "reachable only
#                  through a relay" for h2 and completes on the public one.
#   relay-restart  the relay restarts; h2 reserves again and a job from h1
#                  completes.
#   worker         default flags behind both NATs: h1 submits with
#                  --worker naming h2 (not connected: its addresses, relay
#                  circuit included, come from the DHT) and the job ends
#                  over a direct connection; --worker naming a peer that
#                  does not exist says so.
#   lan            a home LAN without internet (a bridge, 10.0.9.0/24), two
#                  daemons with default flags and mDNS on, no bootstrap:
#                  one submits hello.job.json and it runs on the other, and
#                  a file added on one is fetched on the other.
# Exit status: 0 when every scenario passed (direct: at most one rep per
# transport not direct), 1 otherwise, 77 when not root.
#
# Needs: iproute2, iptables, conntrack, jq, curl (installed with apt-get when
# missing), and wasm-examples/out/hello.wasm (scripts/build-wasm-examples.sh).
# The binary: $PHASE_NODE, else built with cargo.
set -euo pipefail

reps=20
transports=(tcp quic)
scenario=all
symmetric=0
json_out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="${2:?--reps needs a number}"; shift 2 ;;
    --transport)
      case "${2:-}" in
        tcp|quic) transports=("$2") ;;
        both) transports=(tcp quic) ;;
        *) echo "nat-lab.sh: --transport is tcp, quic or both" >&2; exit 2 ;;
      esac
      shift 2 ;;
    --scenario) scenario="${2:?--scenario needs a name}"; shift 2 ;;
    --symmetric) symmetric=1; shift ;;
    --json) json_out="${2:?--json needs a file}"; shift 2 ;;
    -h|--help) sed -n '2,48p' "$0"; exit 0 ;;
    *) echo "nat-lab.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$scenario" in all|direct|symmetric|relay-restart|worker|lan) ;; *)
  echo "nat-lab.sh: unknown scenario $scenario" >&2; exit 2 ;;
esac
[[ "$reps" =~ ^[0-9]+$ ]] && [ "$reps" -ge 1 ] || { echo "nat-lab.sh: --reps must be at least 1" >&2; exit 2; }

if [ "$(id -u)" != 0 ]; then
  echo "nat-lab.sh: needs root to create network namespaces; skipped" >&2
  exit 77
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if [ "${#need[@]}" -gt 0 ]; then
  echo "nat-lab: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
hello="$root/wasm-examples/out/hello.wasm"
[ -f "$hello" ] || { echo "nat-lab.sh: $hello is missing; run scripts/build-wasm-examples.sh" >&2; exit 1; }

bin="${PHASE_NODE:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --quiet -p phase-node)
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/phase-node"
fi

P="pn$$"
work="$(mktemp -d -t phase-natlab.XXXXXX)"
namespaces=()
pids=()
log() { echo "nat-lab: $*" >&2; }

cleanup() {
  set +e
  # NATLAB_KEEP=DIR keeps the daemons' logs of failed reps for a look.
  [ -z "${NATLAB_KEEP:-}" ] || { mkdir -p "$NATLAB_KEEP"; cp "$work"/*.log "$NATLAB_KEEP"/ 2>/dev/null; }
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  for n in "${namespaces[@]}"; do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    ip netns del "$n" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { local n="$1"; shift; ip netns exec "$P-$n" "$@"; }
mkns() {
  ip netns add "$P-$1"
  namespaces+=("$P-$1")
  ns "$1" ip link set lo up
}

# The internet: a bridge in its own namespace.
build_internet() {
  mkns inet
  ns inet ip link add br0 type bridge
  ns inet ip link set br0 up
}

# attach NS IFNAME IP: a veth from NS (named IFNAME there) to the bridge.
attach() {
  local n="$1" ifname="$2" ip="$3" peer="${P}${1}"
  ip link add "${peer}a" type veth peer name "${peer}b"
  ip link set "${peer}a" netns "$P-$n"
  ip link set "${peer}b" netns "$P-inet"
  ns "$n" ip link set "${peer}a" name "$ifname"
  ns "$n" ip addr add "$ip/24" dev "$ifname"
  ns "$n" ip link set "$ifname" up
  ns inet ip link set "${peer}b" master br0
  ns inet ip link set "${peer}b" up
}

public_host() { mkns "$1"; attach "$1" wan "$2"; }

# home K SYMMETRIC: router rK (198.51.100.1K) and host hK (10.0.K.2).
home() {
  local k="$1" sym="$2" lan="10.0.$1.0/24"
  mkns "r$k"
  attach "r$k" wan "198.51.100.1$k"
  mkns "h$k"
  ip link add "${P}l${k}a" type veth peer name "${P}l${k}b"
  ip link set "${P}l${k}a" netns "$P-r$k"
  ip link set "${P}l${k}b" netns "$P-h$k"
  ns "r$k" ip link set "${P}l${k}a" name lan
  ns "h$k" ip link set "${P}l${k}b" name eth0
  ns "r$k" ip addr add "10.0.$k.1/24" dev lan
  ns "r$k" ip link set lan up
  ns "h$k" ip addr add "10.0.$k.2/24" dev eth0
  ns "h$k" ip link set eth0 up
  ns "h$k" ip route add default via "10.0.$k.1"
  ns "r$k" sysctl -qw net.ipv4.ip_forward=1
  set_nat "$k" "$sym"
}

# set_nat K SYMMETRIC: the router's NAT and filter rules, replaced.
set_nat() {
  local k="$1" sym="$2" random=()
  [ "$sym" = 1 ] && random=(--random-fully)
  ns "r$k" iptables -t nat -F
  ns "r$k" iptables -F
  ns "r$k" iptables -t nat -A POSTROUTING -s "10.0.$k.0/24" -o wan -j MASQUERADE "${random[@]}"
  ns "r$k" iptables -P FORWARD DROP
  ns "r$k" iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  ns "r$k" iptables -A FORWARD -i lan -o wan -j ACCEPT
  ns "r$k" iptables -A INPUT -i wan -m conntrack --ctstate NEW -j DROP
  ns "r$k" conntrack -F >/dev/null 2>&1 || true
}

build_internet
public_host relay 198.51.100.1
public_host pub 198.51.100.2
home 1 "$symmetric"
home 2 "$symmetric"

# Ports and addresses per transport.
listen_of() { # TRANSPORT IP
  case "$1" in
    tcp) echo "/ip4/$2/tcp/4001" ;;
    quic) echo "/ip4/$2/udp/4001/quic-v1" ;;
  esac
}

# start_daemon NAME NS DATADIR ARGS...: starts a daemon in NS (mDNS off:
# MDNS=1 leaves it on), logs to $work/NAME.log, waits until its API answers.
start_daemon() {
  local name="$1" n="$2" dir="$3"; shift 3
  local mdns=(--no-mdns)
  [ "${MDNS:-0}" = 1 ] && mdns=()
  # Not through the ns function: $! must be the daemon itself.
  ip netns exec "$P-$n" env NO_COLOR=1 RUST_LOG="${NATLAB_LOG:-phase_node=info}" \
    "$bin" --data-dir "$dir" start "${mdns[@]}" "$@" \
    >"$work/$name.out" 2>>"$work/$name.log" &
  pids+=("$!")
  eval "pid_$name=$!"
  local i
  for i in $(seq 1 300); do
    [ -S "$dir/api.sock" ] && "$bin" --data-dir "$dir" id --json >/dev/null 2>&1 && return 0
    kill -0 "$!" 2>/dev/null || { log "$name exited: $(tail -n 3 "$work/$name.log")"; return 1; }
    sleep 0.05
  done
  log "$name did not come up"; return 1
}

stop_daemon() { # NAME
  local var="pid_$1" pid
  pid="${!var:-}"
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  eval "pid_$1="
}

peer_id() { "$bin" --data-dir "$1" id --json | jq -r .peer_id; }

# wait_until SECONDS CMD...: polls CMD every 50 ms.
wait_until() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

metrics() { curl -sf --unix-socket "$1/api.sock" http://phase-node/metrics; }
# Bytes that crossed relayed connections (libp2p's bandwidth counters by
# protocol stack), both directions.
relayed_bytes() { awk '/^libp2p_bandwidth_bytes_total\{.*p2p-circuit/ { s += $NF } END { printf "%d", s }'; }
counter() { awk -v m="$1" '$1 == m { s += $2 } END { printf "%d", s }'; }

has_relay() { [ "$("$bin" --data-dir "$1" id --json | jq '.relays | length')" -gt 0 ]; }

now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
# Seconds since the epoch of a log line's RFC 3339 timestamp.
log_time() { # FILE PATTERN
  local line
  line="$(grep -m1 -- "$2" "$1" | sed 's/\x1b\[[0-9;]*m//g' | awk '{print $1}')"
  [ -n "$line" ] && date -d "$line" +%s.%N
}

results="$work/results.jsonl"
: >"$results"
record() { echo "$1" >>"$results"; }

relay_dir="$work/relay"
relay_id=""
start_relay() { # TRANSPORT
  local t="$1"
  start_daemon relay relay "$relay_dir" --no-worker --dht-mode server \
    --listen "$(listen_of "$t" 198.51.100.1)" --external "$(listen_of "$t" 198.51.100.1)"
  relay_id="$(peer_id "$relay_dir")"
}

conntrack_direct() { # between the two routers' public addresses, seen by r1
  ns r1 conntrack -L 2>/dev/null | grep -q "dst=198.51.100.12 .*dst=198.51.100.11"
}

# submit_found DATADIR: submits hello.job.json as JSON; a worker that has
# just reserved its relay slot may not be in the DHT yet, so "no worker
# found" is retried (5 times, 1 s apart).
submit_found() {
  local i out
  for i in 1 2 3 4 5; do
    if out="$("$bin" --data-dir "$1" submit "$root/examples/hello.job.json" --json --timeout 90s 2>"$work/submit.err")"; then
      echo "$out"; return 0
    fi
    grep -q "no worker found" "$work/submit.err" || return 1
    sleep 1
  done
  return 1
}

# One fresh pair: h2 (worker) and h1 (requester), both behind NAT.
# Prints a JSON line; returns 0 when the job completed over a direct
# connection.
pair_rep() { # TRANSPORT REP
  local t="$1" rep="$2"
  local d1="$work/h1-$t-$rep" d2="$work/h2-$t-$rep"
  # A fresh relay too (same identity, empty memory): the DHT holds no
  # records of the last reps' workers, and the relay's per-IP circuit rate
  # limit (libp2p's: 60, one more a minute) starts full.
  start_relay "$t"
  local boot; boot="$(listen_of "$t" 198.51.100.1)/p2p/$relay_id"
  # Fresh routers too: a rep must not meet the last rep's mappings.
  ns r1 conntrack -F >/dev/null 2>&1 || true
  ns r2 conntrack -F >/dev/null 2>&1 || true
  local t0; t0="$(now)"
  start_daemon "h2" h2 "$d2" --listen "$(listen_of "$t" 0.0.0.0)" --bootstrap "$boot" --slots 1
  start_daemon "h1" h1 "$d1" --no-worker --listen "$(listen_of "$t" 0.0.0.0)" --bootstrap "$boot"
  local ok=1 reserve="" punch="" direct=false conntrack=false verified=false relayed_bytes=0 punches=0
  if wait_until 60 has_relay "$d2"; then
    reserve="$(sub "$(now)" "$t0")"
  else
    log "$t rep $rep: h2 made no reservation"; ok=0
  fi
  local worker="" out
  if [ "$ok" = 1 ]; then
    worker="$(peer_id "$d2")"
    if out="$(submit_found "$d1")"; then
      [ "$(echo "$out" | jq -r '.results[0].worker')" = "$worker" ] && verified=true
      echo "$out" | jq -e '.results[0].receipt' >/dev/null || verified=false
    else
      log "$t rep $rep: submit failed: $(tail -n 1 "$work/submit.err")"
    fi
    local conns
    conns="$("$bin" --data-dir "$d1" peers --json)"
    if echo "$conns" | jq -e --arg w "$worker" \
      '[.connections[] | select(.peer == $w)] | length > 0 and all(.relayed == false)' >/dev/null; then
      direct=true
    fi
    conntrack_direct && conntrack=true
    metrics "$d1" >"$work/h1.metrics" || true
    metrics "$d2" >"$work/h2.metrics" || true
    relayed_bytes="$(relayed_bytes <"$work/h1.metrics")"
    punches="$(counter phase_hole_punch_successes_total <"$work/h1.metrics")"
    punches=$(( punches + $(counter phase_hole_punch_successes_total <"$work/h2.metrics") ))
    [ -z "${NATLAB_METRICS:-}" ] || cp "$work/h1.metrics" "$NATLAB_METRICS"
    local relayed_at punched_at
    relayed_at="$(log_time "$work/h1.log" "connected through a relay.*$worker" || true)"
    punched_at="$(log_time "$work/h1.log" "direct connection replaces a relayed one.*$worker" || true)"
    if [ -n "$relayed_at" ] && [ -n "$punched_at" ]; then
      punch="$(sub "$punched_at" "$relayed_at")"
    fi
  fi
  stop_daemon h1; stop_daemon h2; stop_daemon relay
  # Fresh logs for the next rep (kept on failure for the report).
  # Job data never crossed the relay: what did is within one circuit's
  # limit (128 KiB each way).
  local within=false
  [ "$relayed_bytes" -le $(( 2 * 131072 )) ] && within=true
  if [ "$verified" = true ] && [ "$direct" = true ] && [ "$conntrack" = true ] && [ "$within" = true ]; then
    rm -f "$work/h1.log" "$work/h2.log"
  else
    mv "$work/h1.log" "$work/h1-$t-$rep.log" 2>/dev/null || true
    mv "$work/h2.log" "$work/h2-$t-$rep.log" 2>/dev/null || true
  fi
  rm -f "$work/relay.log"
  rm -rf "$d1" "$d2"
  record "$(jq -nc --arg s direct --arg t "$t" --argjson rep "$rep" \
    --argjson verified "$verified" --argjson direct "$direct" --argjson conntrack "$conntrack" \
    --arg reserve "$reserve" --arg punch "$punch" --argjson relayed "$relayed_bytes" --argjson punches "$punches" \
    '{scenario:$s, transport:$t, rep:$rep, verified:$verified, direct:$direct, conntrack:$conntrack,
      reserve_s:($reserve|tonumber? // null), relayed_to_direct_s:($punch|tonumber? // null),
      relayed_bytes:$relayed, hole_punch_successes:$punches}')"
  [ "$verified" = true ] && [ "$direct" = true ] && [ "$conntrack" = true ] && [ "$within" = true ]
}

# median and p95 of numbers on stdin
stats() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "n/a"; exit} m=a[int((NR+1)/2)]; p=a[int(NR*0.95+0.999)]; if (p=="") p=a[NR]; printf "median %.2fs, p95 %.2fs (n=%d)", m, p, NR}'; }

failed=0

scenario_direct() {
  local t
  for t in "${transports[@]}"; do
    local rep good=0
    for rep in $(seq 1 "$reps"); do
      if pair_rep "$t" "$rep"; then good=$((good + 1)); fi
    done
    rm -rf "$relay_dir"
    local allowed=$(( reps / 20 ))
    log "direct/$t: $good of $reps jobs went direct and verified"
    log "direct/$t: start to reservation: $(jq -r "select(.transport==\"$t\" and .scenario==\"direct\") | .reserve_s // empty" "$results" | stats)"
    log "direct/$t: relayed contact to direct: $(jq -r "select(.transport==\"$t\" and .scenario==\"direct\") | .relayed_to_direct_s // empty" "$results" | stats)"
    if [ $(( reps - good )) -gt "$allowed" ]; then
      log "direct/$t: FAILED (at most $allowed may fail)"; failed=1
      ls "$work"/h1-"$t"-*.log >/dev/null 2>&1 && for f in "$work"/h1-"$t"-*.log; do
        log "--- $f"; tail -n 15 "$f" >&2
      done
    fi
  done
}

scenario_symmetric() {
  local t="${transports[0]}" out
  # 1. h2 behind a symmetric NAT, requester public.
  set_nat 2 1
  start_relay "$t"
  local boot; boot="$(listen_of "$t" 198.51.100.1)/p2p/$relay_id"
  start_daemon h2 h2 "$work/s-h2" --listen "$(listen_of "$t" 0.0.0.0)" --bootstrap "$boot" --slots 4
  start_daemon pub pub "$work/s-pub" --no-worker --listen "$(listen_of "$t" 198.51.100.2)" --bootstrap "$boot"
  if wait_until 60 has_relay "$work/s-h2" \
    && out="$(submit_found "$work/s-pub")" \
    && [ "$(echo "$out" | jq -r '.results[0].worker')" = "$(peer_id "$work/s-h2")" ]; then
    log "symmetric/$t: a public requester's job ran on the worker behind a symmetric NAT"
    record '{"scenario":"symmetric-public-requester","ok":true}'
  else
    log "symmetric/$t: FAILED: public requester to symmetric worker: $(tail -n 1 "$work/submit.err" 2>/dev/null)"
    record '{"scenario":"symmetric-public-requester","ok":false}'
    failed=1
  fi
  stop_daemon pub
  # 2. Both NATs symmetric; a public worker with one slot ranks after h2.
  set_nat 1 1
  start_daemon pubw pub "$work/s-pubw" --listen "$(listen_of "$t" 198.51.100.2)" --bootstrap "$boot" --slots 1
  # This one names its relay (--relay) instead of finding it.
  start_daemon h1 h1 "$work/s-h1" --no-worker --listen "$(listen_of "$t" 0.0.0.0)" --bootstrap "$boot" --relay "$boot"
  wait_until 60 has_relay "$work/s-h1" || true
  local started; started="$(date +%s)"
  if out="$("$bin" --data-dir "$work/s-h1" submit "$root/examples/hello.job.json" --json --timeout 120s 2>"$work/submit.err")"; then
    local took=$(( $(date +%s) - started ))
    local relay_only
    relay_only="$(echo "$out" | jq -r '[.failed_attempts[].error | select(test("reachable only through a relay"))] | length')"
    if [ "$(echo "$out" | jq -r '.results[0].worker')" = "$(peer_id "$work/s-pubw")" ]; then
      log "symmetric/$t: two symmetric NATs: done on the public worker in ${took}s; relay-only reports: $relay_only"
      echo "$out" | jq -r '.failed_attempts[] | "nat-lab:   passed over \(.worker): \(.error)"' >&2
      record "$(jq -nc --argjson n "$relay_only" --argjson s "$took" '{scenario:"symmetric-both", ok:true, relay_only_reports:$n, seconds:$s}')"
    else
      log "symmetric/$t: FAILED: the job did not run on the public worker"; failed=1
    fi
  else
    log "symmetric/$t: FAILED: two symmetric NATs: $(tail -n 1 "$work/submit.err")"; failed=1
  fi
  # 3. Two symmetric NATs and no other worker: one line, within the deadline.
  stop_daemon pubw
  started="$(date +%s)"
  if "$bin" --data-dir "$work/s-h1" submit "$root/examples/hello.job.json" --timeout 90s >/dev/null 2>"$work/submit.err"; then
    log "symmetric/$t: FAILED: a job succeeded with only a relay-only worker"; failed=1
  else
    local took=$(( $(date +%s) - started ))
    log "symmetric/$t: with only a relay-only worker, after ${took}s: $(tail -n 1 "$work/submit.err")"
    if ! grep -q "reachable only through a relay" "$work/submit.err"; then
      log "symmetric/$t: FAILED: the error does not say why"; failed=1
    fi
  fi
  stop_daemon h1; stop_daemon h2; stop_daemon relay
  rm -rf "$relay_dir"
  set_nat 1 "$symmetric"; set_nat 2 "$symmetric"
}

is_private() { [ "$("$bin" --data-dir "$1" id --json | jq -r .reachability)" = private ]; }

# Private nodes learn they are private (AutoNAT v2: the relay's dial-back
# is dropped by their router), stay DHT clients and stay out of the relay's
# routing table; the relay is a DHT server.
dht_hygiene() {
  local d id
  for d in "$work/rr-h1" "$work/rr-h2"; do
    if ! wait_until 60 is_private "$d"; then
      log "dht: FAILED: $(basename "$d") did not learn it is private"; failed=1; continue
    fi
    id="$(peer_id "$d")"
    if "$bin" --data-dir "$d" id --json | jq -e '.dht_server' >/dev/null; then
      log "dht: FAILED: private $(basename "$d") is a DHT server"; failed=1
    fi
    if "$bin" --data-dir "$relay_dir" peers --json | jq -e --arg id "$id" '.peers | index($id)' >/dev/null; then
      log "dht: FAILED: the relay routes DHT queries to private $(basename "$d")"; failed=1
    fi
    [ "$(metrics "$d" | counter 'phase_reachability{kind="private"}')" = 1 ] \
      || { log "dht: FAILED: /metrics of $(basename "$d") does not say private"; failed=1; }
  done
  if "$bin" --data-dir "$relay_dir" id --json | jq -e '.dht_server and .reachability == "public"' >/dev/null; then
    log "dht: private nodes are DHT clients outside the relay's routing table; the public relay is a server"
  else
    log "dht: FAILED: the relay is not a public DHT server"; failed=1
  fi
}

scenario_relay_restart() {
  local t="${transports[0]}"
  start_relay "$t"
  local boot; boot="$(listen_of "$t" 198.51.100.1)/p2p/$relay_id"
  start_daemon h2 h2 "$work/rr-h2" --listen "$(listen_of "$t" 0.0.0.0)" --bootstrap "$boot"
  start_daemon h1 h1 "$work/rr-h1" --no-worker --listen "$(listen_of "$t" 0.0.0.0)" --bootstrap "$boot"
  wait_until 60 has_relay "$work/rr-h2" || { log "relay-restart: FAILED: no first reservation"; failed=1; return; }
  dht_hygiene
  stop_daemon relay
  wait_until 30 bash -c "! $(printf %q "$bin") --data-dir $(printf %q "$work/rr-h2") id --json | jq -e '.relays | length > 0'" || true
  local t0; t0="$(now)"
  start_relay "$t"
  if wait_until 60 has_relay "$work/rr-h2"; then
    local took; took="$(sub "$(now)" "$t0")"
    log "relay-restart: h2 reserved again $(printf '%.1f' "$took")s after the relay came back"
    if submit_found "$work/rr-h1" >/dev/null; then
      log "relay-restart: a job from h1 ran on h2 after the restart"
      record "$(jq -nc --arg s "$took" '{scenario:"relay-restart", ok:true, re_reserve_s:($s|tonumber)}')"
    else
      log "relay-restart: FAILED: job after restart: $(tail -n 1 "$work/submit.err")"; failed=1
    fi
  else
    log "relay-restart: FAILED: no reservation within 60 s of the restart"; failed=1
  fi
  stop_daemon h1; stop_daemon h2; stop_daemon relay
  rm -rf "$relay_dir"
}

# --worker PEERID to a worker behind NAT that the requester has never met.
scenario_worker() {
  local t="${transports[0]}" out
  start_relay "$t"
  local boot; boot="$(listen_of "$t" 198.51.100.1)/p2p/$relay_id"
  start_daemon h2 h2 "$work/w-h2" --listen "$(listen_of "$t" 0.0.0.0)" --bootstrap "$boot"
  start_daemon h1 h1 "$work/w-h1" --no-worker --listen "$(listen_of "$t" 0.0.0.0)" --bootstrap "$boot"
  wait_until 60 has_relay "$work/w-h2" || { log "worker: FAILED: h2 made no reservation"; failed=1; }
  local worker; worker="$(peer_id "$work/w-h2")"
  if out="$("$bin" --data-dir "$work/w-h1" submit "$root/examples/hello.job.json" --worker "$worker" --json --timeout 90s 2>"$work/submit.err")" \
    && [ "$(echo "$out" | jq -r '.results[0].worker')" = "$worker" ] \
    && "$bin" --data-dir "$work/w-h1" peers --json | jq -e --arg w "$worker" \
      '[.connections[] | select(.peer == $w)] | length > 0 and all(.relayed == false)' >/dev/null; then
    log "worker/$t: submit --worker to a worker behind NAT completed over a direct connection"
  else
    log "worker/$t: FAILED: submit --worker: $(tail -n 2 "$work/submit.err")"; failed=1
  fi
  local nobody=12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA
  if "$bin" --data-dir "$work/w-h1" submit "$root/examples/hello.job.json" --worker "$nobody" --timeout 90s >/dev/null 2>"$work/submit.err"; then
    log "worker/$t: FAILED: a job ran on a peer that does not exist"; failed=1
  elif grep -q "no address found" "$work/submit.err"; then
    log "worker/$t: --worker naming no peer: $(tail -n 1 "$work/submit.err")"
  else
    log "worker/$t: FAILED: --worker naming no peer does not say so: $(tail -n 1 "$work/submit.err")"; failed=1
  fi
  stop_daemon h1; stop_daemon h2; stop_daemon relay
  rm -rf "$relay_dir"
}

# Two default daemons on a LAN of their own, found by mDNS.
scenario_lan() {
  ns inet ip link add br1 type bridge
  ns inet ip link set br1 up
  local k
  for k in 1 2; do
    mkns "l$k"
    ip link add "${P}m${k}a" type veth peer name "${P}m${k}b"
    ip link set "${P}m${k}a" netns "$P-l$k"
    ip link set "${P}m${k}b" netns "$P-inet"
    ns "l$k" ip link set "${P}m${k}a" name eth0
    ns "l$k" ip addr add "10.0.9.$((k + 1))/24" dev eth0
    ns "l$k" ip link set eth0 up
    ns "l$k" ip link set eth0 multicast on
    ns "l$k" ip route add 224.0.0.0/4 dev eth0
    ns inet ip link set "${P}m${k}b" master br1
    ns inet ip link set "${P}m${k}b" up
  done
  MDNS=1 start_daemon l2 l2 "$work/lan-l2"
  MDNS=1 start_daemon l1 l1 "$work/lan-l1" --no-worker
  local worker out; worker="$(peer_id "$work/lan-l2")"
  if out="$("$bin" --data-dir "$work/lan-l1" submit "$root/examples/hello.job.json" --json --timeout 90s 2>"$work/submit.err")" \
    && [ "$(echo "$out" | jq -r '.results[0].worker')" = "$worker" ]; then
    log "lan: a job from l1 ran on l2, found with default flags over mDNS"
  else
    log "lan: FAILED: submit on the LAN: $(tail -n 2 "$work/submit.err")"; failed=1
  fi
  head -c 300000 /dev/urandom >"$work/lan-file"
  local cid; cid="$("$bin" --data-dir "$work/lan-l2" add "$work/lan-file")"
  if "$bin" --data-dir "$work/lan-l1" get "$cid" -o "$work/lan-got" 2>"$work/get.err" \
    && cmp -s "$work/lan-file" "$work/lan-got"; then
    log "lan: a file added on l2 was fetched on l1"
  else
    log "lan: FAILED: get on the LAN: $(tail -n 2 "$work/get.err")"; failed=1
  fi
  stop_daemon l1; stop_daemon l2
}

case "$scenario" in
  all) scenario_direct; scenario_symmetric; scenario_relay_restart; scenario_worker; scenario_lan ;;
  direct) scenario_direct ;;
  symmetric) scenario_symmetric ;;
  relay-restart) scenario_relay_restart ;;
  worker) scenario_worker ;;
  lan) scenario_lan ;;
esac

[ -z "$json_out" ] || cp "$results" "$json_out"
if [ "$failed" = 0 ]; then log "all scenarios passed"; else log "some scenarios FAILED"; fi
exit "$failed"
