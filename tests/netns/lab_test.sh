#!/usr/bin/env bash
# netns test of `bulkhead lab`: brings up examples/lab/small.yaml (3 workloads, 2 namespaces,
# dual stack) through the real CNI chain (bridge + host-local + bulkhead-cni) with the real
# agent enforcing examples/lab/small-policies; probes allowed and denied pairs over TCP, UDP,
# IPv4 and IPv6; compares the probe matrix with `bulkhead simulate --matrix`; kills the agent
# with -9 and checks that `lab down` leaves nothing; then kills `lab up` while a CNI plugin
# hangs halfway and checks that `lab down` still removes everything.
# Usage: lab_test.sh PATH/TO/bulkhead   (bulkhead-cni must be next to it)
set -uo pipefail
BH=$(readlink -f "${1:?usage: $0 PATH/TO/bulkhead}")
SRC=$(cd "$(dirname "$0")/../.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: the lab test needs root (network namespaces, bpffs, TC); run it as root" >&2
  exit 77
fi
for tool in ip python3 pgrep; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done
[ -x "$(dirname "$BH")/bulkhead-cni" ] ||
  { echo "FAIL: bulkhead-cni is not built next to $BH" >&2; exit 1; }

ID=$(printf '%04x' $((($$ + RANDOM) % 65536)))
LAB="t$ID"          # the main lab
LAB2="t${ID}k"      # the lab whose `up` is killed halfway
T=$(mktemp -d "/tmp/bh-lab-test-$ID.XXXX")
RUN=/run/bulkhead/lab
FAILS=0
START=$SECONDS
UP_PID=""

cleanup() {
  set +e
  [ -n "$UP_PID" ] && kill -9 "$UP_PID" 2>/dev/null
  for lab in "$LAB" "$LAB2"; do
    if [ -d "$RUN/$lab" ] || ip netns list | grep -q "^bhlab-${lab}_"; then
      "$BH" lab down --name "$lab" >/dev/null 2>&1
      # If down itself is what broke, remove by name so that the machine stays clean.
      for n in $(ip netns list | awk '{print $1}' | grep "^bhlab-${lab}_"); do
        for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$n" 2>/dev/null
      done
      rm -rf "/sys/fs/bpf/bulkhead/lab-$lab" "$RUN/$lab"
    fi
  done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }

# Everything of lab $1 that exists: netns, links named in its state, pins, state dir, processes.
leftovers() {
  local lab=$1 state=$2
  ip netns list | awk '{print $1}' | grep "^bhlab-${lab}_" | sed 's/^/netns /'
  [ -e "/sys/fs/bpf/bulkhead/lab-$lab" ] && echo "pins /sys/fs/bpf/bulkhead/lab-$lab"
  [ -e "$RUN/$lab" ] && echo "state dir $RUN/$lab"
  if [ -f "$state" ]; then
    # Links the lab named (bridge, host veths) must not have escaped into this netns, and the
    # processes it recorded (agent, servers) must be gone (a zombie has exited).
    python3 - "$state" <<'PY'
import json, subprocess, sys
s = json.load(open(sys.argv[1]))
links = [h["bridge"] for h in s["hosts"]] + [w["host_interface"] for w in s["workloads"] if w["host_interface"]]
for l in links:
    if subprocess.run(["ip", "link", "show", "dev", l], capture_output=True).returncode == 0:
        print("link", l)
pids = [h["agent"] for h in s["hosts"]] + [w["server"] for w in s["workloads"]]
for p in pids:
    if not p["pid"]:
        continue
    try:
        stat = open(f"/proc/{p['pid']}/stat").read()
    except OSError:
        continue
    fields = stat[stat.rindex(")") + 2:].split()
    if int(fields[19]) == p["start_time"] and fields[0] not in "ZX":
        print("process", p["pid"])
PY
  fi
  pgrep -f "$RUN/$lab/" | sed 's/^/process (by command line) /'
}

# ---- 1. up ----
"$BH" lab up -f "$SRC/examples/lab/small.yaml" --policies "$SRC/examples/lab/small-policies" \
  --name "$LAB" >"$T/up.out" 2>"$T/up.err" || { cat "$T/up.err" >&2; fail "lab up"; exit 1; }
grep -q "^shop/db " "$T/up.out" || fail "lab up did not print the workload table"
"$BH" lab up -f "$SRC/examples/lab/small.yaml" --policies "$SRC/examples/lab/small-policies" \
  --name "$LAB" >/dev/null 2>"$T/up2.err"
[ $? -eq 2 ] && grep -q "is up or left over" "$T/up2.err" || fail "a second up of $LAB was not refused"
"$BH" lab status --name "$LAB" -o json >"$T/status.json" || fail "lab status is not healthy"
python3 - "$T/status.json" <<'PY' || fail "lab status: agent not ready or endpoints missing"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["agent"]["ready"] and s["agent"]["endpoints"] == 3, s["agent"]
assert all(w["server_running"] and len(w["ips"]) == 2 for w in s["workloads"]), s["workloads"]
PY
echo "up in $((SECONDS - START)) s"

# ---- 2. single probes: exit 0 connected, 1 blocked ----
probe() {  # from to port proto family -> prints the exit code
  "$BH" lab probe --name "$LAB" --from "$1" --to "$2" --port "$3" --protocol "$4" --family "$5" \
    --timeout 500 >>"$T/probes.out" 2>&1
  echo $?
}
check_probe() {  # want from to port proto family
  local want=$1 got
  shift
  got=$(probe "$@")
  [ "$got" = "$want" ] || fail "probe $*: exit $got, want $want ($([ "$want" = 0 ] && echo connected || echo blocked))"
}
for fam in 4 6; do
  check_probe 0 shop/web shop/db 8080 tcp $fam     # db-ingress: web -> db TCP 8080
  check_probe 1 shop/web shop/db 80 tcp $fam       # db is isolated: not TCP 80
  check_probe 0 ops/monitor shop/db 80 udp $fam    # db-ingress: ops namespace -> UDP 80
  check_probe 1 shop/web shop/db 80 udp $fam       # not from shop
  check_probe 0 shop/db shop/web 80 tcp $fam       # web-ingress: any namespace, TCP 80
  check_probe 1 ops/monitor shop/web 8080 udp $fam # web is isolated: not UDP 8080
  check_probe 0 shop/web ops/monitor 8080 udp $fam # monitor is not isolated
done
grep -q "answered by shop/db" "$T/probes.out" || fail "a connected probe does not name the workload"
[ "$(probe shop/web shop/nothing 80 tcp 4)" = 2 ] || fail "probe to an unknown workload: want exit 2"

# ---- 3. the kernel's matrix against the evaluator's ----
"$BH" lab probe --name "$LAB" --matrix --port 80,8080 --protocol tcp,udp --family 4,6 \
  --timeout 500 -o json >"$T/lab-matrix.json" 2>"$T/lab-matrix.err" || { cat "$T/lab-matrix.err" >&2; fail "probe --matrix"; }
for proto in TCP UDP; do
  for port in 80 8080; do
    "$BH" simulate -f "$SRC/examples/lab/small-policies" -f "$RUN/$LAB/cluster.yaml" --matrix \
      --port "$port" --protocol "$proto" -o json >"$T/sim-$proto-$port.json" || fail "simulate $proto/$port"
  done
done
python3 - "$T" <<'PY' || fail "the lab's matrix differs from simulate's"
import json, sys
t = sys.argv[1]
lab = json.load(open(f"{t}/lab-matrix.json"))
assert len(lab) == 8, f"want 8 matrices (2 families x 2 protocols x 2 ports), got {len(lab)}"
compared = diffs = allowed = 0
for m in lab:
    sim = json.load(open(f"{t}/sim-{m['protocol']}-{m['port']}.json"))
    assert m["workloads"] == sim["workloads"], (m["workloads"], sim["workloads"])
    for a in m["workloads"]:
        for b in m["workloads"]:
            got = m["matrix"][a][b]
            if a == b:
                # Traffic to a workload's own address never leaves its netns (loopback).
                assert got == "allow", f"{a} to itself: {got}"
                continue
            want = sim["matrix"][a][b]
            compared += 1
            allowed += want == "allow"
            if got != want:
                diffs += 1
                print(f"IPv{m['family']} {m['protocol']}/{m['port']} {a} -> {b}: kernel {got}, "
                      f"evaluator {want}", file=sys.stderr)
assert 0 < allowed < compared, "the policies should allow some flows and deny others"
print(f"{compared} flows compared with the evaluator, {allowed} allowed, {diffs} differ")
sys.exit(1 if diffs else 0)
PY
# The single-combination form prints exactly simulate's document.
"$BH" lab probe --name "$LAB" --matrix --port 8080 --protocol udp --family 6 --timeout 500 -o json \
  >"$T/lab-one.json" || fail "probe --matrix (one combination)"
python3 - "$T" <<'PY' || fail "one-combination matrix: keys or workloads differ from simulate's"
import json, sys
t = sys.argv[1]
lab, sim = json.load(open(f"{t}/lab-one.json")), json.load(open(f"{t}/sim-UDP-8080.json"))
assert list(lab) == list(sim), (list(lab), list(sim))
assert lab["workloads"] == sim["workloads"] and lab["port"] == 8080 and lab["protocol"] == "UDP"
PY
echo "probes done at $((SECONDS - START)) s"

# ---- 4. agent kill -9, then down: nothing is left ----
cp "$RUN/$LAB/state.json" "$T/state.json"
AGENT=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['hosts'][0]['agent']['pid'])" "$T/state.json")
kill -9 "$AGENT" || fail "no agent process $AGENT to kill"
# Enforcement goes on without the agent (pinned programs): a denied flow stays denied.
[ "$(probe shop/web shop/db 80 tcp 4)" = 1 ] || fail "a denied flow passed while the agent was down"
"$BH" lab down --name "$LAB" >"$T/down.out" 2>&1 || { cat "$T/down.out" >&2; fail "lab down after agent kill -9"; }
LEFT=$(leftovers "$LAB" "$T/state.json")
[ -z "$LEFT" ] || fail "left after lab down: $LEFT"
"$BH" lab down --name "$LAB" >"$T/down2.out" 2>&1 || fail "a second lab down failed"
grep -q "nothing to remove" "$T/down2.out" || fail "a second lab down did not say there was nothing"
echo "down at $((SECONDS - START)) s"

