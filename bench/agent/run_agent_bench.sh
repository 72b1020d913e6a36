#!/usr/bin/env bash
# Agent benchmark: a real `bulkhead agent` enforcing on N endpoints (veths in network
# namespaces this script makes) with a policy set of R rules, measured from the outside:
#   - policy programming latency: one policy file renamed into place -> the first probe packet
#     that gets the new verdict (p50/p99), against the same change with no other rules (the
#     baseline of the same run); and the agent's own apply time from its log
#   - bulk load: the R-rule directory renamed into place -> in force
#   - agent RSS and CPU, idle and under load
#   - flow events: cost of events on vs off (switched in the datapath settings), and the
#     event rate at which the ring buffer starts losing events
# Everything it makes (netns, veths, bpffs mount, agent, files) has a unique name and is
# removed on exit; traffic stays inside its namespaces.
#
# Usage (root): run_agent_bench.sh BUILD_DIR [--quick] [--rules N] [--endpoints N]
#               [--remote N] [--changes N] [--placement all|local] [--keep-log FILE]
set -uo pipefail

BUILD=$(readlink -f "${1:?usage: $0 BUILD_DIR [--quick] [--rules N] ...}")
shift
BH="$BUILD/src/cli/bulkhead"
PROBE="$BUILD/bench/agent/agent_bench_probe"
QUICK=0
RULES=10000
ENDPOINTS=100
REMOTE=900
CHANGES=40
BASE_CHANGES=20
PLACEMENT=all
KEEP_LOG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --rules) RULES=$2; shift ;;
    --endpoints) ENDPOINTS=$2; shift ;;
    --remote) REMOTE=$2; shift ;;
    --changes) CHANGES=$2; shift ;;
    --placement) PLACEMENT=$2; shift ;;
    --keep-log) KEEP_LOG=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  CHANGES=10
  BASE_CHANGES=6
fi
FLOOD_SECONDS=$([ "$QUICK" = 1 ] && echo 1 || echo 3)
IDLE_SECONDS=$([ "$QUICK" = 1 ] && echo 3 || echo 10)

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: the agent benchmark needs root (network namespaces, bpffs, TC)" >&2
  exit 77
fi
for tool in ip nsenter mount curl bpftool; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done
for bin in "$BH" "$PROBE"; do
  [ -x "$bin" ] || { echo "FAIL: $bin is not built (ninja -C $BUILD bulkhead agent_bench_probe)" >&2; exit 1; }
done

ID=$(printf '%04x' $((($$ + RANDOM) % 65536)))
T=$(mktemp -d "/tmp/bh-abench-$ID.XXXX")
R="ba${ID}r"  # the node: agent and host-side veths
C="ba${ID}c"  # client workload (local 0)
S="ba${ID}s"  # server workload (local 1)
O="ba${ID}o"  # the other endpoints' workload ends
IFP="b${ID}i"
NODE=bench-node
PIN="$T/bpffs/bh"
SOCK="$T/agent.sock"
LOG="$T/agent.log"
MPORT=9470
AGENT_PID=""

cleanup() {
  set +e
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  [ -n "$KEEP_LOG" ] && [ -f "$LOG" ] && cp "$LOG" "$KEEP_LOG"
  for n in "$C" "$S" "$O" "$R"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
  umount "$T/bpffs" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

in_ns() { local n=$1; shift; nsenter --net="/var/run/netns/$n" "$@"; }
now_ms() { date +%s%3N; }
say() { echo "[$(date +%T)] $*" >&2; }

# ---- topology ----
T_SETUP=$(now_ms)
for n in "$R" "$C" "$S" "$O"; do ip netns add "$n" || exit 1; done
ip -n "$R" link set lo up
in_ns "$R" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
{
  for ((k = 0; k < ENDPOINTS; k++)); do
    case $k in
      0) echo "link add $IFP$k type veth peer name eth0 netns $C" ;;
      1) echo "link add $IFP$k type veth peer name eth0 netns $S" ;;
      *) echo "link add $IFP$k type veth peer name e$k netns $O" ;;
    esac
    echo "link set $IFP$k up"
  done
} >"$T/r.batch"
ip -n "$R" -batch "$T/r.batch" || exit 1
{ for ((k = 2; k < ENDPOINTS; k++)); do echo "link set e$k up"; done; } >"$T/o.batch"
ip -n "$O" -batch "$T/o.batch" || exit 1
CLIENT_IP=10.211.0.10
SERVER_IP=10.211.0.11
for pair in "$C:$CLIENT_IP:${IFP}0" "$S:$SERVER_IP:${IFP}1"; do
  IFS=: read -r n ip hv <<<"$pair"
  ip -n "$n" link set lo up
  ip -n "$n" addr add "$ip/32" dev eth0
  ip -n "$n" link set eth0 up
  ip -n "$n" route add default dev eth0
  in_ns "$R" sysctl -qw "net.ipv4.conf.$hv.proxy_arp=1" "net.ipv4.conf.$hv.rp_filter=0" \
    "net.ipv4.neigh.$hv.proxy_delay=0"
  ip -n "$R" route add "$ip/32" dev "$hv"
