#!/usr/bin/env bash
# Datapath traffic benchmark: a client and a server workload, each in its own network namespace
# behind a router namespace (the "host"), measured with no filtering, iptables (legacy and nft
# backends) with N linear rules, nftables with one set lookup, and Bulkhead (the real agent and
# eBPF datapath) with N policy rules, interleaved over rounds; prints every figure with its ratio
# against no filtering in the same round, and the CPU cost per operation.
# Usage: run.sh [--quick] [--bulkhead PATH] [--loadgen PATH] [--rounds R] [--duration S]
#               [--n "10 100 1000 10000"]
#               [--configs "none iptables-legacy iptables-nft nft bulkhead bulkhead-noev"]
#               [--out DIR] [--nice N]
# bulkhead-noev is Bulkhead with the events of allowed new flows switched off in the datapath
# (bh_settings.events_off), which shows what flow events cost in the kernel and the agent.
# --nice: priority of everything the benchmark runs (default -10), so that other work on a
# shared machine (builds at nice 0) takes less of the CPU from the loads; 0 leaves it alone.
# The request/response load (client and server) runs SCHED_FIFO on CPU 0, so that its latency is
# the network path's (and two context switches), not the wait for a CPU that other work holds
# nor a cross-CPU wake-up whose cost depends on what the other CPU is doing.
# Needs root. Everything it makes has a unique name and is removed on exit.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BH="$ROOT/build/src/cli/bulkhead"
LG="$ROOT/build/bench/datapath/datapath_loadgen"
ROUNDS=5
DURATION=3
NS_LIST="10 100 1000 10000"
CONFIGS="none iptables-legacy iptables-nft nft bulkhead bulkhead-noev"
OUT=""
THREADS=4  # concurrent connection loops of the connect test
NICE=-10   # the loads, server and agent run at this priority (see --nice)
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) ROUNDS=1; DURATION=1; NS_LIST="10 100"; shift ;;
    --bulkhead) BH=$2; shift 2 ;;
    --loadgen) LG=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --n) NS_LIST=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --nice) NICE=$2; shift 2 ;;
    *) echo "usage: $0 [--quick] [--bulkhead PATH] [--loadgen PATH] [--rounds R] [--duration S] [--n LIST] [--configs LIST] [--out DIR] [--nice N]" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: the datapath benchmark needs root (network namespaces, bpffs, TC, netfilter)" >&2
  exit 77
fi
for tool in ip nsenter socat timeout mount iptables-legacy-restore iptables-nft-restore nft python3 \
  bpftool chrt taskset pgrep renice; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done
for bin in "$BH" "$LG"; do
  [ -x "$bin" ] || { echo "FAIL: $bin is not built (see --bulkhead, --loadgen)" >&2; exit 1; }
done
BH=$(readlink -f "$BH")
LG=$(readlink -f "$LG")
# Children inherit the priority: servers, loads and the agent.
[ "$NICE" = 0 ] || renice -n "$NICE" -p $$ >/dev/null || { echo "FAIL: renice $NICE" >&2; exit 1; }

ID=$(printf '%04x' $((($$ + RANDOM) % 65536)))
T=$(mktemp -d "/tmp/bh-bench-$ID.XXXX")
[ -n "$OUT" ] || OUT="$T/out"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
R="bb${ID}r"; C="bb${ID}c"; S="bb${ID}s"  # router ("host"), client, server netns
HC="b${ID}c"; HS="b${ID}s"                # host-side veths (in $R)
CIP=10.215.0.1; SIP=10.215.0.2
PORT=5001    # what the policies allow from the client to the server (TCP and UDP)
DENIED=5002  # what they do not: each filter is checked to drop it
AGENT_PID=""
SERVER_PID=""
FAILS=0