# ---- 5. `up` killed halfway (a CNI plugin hangs), then down ----
# A bridge wrapper that hangs on the second workload's ADD: `up` is killed while a plugin runs
# in the lab's host netns, the agent is up and one workload is attached.
mkdir -p "$T/cni"
cat >"$T/cni/bridge" <<EOF
#!/bin/sh
if [ "\$CNI_COMMAND" = ADD ] && [ "\$CNI_CONTAINERID" = "bhlab_${LAB2}_shop_db" ]; then
  echo \$\$ >"$T/hung.tmp" && mv "$T/hung.tmp" "$T/hung"  # exec keeps this pid
  exec sleep 120
fi
exec /usr/lib/cni/bridge
EOF
chmod +x "$T/cni/bridge"
"$BH" lab up -f "$SRC/examples/lab/small.yaml" --policies "$SRC/examples/lab/small-policies" \
  --name "$LAB2" --cni-path "$T/cni:$(dirname "$BH"):/usr/lib/cni" >"$T/up-killed.out" 2>&1 &
UP_PID=$!
# Polled with a generous bound: on a loaded machine the agent's start and the first workload
# take seconds.
deadline=$((SECONDS + 60))
until [ -e "$T/hung" ] || [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$UP_PID" 2>/dev/null; do sleep 0.05; done
[ -e "$T/hung" ] || { cat "$T/up-killed.out" >&2; fail "lab up never reached the hanging plugin (60 s)"; }
kill -9 "$UP_PID"
wait "$UP_PID" 2>/dev/null
UP_PID=""
cp "$RUN/$LAB2/state.json" "$T/state2.json" 2>/dev/null || fail "no state of the killed lab"
python3 - "$T/state2.json" <<'PY' || fail "the killed lab's state does not show a half-made lab"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["phase"] == "building" and s["hosts"][0]["agent"]["pid"], s
added = [w["id"] for w in s["workloads"] if w["cni_added"]]
assert added == ["shop/web", "shop/db"], added
PY
"$BH" lab status --name "$LAB2" >/dev/null 2>&1 && fail "lab status says a half-made lab is healthy"
"$BH" lab down --name "$LAB2" >"$T/down-killed.out" 2>&1 ||
  { cat "$T/down-killed.out" >&2; fail "lab down after a killed up"; }
LEFT=$(leftovers "$LAB2" "$T/state2.json")
[ -z "$LEFT" ] || fail "left after lab down of the killed up: $LEFT"
HUNG=$(cat "$T/hung")
if [ -n "$HUNG" ] && [ -e "/proc/$HUNG" ] && ! grep -q '^State:.*Z' "/proc/$HUNG/status" 2>/dev/null; then
  fail "the hanging plugin of the killed up (pid $HUNG) still runs"
fi
echo "done in $((SECONDS - START)) s"
if [ "$FAILS" -ne 0 ]; then
  echo "FAILED: $FAILS checks" >&2
  exit 1
fi
echo "PASS"