done

# ---- scenario files and the agent ----
mkdir -p "$T/pol" "$T/state" "$T/bpffs"
mount -t bpf bpf "$T/bpffs" || exit 1
"$PROBE" scenario --out "$T/scn" --local "$ENDPOINTS" --remote "$REMOTE" --rules "$RULES" \
  --placement "$PLACEMENT" --node "$NODE" --if-prefix "$IFP" --netns-prefix "$O" \
  --ip-prefix 10.211 >/dev/null || exit 1
cp "$T/scn/probe-deny.yaml" "$T/pol/probe.yaml"
say "setup: $ENDPOINTS endpoints, $((REMOTE + ENDPOINTS)) workloads, $RULES rules ($(($(now_ms) - T_SETUP)) ms)"

EVENTS_BATCH=10  # the agent's default; the event floods run again with 0 (a read per wake-up)
start_agent() {
  nsenter --net="/var/run/netns/$R" "$BH" agent --policies "$T/pol" \
    --inventory "$T/scn/inventory.yaml" --state-dir "$T/state" --pin-root "$PIN" --socket "$SOCK" \
    --metrics "127.0.0.1:$MPORT" --node "$NODE" --events-batch-ms "$EVENTS_BATCH" >>"$LOG" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 1 600); do
    "$BH" agent status --socket "$SOCK" >/dev/null 2>&1 && return 0
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "FAIL: the agent did not become ready; log:" >&2
  tail -20 "$LOG" >&2
  exit 1
}
metric() {  # metric NAME_WITH_LABELS: its value from the agent's /metrics
  in_ns "$R" curl -s "http://127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 == m {print $2}'
}
# utime+stime of the agent in clock ticks, and its RSS in KiB.
agent_ticks() { awk '{print $14 + $15}' "/proc/$AGENT_PID/stat"; }
agent_rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$AGENT_PID/status"; }
TICK=$(getconf CLK_TCK)
# CPU % of one core used by the agent while "$@" runs (its output goes to $T/run.out).
cpu_during() {
  local t0 c0 t1 c1
  t0=$(now_ms); c0=$(agent_ticks)
  "$@" >"$T/run.out"
  t1=$(now_ms); c1=$(agent_ticks)
  awk -v c=$((c1 - c0)) -v hz="$TICK" -v ms=$((t1 - t0)) 'BEGIN {printf "%.1f", 100 * c / hz / (ms / 1000)}'
}

# Percentile p (0-100) of the numbers in file $1 (nearest rank).
pct() { sort -g "$1" | awk -v p="$2" '{v[NR] = $1} END {if (NR == 0) {print "nan"; exit} i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; print v[i]}'; }