cleanup() {
  set +e
  [ -n "$AGENT_PID" ] && kill -9 "$AGENT_PID" 2>/dev/null
  for n in "$C" "$S" "$R"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
  umount "$T/bpffs" 2>/dev/null
  rm -rf "$T"  # results survive only in a chosen --out
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
in_ns() { local n=$1; shift; nsenter --net="/var/run/netns/$n" "$@"; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# ---- topology: client netns <-> veth <-> router netns <-> veth <-> server netns ----
# Made fresh for every configuration, so that no state (conntrack, netfilter tables that
# iptables-legacy cannot unregister, TC filters) carries over from one to the next.
topology_up() {
  ip netns add "$R" && ip netns add "$C" && ip netns add "$S" || return 1
  in_ns "$R" ip link set lo up
  in_ns "$R" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  local ns host ip
  for pair in "$C:$HC:$CIP" "$S:$HS:$SIP"; do
    IFS=: read -r ns host ip <<<"$pair"
    ip link add "$host" netns "$R" type veth peer name eth0 netns "$ns" || return 1
    in_ns "$ns" ip link set lo up
    in_ns "$ns" ip addr add "$ip/32" dev eth0
    in_ns "$ns" ip link set eth0 up
    in_ns "$ns" ip route add default dev eth0
    in_ns "$R" sysctl -qw "net.ipv4.conf.$host.proxy_arp=1" "net.ipv4.conf.$host.rp_filter=0" \
      "net.ipv4.neigh.$host.proxy_delay=0"
    in_ns "$R" ip link set "$host" up
    in_ns "$R" ip route add "$ip/32" dev "$host"
  done
  # The connect test closes with RST, so ports are free at once; a wide range anyway.
  in_ns "$C" sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
  in_ns "$S" sysctl -qw net.core.somaxconn=4096
  # nsenter execs, so $! is the server itself (its CPU is counted, its threads moved for rr).
  # The log is removed first: a truncation in the child may come after our first look at it.
  rm -f "$T/server.log"
  nsenter --net="/var/run/netns/$S" "$LG" server --port "$PORT" --port "$DENIED" --threads 2 >"$T/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 50); do
    if grep -q serving "$T/server.log" 2>/dev/null; then
      [ "$(readlink "/proc/$SERVER_PID/exe")" = "$LG" ] && return 0
      echo "pid $SERVER_PID is not the server" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "server did not start: $(cat "$T/server.log")" >&2
  return 1
}

topology_down() {
  # The server exits 0 on SIGTERM (the shell would report a job killed by a signal).
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
  fi
  for n in "$C" "$S" "$R"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  for n in "$C" "$S" "$R"; do ip netns del "$n" 2>/dev/null; done
  # The kernel dismantles namespaces in a work queue; let that finish outside a measurement.
  sleep 1
}

# ---- rule sets: N rules, the matching one last ----
# Rule i < N: TCP from 172.16.x.y/32 (no workload) to the server, port 1024+i; rule N: the
# client to the server on $PORT, TCP and UDP. iptables needs one line per protocol for the
# last rule (TCP traffic matches at position N, UDP at N+1, after ESTABLISHED at position 0).
other_source() { echo "172.$((16 + $1 / 62500)).$((($1 / 250) % 250)).$(($1 % 250 + 1))"; }

write_iptables() {  # N FILE
  local n=$1 f=$2 i
  {
    echo "*filter"
    echo ":INPUT ACCEPT [0:0]"
    echo ":FORWARD DROP [0:0]"
    echo ":OUTPUT ACCEPT [0:0]"
    echo "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    for ((i = 1; i < n; i++)); do
      echo "-A FORWARD -s $(other_source "$i")/32 -d $SIP/32 -p tcp -m tcp --dport $((1024 + i)) -j ACCEPT"
    done
    echo "-A FORWARD -s $CIP/32 -d $SIP/32 -p tcp -m tcp --dport $PORT -j ACCEPT"
    echo "-A FORWARD -s $CIP/32 -d $SIP/32 -p udp -m udp --dport $PORT -j ACCEPT"
    echo "COMMIT"
  } >"$f"
}

write_nft() {  # N FILE: one hash-set lookup on (protocol, source, destination, port)
  local n=$1 f=$2 i
  {
    echo "table ip bhbench {"
    echo "  set allowed {"
    echo "    type inet_proto . ipv4_addr . ipv4_addr . inet_service"
    echo "    elements = {"
    for ((i = 1; i < n; i++)); do
      echo "      tcp . $(other_source "$i") . $SIP . $((1024 + i)),"
    done
    echo "      tcp . $CIP . $SIP . $PORT, udp . $CIP . $SIP . $PORT"
    echo "    }"
    echo "  }"
    echo "  chain forward {"
    echo "    type filter hook forward priority filter; policy drop;"
    echo "    ct state established,related accept"
    echo "    meta l4proto { tcp, udp } meta l4proto . ip saddr . ip daddr . th dport @allowed accept"
    echo "  }"
    echo "}"
  } >"$f"
}

write_policy() {  # N DIR: one NetworkPolicy on the server's ingress with N rules
  local n=$1 d=$2 i
  mkdir -p "$d"
  {
    echo "apiVersion: networking.k8s.io/v1"
    echo "kind: NetworkPolicy"
    echo "metadata: {name: server-ingress, namespace: bench}"
    echo "spec:"
    echo "  podSelector: {matchLabels: {app: server}}"
    echo "  policyTypes: [Ingress]"
    echo "  ingress:"
    for ((i = 1; i < n; i++)); do
      echo "  - from: [{ipBlock: {cidr: $(other_source "$i")/32}}]"
      echo "    ports: [{port: $((1024 + i)), protocol: TCP}]"
    done
    echo "  - from: [{podSelector: {matchLabels: {app: client}}}]"
    echo "    ports: [{port: $PORT, protocol: TCP}, {port: $PORT, protocol: UDP}]"
  } >"$d/server-ingress.yaml"
}

write_inventory() {  # FILE
  cat >"$1" <<INV
apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: datapath-bench}
spec:
  namespaces:
  - {name: bench}
  workloads:
  - {name: client, namespace: bench, labels: {app: client}, ips: [$CIP], netns: $C, hostInterface: $HC}
  - {name: server, namespace: bench, labels: {app: server}, ips: [$SIP], netns: $S, hostInterface: $HS}
INV
}

# ---- filters ----
AGENT_SEQ=0
AGENT_SOCK=""
now() { date +%s.%N; }

# Configures $1 with $2 rules in the router netns; sets SETUP_S to the seconds it took (not a
# command substitution: the agent's pid must reach this shell).
SETUP_S=""
filter_up() {
  local cfg=$1 n=$2 t0 t1
  t0=$(now)
  case "$cfg" in
    none) ;;
    iptables-legacy) in_ns "$R" iptables-legacy-restore <"$T/iptables-$n.rules" || return 1 ;;
    iptables-nft) in_ns "$R" iptables-nft-restore <"$T/iptables-$n.rules" || return 1 ;;
    nft) in_ns "$R" nft -f "$T/nft-$n.nft" || return 1 ;;
    bulkhead | bulkhead-noev)
      AGENT_SEQ=$((AGENT_SEQ + 1))
      local a="$T/agent$AGENT_SEQ"
      mkdir -p "$a/state"
      write_inventory "$a/inventory.yaml"
      AGENT_SOCK="$a/agent.sock"
      # nsenter execs the agent, so $! is the agent itself (its CPU is read from /proc/$!).
      nsenter --net="/var/run/netns/$R" "$BH" agent --policies "$T/policies-$n" \
        --inventory "$a/inventory.yaml" --state-dir "$a/state" --pin-root "$T/bpffs/a$AGENT_SEQ" \
        --socket "$AGENT_SOCK" --metrics 127.0.0.1:9470 >"$a/agent.log" 2>&1 &
      AGENT_PID=$!
      local ready=0
      for _ in $(seq 1 1200); do
        if "$BH" endpoints --socket "$AGENT_SOCK" -o json 2>/dev/null | grep -c '"error": ""' | grep -qx 2; then
          ready=1; break
        fi
        kill -0 "$AGENT_PID" 2>/dev/null || break
        sleep 0.05
      done
      if [ "$ready" -ne 1 ]; then
        echo "agent did not attach both endpoints; log:" >&2
        cat "$a/agent.log" >&2
        return 1
      fi
      if [ "$cfg" = bulkhead-noev ]; then
        # bh_settings (56 bytes): six timeouts (0: defaults), events_off = BH_EVF_NEW_FLOWS, pad.
        bpftool map update pinned "$T/bpffs/a$AGENT_SEQ/bh_settings" key hex 00 00 00 00 \
          value hex $(printf '00 %.0s' $(seq 48)) 01 00 00 00 00 00 00 00 || return 1
      fi
      ;;
    *) echo "unknown configuration $cfg" >&2; return 1 ;;
  esac
  t1=$(now)
  SETUP_S=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
}