# One policy change: stage the other probe policy and flip. The probe runs under SCHED_FIFO
# (when chrt is there) so that a busy machine delays the agent, which is measured, and not
# the probe's clock. A flip not seen within the timeout is counted, not fatal.
RT=()
command -v chrt >/dev/null && RT=(chrt -f 50)
TIMEOUTS=0
applied_count() { grep -c 'applied revision' "$LOG"; }
wait_applied() {  # until the log has more "applied revision" lines than $1 (10 s at most)
  for _ in $(seq 1 200); do
    [ "$(applied_count)" -gt "$1" ] && return 0
    sleep 0.05
  done
  return 1
}
flip_once() {  # flip_once allow|deny FILE -> appends latency to $2, agent apply ms to $3
  local want=$1 out lines_before applied_before
  cp "$T/scn/probe-$want.yaml" "$T/stage.yaml"
  lines_before=$(wc -l <"$LOG")
  applied_before=$(applied_count)
  out=$("${RT[@]}" "$PROBE" flip --client "$C" --server "$S" --to "$SERVER_IP" --port 9999 \
    --rename "$T/stage.yaml" "$T/pol/probe.yaml" --expect "$want" --interval-us 200 \
    --timeout-ms 10000)
  wait_applied "$applied_before"
  case "$out" in
    latency_ms=*) echo "$out" | sed -E 's/^latency_ms=([0-9.]+).*/\1/' >>"$2" ;;
    *"no flip"*) TIMEOUTS=$((TIMEOUTS + 1)); say "flip to $want not seen: $out" ;;
    *) echo "FAIL: flip to $want: $out" >&2; tail -5 "$LOG" >&2; return 1 ;;
  esac
  # The agent's own account of the apply this change caused (its log line).
  # Until in force: load + compile + kernel (the total also counts state.json, written after).
  { tail -n +"$((lines_before + 1))" "$LOG" |
    grep -oE 'load [0-9.]+, compile [0-9.]+, kernel [0-9.]+' | tail -1 |
    awk -F'[ ,]+' '{printf "%.1f\n", $2 + $4 + $6}' >>"$3"; } || true
}

start_agent
say "agent ready (pid $AGENT_PID), RSS $(agent_rss_kib) KiB with no rules"

# ---- baseline: single changes with only the probe policy ----
: >"$T/base.lat"; : >"$T/base.apply"
for ((i = 0; i < BASE_CHANGES; i++)); do
  flip_once allow "$T/base.lat" "$T/base.apply" || exit 1
  flip_once deny "$T/base.lat" "$T/base.apply" || exit 1
done
say "baseline (probe policy only): p50 $(pct "$T/base.lat" 50) ms, p99 $(pct "$T/base.lat" 99) ms"

# ---- bulk load: the whole rule directory renamed into place ----
# With no policy at all every flow is allowed; the rule set isolates the server, whose probe
# port no rule allows: the probe flips from allow to deny when the whole set is in force.
N_APPLIED=$(grep -c 'applied revision' "$LOG")
rm -f "$T/pol/probe.yaml"
wait_applied "$N_APPLIED"
sleep 0.3
RSS_BEFORE_BULK=$(agent_rss_kib)
BULK_LINES=$(wc -l <"$LOG")
BULK_OUT=$("${RT[@]}" "$PROBE" flip --client "$C" --server "$S" --to "$SERVER_IP" --port 9999 \
  --rename "$T/scn/rules" "$T/pol/rules" --expect deny --interval-us 200 --timeout-ms 60000)
BULK_MS=$(echo "$BULK_OUT" | sed -nE 's/^latency_ms=([0-9.]+).*/\1/p')
[ -n "$BULK_MS" ] || { echo "FAIL: bulk load: $BULK_OUT" >&2; tail -5 "$LOG" >&2; exit 1; }
sleep 0.2
BULK_APPLY=$(tail -n +"$((BULK_LINES + 1))" "$LOG" | grep -oE 'applied revision [^ ]+ in [0-9.]+ ms.*' | tail -1 || true)
say "bulk load of $RULES rules: in force after $BULK_MS ms ($BULK_APPLY)"
N_APPLIED=$(grep -c 'applied revision' "$LOG")
cp "$T/scn/probe-deny.yaml" "$T/pol/probe.yaml"
wait_applied "$N_APPLIED"

# ---- single changes with the rules in force ----
: >"$T/big.lat"; : >"$T/big.apply"
for ((i = 0; i < CHANGES; i++)); do
  flip_once allow "$T/big.lat" "$T/big.apply" || exit 1
  flip_once deny "$T/big.lat" "$T/big.apply" || exit 1
done
say "with $RULES rules: p50 $(pct "$T/big.lat" 50) ms, p99 $(pct "$T/big.lat" 99) ms"
RSS_RULES=$(agent_rss_kib)

# ---- idle ----
IDLE_CPU=$(cpu_during sleep "$IDLE_SECONDS")
RSS_IDLE=$(agent_rss_kib)
say "idle: CPU $IDLE_CPU %, RSS $RSS_IDLE KiB"

# ---- events: loss onset (denied packets: one event each) ----
# Each denied packet is one event. Without an observer the agent only counts events; with
# `bulkhead observe` attached it also describes each one (JSON) and streams it.
cp "$T/scn/probe-allow.yaml" "$T/pol/probe.yaml"  # 9999 allowed for the new-flow runs below
sleep 0.5
LOSS_TABLE=""
RSS_LOAD=0
if [ "$QUICK" = 1 ]; then RATES="50000 100000 0"; else RATES="20000 50000 100000 150000 200000 0"; fi
OBSERVER_PID=""
# Each flood with the agent restarted with --events-batch-ms 0 (it reads as soon as the ring
# wakes it, the behaviour before batching), then again with its default batching (10 ms): the
# same run, the same machine, so the two can be compared. The sections after run with 10.
for batch in 0 10; do
  if [ "$batch" != "$EVENTS_BATCH" ]; then
    kill "$AGENT_PID" && wait "$AGENT_PID" 2>/dev/null
    EVENTS_BATCH=$batch
    start_agent
    sleep 0.5
  fi
  for observed in no yes; do
    if [ "$observed" = yes ]; then
      "$BH" observe --socket "$SOCK" -o json >/dev/null 2>&1 &
      OBSERVER_PID=$!
      sleep 0.3
    fi
    for rate in $RATES; do
      s0=$(metric 'bulkhead_datapath_events_total{result="sent"}')
      l0=$(metric 'bulkhead_datapath_events_total{result="lost"}')
      r0=$(metric 'bulkhead_agent_flow_events_total{verdict="deny"}')
      cpu=$(cpu_during "$PROBE" flood --client "$C" --server "$S" --to "$SERVER_IP" --port 7001 \
        --rate "$rate" --seconds "$FLOOD_SECONDS")
      rss=$(agent_rss_kib); [ "$rss" -gt "$RSS_LOAD" ] && RSS_LOAD=$rss
      sleep 0.5
      s1=$(metric 'bulkhead_datapath_events_total{result="sent"}')
      l1=$(metric 'bulkhead_datapath_events_total{result="lost"}')
      r1=$(metric 'bulkhead_agent_flow_events_total{verdict="deny"}')
      achieved=$(sed -nE 's/.* rate=([0-9]+).*/\1/p' "$T/run.out")
      LOSS_TABLE+="$batch $observed $rate $achieved $((s1 - s0)) $((l1 - l0)) $((r1 - r0)) $cpu"$'\n'
      say "deny flood, batch $batch ms, observer $observed, at $rate/s (0: max): $achieved/s sent, events $((s1 - s0)) sent, $((l1 - l0)) lost, agent read $((r1 - r0)), agent CPU $cpu %"
    done
  done
  [ -n "$OBSERVER_PID" ] && kill "$OBSERVER_PID" 2>/dev/null && wait "$OBSERVER_PID" 2>/dev/null
  OBSERVER_PID=""
done

# ---- events on vs off: new flows (one event each at both ends) and denies ----
# What events cost on the packet path shows as the sender's CPU per packet: on veth the TC
# programs run in the sender's context. Alternated on/off to spread the machine's noise.
set_events_off() {  # the datapath's runtime settings: all defaults, events_off = $1
  local v
  v=$(printf '%02x' "$1")
  bpftool map update pinned "$PIN/bh_settings" key hex 00 00 00 00 value hex \
    $(printf '00 %.0s' $(seq 48)) "$v" 00 00 00 00 00 00 00 >/dev/null
}
ONOFF=""
ROUNDS=$([ "$QUICK" = 1 ] && echo 2 || echo 4)
for ((round = 0; round < ROUNDS; round++)); do
  for mode in on off; do
    [ "$mode" = on ] && set_events_off 0 || set_events_off 7
    for kind in new-flows denies; do
      if [ "$kind" = new-flows ]; then args=(--port 9999 --new-flows); else args=(--port 7001); fi
      cpu=$(cpu_during "$PROBE" flood --client "$C" --server "$S" --to "$SERVER_IP" "${args[@]}" \
        --rate 0 --seconds "$FLOOD_SECONDS")
      sent=$(sed -nE 's/^sent=([0-9]+).*/\1/p' "$T/run.out")
      achieved=$(sed -nE 's/.* rate=([0-9]+).*/\1/p' "$T/run.out")
      scpu=$(sed -nE 's/.* cpu_seconds=([0-9.]+).*/\1/p' "$T/run.out")
      us=$(awk -v c="$scpu" -v n="$sent" 'BEGIN {printf "%.3f", (n > 0 ? 1e6 * c / n : 0)}')
      ONOFF+="$mode $kind $achieved $us $cpu"$'\n'
      say "events $mode, $kind: $achieved packets/s, sender $us us/packet, agent CPU $cpu %"
    done
  done