# The agent's kernel counters and its own figures (Prometheus text and VmRSS), as one JSON object.
agent_metrics() {
  printf 'GET /metrics HTTP/1.0\r\n\r\n' | in_ns "$R" timeout 3 socat - TCP:127.0.0.1:9470 2>/dev/null |
    python3 "$HERE/summarize.py" --metrics "$AGENT_PID"
}

filter_down() {
  if [ -n "$AGENT_PID" ]; then
    kill -TERM "$AGENT_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
    AGENT_PID=""
    # Filters go with the veths (topology_down); the pins go here.
    rm -rf "$T/bpffs/a$AGENT_SEQ"
  fi
}

# ---- one configuration: filter, checks, the four loads ----
record() {  # ROUND CFG N: prefixes each JSON line from stdin with the configuration
  sed -u "s/^{/{\"round\":$1,\"config\":\"$2\",\"n\":$3,/" >>"$RESULTS"
}

# One load from the client netns; its JSON line is recorded, its failure counted. WRAP (an
# array) may hold a command to run it under (chrt).
WRAP=()
load() {  # ROUND CFG N LOADGEN-ARGS...
  local r=$1 cfg=$2 n=$3 out
  shift 3
  if out=$("${WRAP[@]}" nsenter --net="/var/run/netns/$C" "$LG" "$@"); then
    echo "$out" | record "$r" "$cfg" "$n"
  else
    fail "$cfg N=$n: load $1 failed ($out)"
  fi
}