done
set_events_off 0

# ---- report ----
B50=$(pct "$T/base.lat" 50); B99=$(pct "$T/base.lat" 99)
P50=$(pct "$T/big.lat" 50); P99=$(pct "$T/big.lat" 99)
A50=$(pct "$T/big.apply" 50); A99=$(pct "$T/big.apply" 99)
BA50=$(pct "$T/base.apply" 50); BA99=$(pct "$T/base.apply" 99)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 > 0) printf "%.2f", a / b; else print "nan"}'; }
echo
echo "## agent benchmark ($(date -u +%Y-%m-%d), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "scenario: $ENDPOINTS endpoints, $((ENDPOINTS + REMOTE)) workloads, $RULES rules (placement $PLACEMENT)"
echo
echo "| measurement | p50 | p99 | n |"
echo "|---|---|---|---|"
echo "| one change in force, probe policy only (baseline) | $B50 ms | $B99 ms | $(wc -l <"$T/base.lat") |"
echo "| one change in force, $RULES rules | $P50 ms | $P99 ms | $(wc -l <"$T/big.lat") |"
echo "| agent apply until in force (log: load + compile + kernel), probe policy only | $BA50 ms | $BA99 ms | $(wc -l <"$T/base.apply") |"
echo "| agent apply until in force (log), $RULES rules | $A50 ms | $A99 ms | $(wc -l <"$T/big.apply") |"
echo "| bulk load of $RULES rules, rename -> in force | $BULK_MS ms | | 1 |"
echo
echo "ratios: change in force with $RULES rules / baseline: p50 $(ratio "$P50" "$B50")x, p99 $(ratio "$P99" "$B99")x"
echo "flips not seen within 10 s (left out of the percentiles): $TIMEOUTS"
echo "bulk apply: $BULK_APPLY"
echo
echo "| agent | RSS | CPU |"
echo "|---|---|---|"
echo "| no rules | $RSS_BEFORE_BULK KiB | |"
echo "| $RULES rules, after $((2 * CHANGES)) changes | $RSS_RULES KiB | |"
echo "| idle ${IDLE_SECONDS} s | $RSS_IDLE KiB | $IDLE_CPU % |"
echo "| under event floods (max RSS) | $RSS_LOAD KiB | see below |"
echo
echo "| deny flood: event batch, observer, packets/s asked | sent/s | events sent | events lost | agent read | agent CPU % | agent CPU µs per event read |"
echo "|---|---|---|---|---|---|---|"
echo -n "$LOSS_TABLE" | while read -r batch obs rate got sent lost read cpu; do
  # CPU % of a core over the flood's seconds, per event read: what each event costs the agent.
  per=$(awk -v c="$cpu" -v s="$FLOOD_SECONDS" -v n="$read" 'BEGIN {printf "%.2f", (n > 0 ? 1e4 * c * s / n : 0)}')
  echo "| $batch ms, $obs, $([ "$rate" = 0 ] && echo max || echo "$rate") | $got | $sent | $lost | $read | $cpu | $per |"
done
echo
echo "| events | traffic | packets/s (median) | sender us/packet (median) | agent CPU % (median) | runs |"
echo "|---|---|---|---|---|---|"
med() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for kind in new-flows denies; do
  for mode in on off; do
    rows=$(echo -n "$ONOFF" | awk -v m="$mode" -v k="$kind" '$1 == m && $2 == k')
    pps=$(echo "$rows" | awk '{print $3}' | med)
    us=$(echo "$rows" | awk '{print $4}' | med)
    acpu=$(echo "$rows" | awk '{print $5}' | med)
    echo "| $mode | $kind | $pps | $us | $acpu | $(echo "$rows" | wc -l) |"
    eval "US_${mode}_${kind//-/_}=$us"
  done
done
echo
echo "ratios (events on / off, sender CPU per packet): new flows $(ratio "$US_on_new_flows" "$US_off_new_flows")x, denies $(ratio "$US_on_denies" "$US_off_denies")x"