run_config() {
  local r=$1 cfg=$2 n=$3 pids=()
  topology_up || { fail "$cfg N=$n: topology"; topology_down; return; }
  if ! filter_up "$cfg" "$n"; then
    fail "$cfg N=$n: could not configure the filter"
    filter_down; topology_down; return
  fi
  # CPU: the agent's, and our own processes' (server, sink, ksoftirqd: the packet path runs in
  # their context) besides the machine's, which other users of a shared machine add to.
  [ -n "$AGENT_PID" ] && pids=(--agent-pid "$AGENT_PID")
  pids+=(--own-pid "$SERVER_PID")
  for p in $(pgrep '^ksoftirqd/'); do pids+=(--own-pid "$p"); done
  # The filter really filters: the allowed port is open, the other one is not (unless none).
  in_ns "$C" "$LG" probe --to "$SIP:$PORT" --timeout-ms 2000 >/dev/null ||
    fail "$cfg N=$n: the allowed flow $CIP -> $SIP:$PORT does not pass"
  if in_ns "$C" "$LG" probe --to "$SIP:$DENIED" --timeout-ms 300 >/dev/null; then
    [ "$cfg" = none ] || fail "$cfg N=$n: the denied flow $CIP -> $SIP:$DENIED passes"
  else
    [ "$cfg" = none ] && fail "none: $CIP -> $SIP:$DENIED does not pass without a filter"
  fi
  log "round $r: $cfg N=$n (set up in ${SETUP_S}s)"

  load "$r" "$cfg" "$n" connect --to "$SIP:$PORT" --duration "$DURATION" --threads "$THREADS" "${pids[@]}"
  rm -f "$T/sink.out"
  nsenter --net="/var/run/netns/$S" "$LG" udp-sink --port "$PORT" --idle-ms 300 --max-wait 10 >"$T/sink.out" &
  local sink=$!
  for _ in $(seq 1 50); do grep -q listening "$T/sink.out" 2>/dev/null && break; sleep 0.02; done
  load "$r" "$cfg" "$n" udp-flood --to "$SIP:$PORT" --duration "$DURATION" --size 18 "${pids[@]}" \
    --own-pid "$sink"
  wait "$sink" || fail "$cfg N=$n: the UDP sink received nothing"
  grep -v listening "$T/sink.out" | record "$r" "$cfg" "$n"
  # Latency: client and server SCHED_FIFO on CPU 0 (see the header).
  local cpus
  cpus=$(taskset -p "$SERVER_PID" | sed 's/.*: //')
  { chrt -a -f -p 50 "$SERVER_PID" && taskset -a -p 1 "$SERVER_PID"; } >/dev/null || fail "chrt/taskset of the server"
  WRAP=(taskset 1 chrt -f 50)
  load "$r" "$cfg" "$n" rr --to "$SIP:$PORT" --duration "$DURATION" --size 1 "${pids[@]}"
  WRAP=()
  { chrt -a -o -p 0 "$SERVER_PID" && taskset -a -p "$cpus" "$SERVER_PID"; } >/dev/null || fail "chrt/taskset of the server back"
  load "$r" "$cfg" "$n" stream --to "$SIP:$PORT" --duration "$DURATION" "${pids[@]}"

  local meta="{\"test\":\"meta\",\"setup_s\":$SETUP_S,\"load1\":$(cut -d' ' -f1 /proc/loadavg)"
  if [ -n "$AGENT_PID" ]; then
    meta="$meta,\"agent\":$(agent_metrics)"
  fi
  echo "$meta}" | record "$r" "$cfg" "$n"
  filter_down
  topology_down
}

# ---- main ----
# One function, called on the last line: bash has then read the whole file, so editing the script
# while a run goes on cannot change what that run executes.
main() {
  local r n j k
  mkdir -p "$T/bpffs"
  mount -t bpf bpf "$T/bpffs" || { echo "FAIL: cannot mount bpffs" >&2; return 1; }
  for n in $NS_LIST; do
    write_iptables "$n" "$T/iptables-$n.rules"
    write_nft "$n" "$T/nft-$n.nft"
    write_policy "$n" "$T/policies-$n"
  done
  read -ra CFG_ARR <<<"$CONFIGS"
  local start load_start
  start=$(date -u +%FT%TZ)
  load_start=$(cut -d' ' -f1-3 /proc/loadavg)
  log "datapath benchmark $ID: N = $NS_LIST; configurations: $CONFIGS; $ROUNDS round(s) of ${DURATION}s per load"
  for ((r = 1; r <= ROUNDS; r++)); do
    for n in $NS_LIST; do
      # Each round starts the rotation elsewhere, so no configuration always runs first.
      k=${#CFG_ARR[@]}
      for ((j = 0; j < k; j++)); do
        run_config "$r" "${CFG_ARR[$(((j + r - 1) % k))]}" "$n"
      done
    done
  done

  {
    echo "date: $start to $(date -u +%FT%TZ); kernel $(uname -r); $(nproc) CPUs" \
      "($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)); bulkhead $("$BH" --version 2>&1 | head -1)"
    echo "load average at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rounds: $ROUNDS, ${DURATION}s per load; connect test with $THREADS loops; nice $NICE"
    echo
    python3 "$HERE/summarize.py" "$RESULTS"
  } | tee "$OUT/summary.md"

  if [ "$FAILS" -ne 0 ]; then
    echo "FAILED: $FAILS checks" >&2
    return 1
  fi
  echo "PASS"
}

main; exit $?
