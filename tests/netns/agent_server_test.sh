#!/usr/bin/env bash
# netns test of `bulkhead agent --server`: a real `bulkhead server` on the loopback of the
# test's own router netns, `server init`, a join token, and the real agent joining with it and
# enforcing two workloads in network namespaces. `bulkhead apply` of a policy changes a real
# probe's verdict; with the server killed the policy stays enforced, also across an agent
# restart (the persisted policy). Everything it makes has a unique name and goes on exit.
# Usage: agent_server_test.sh PATH/TO/bulkhead
set -uo pipefail
BH=$(readlink -f "${1:?usage: $0 PATH/TO/bulkhead}")

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: the netns test needs root (network namespaces, bpffs, TC); run it as root" >&2
  exit 77
fi
for tool in ip ss nsenter socat timeout mount python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done

ID=$(printf '%04x' $((($$ + RANDOM) % 65536)))
T=$(mktemp -d "/tmp/bh-agentsrv-$ID.XXXX")
R="bh${ID}s"              # the host netns: server and agent, on its own loopback
NS=("bh${ID}w" "bh${ID}d")
IP=("10.214.0.1" "10.214.0.2")
HV=("s${ID}w" "s${ID}d")
SOCK="$T/agent.sock"
AGENT_PID=""
SERVER_PID=""
FAILS=0

cleanup() {
  set +e
  exec 2>/dev/null  # bash reports every killed job; the test's verdict is already printed
  [ -n "$AGENT_PID" ] && kill -9 "$AGENT_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null
  for n in "${NS[@]}" "$R"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
  umount "$T/bpffs" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
in_ns() { local n=$1; shift; nsenter --net="/var/run/netns/$n" "$@"; }

# ---- topology: workload netns <-> veth <-> host netns (routes, proxy ARP) ----
ip netns add "$R" || exit 1
in_ns "$R" ip link set lo up
in_ns "$R" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
for i in 0 1; do
  ip netns add "${NS[$i]}" || exit 1
  ip link add "${HV[$i]}" netns "$R" type veth peer name eth0 netns "${NS[$i]}" || exit 1
  in_ns "${NS[$i]}" ip link set lo up
  in_ns "${NS[$i]}" ip addr add "${IP[$i]}/32" dev eth0
  in_ns "${NS[$i]}" ip link set eth0 up
  in_ns "${NS[$i]}" ip route add default dev eth0
  in_ns "$R" sysctl -qw "net.ipv4.conf.${HV[$i]}.proxy_arp=1" "net.ipv4.conf.${HV[$i]}.rp_filter=0" \
    "net.ipv4.neigh.${HV[$i]}.proxy_delay=0"
  in_ns "$R" ip link set "${HV[$i]}" up
  in_ns "$R" ip route add "${IP[$i]}/32" dev "${HV[$i]}"
  in_ns "${NS[$i]}" socat "TCP-LISTEN:80,fork,reuseaddr" EXEC:/bin/cat &
done
# Nothing is probed before both servers listen (a probe sent earlier meets a refused
# connection, not the policy); polled with a generous bound for a loaded machine.
for i in 0 1; do
  deadline=$((SECONDS + 60))
  until [ -n "$(in_ns "${NS[$i]}" ss -Hltn '( sport = :80 )')" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "FAIL: the server in ${NS[$i]} does not listen after 60 s" >&2; exit 1; }
    sleep 0.05
  done
done

# ---- the control plane, on the host netns's loopback (nobody else's) ----
mkdir -p "$T/state" "$T/bpffs"
mount -t bpf bpf "$T/bpffs" || exit 1
in_ns "$R" "$BH" server init --data-dir "$T/server" >"$T/init.log" 2>&1 || { cat "$T/init.log" >&2; exit 1; }
start_server() {
  nsenter --net="/var/run/netns/$R" "$BH" server --data-dir "$T/server" >>"$T/server.log" 2>&1 &
  SERVER_PID=$!
}
export BULKHEAD_SERVER=https://127.0.0.1:8443 BULKHEAD_CA="$T/server/ca.crt"
BULKHEAD_TOKEN=$(cat "$T/server/admin.token")
export BULKHEAD_TOKEN NO_COLOR=1
start_server
# Every wait below polls its condition with a generous bound (seconds): a loaded machine is
# slow, and a wait that succeeds ends at once.
JOIN=""
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  JOIN=$(in_ns "$R" "$BH" token create 2>/dev/null) && [ -n "$JOIN" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$JOIN" ] || { echo "FAIL: server did not come up in 60 s; log:" >&2; cat "$T/server.log" >&2; exit 1; }

# db admits web on 80 (revision 1).
cat >"$T/policy-open.yaml" <<'POL'
apiVersion: v1
kind: Namespace
metadata: {name: alpha, labels: {team: a}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: alpha}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80, protocol: TCP}]
POL
# db admits only app=nobody (revision 2).
sed 's/app: web}/app: nobody}/' "$T/policy-open.yaml" >"$T/policy-closed.yaml"
in_ns "$R" "$BH" apply -f "$T/policy-open.yaml" >>"$T/cli.log" 2>&1 || { fail "apply 1"; cat "$T/cli.log" >&2; exit 1; }

# Local workloads from a node inventory (no policies: those come from the server).
cat >"$T/inventory.yaml" <<INV
apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: node-1}
spec:
  workloads:
  - {name: web, namespace: alpha, labels: {app: web}, ips: [${IP[0]}], netns: ${NS[0]}, hostInterface: ${HV[0]}}
  - {name: db, namespace: alpha, labels: {app: db}, ips: [${IP[1]}], netns: ${NS[1]}, hostInterface: ${HV[1]}}
INV

start_agent() {
  nsenter --net="/var/run/netns/$R" "$BH" agent --server 127.0.0.1:8444 "$@" --node-name node-1 \
    --inventory "$T/inventory.yaml" --state-dir "$T/state" --pin-root "$T/bpffs/bulkhead" \
    --socket "$SOCK" >>"$T/agent.log" 2>&1 &
  AGENT_PID=$!
}
status_field() {  # status_field KEY: a field of the agent's server status
  "$BH" agent status --socket "$SOCK" -o json 2>/dev/null |
    python3 -c "import json,sys; s=json.load(sys.stdin).get('server',{}); v=s.get(sys.argv[1]); print(json.dumps(v) if isinstance(v,(list,bool)) else v)" "$1" 2>/dev/null
}
# Waits until the agent enforces server revision $1 with no namespace held.
wait_enforced() {
  local deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(status_field enforced_revision)" = "$1" ] && [ "$(status_field held_namespaces)" = "[]" ] && return 0
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.1
  done
  fail "agent does not enforce revision $1 (status: $("$BH" agent status --socket "$SOCK" 2>&1))"
  cat "$T/agent.log" >&2
  return 1
}
probe() {  # probe FROM TO: allow or deny for TCP port 80
  local out
  out=$(echo "x$1$2" | in_ns "${NS[$1]}" timeout 3 socat -t1 - "TCP:${IP[$2]}:80,connect-timeout=1" 2>/dev/null)
  [ "$out" = "x$1$2" ] && echo allow || echo deny
}
expect() {  # expect LABEL FROM TO VERDICT
  local got
  got=$(probe "$2" "$3")
  [ "$got" = "$4" ] || fail "$1: probe ${IP[$2]} -> ${IP[$3]}:80 is $got, want $4"
}

# A state dir without credentials and no token: refused clearly.
if out=$(in_ns "$R" "$BH" agent --server 127.0.0.1:8444 --state-dir "$T/empty" --socket "$T/x.sock" 2>&1); then
  fail "agent without credentials or token started"
fi
echo "$out" | grep -q "no credentials" || fail "no clear error without credentials: $out"
# --policies with --server: refused.
if in_ns "$R" "$BH" agent --server 127.0.0.1:8444 --token "$JOIN" --policies "$T" --state-dir "$T/empty" \
  --socket "$T/x.sock" >/dev/null 2>&1; then
  fail "--policies with --server accepted"
fi

start_agent --token "$JOIN"
wait_enforced 1 || exit 1
expect "revision 1" 0 1 allow
expect "revision 1" 1 0 allow
[ "$(status_field connected)" = "true" ] || fail "status does not say connected"
# `bulkhead agents` on the server lists node-1 at revision 1.
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  in_ns "$R" "$BH" agents -o json 2>/dev/null | grep -q '"node-1"' && break
  sleep 0.1
done
in_ns "$R" "$BH" agents -o json 2>/dev/null | grep -q '"node-1"' || fail "bulkhead agents does not list node-1"

# apply changes the real verdict.
in_ns "$R" "$BH" apply -f "$T/policy-closed.yaml" >>"$T/cli.log" 2>&1 || fail "apply 2"
wait_enforced 2
expect "revision 2" 0 1 deny
expect "revision 2" 1 0 allow
"$BH" agent status --socket "$SOCK" >"$T/status.txt" 2>&1
grep -q "^server rev:  2 received, 2 enforced" "$T/status.txt" &&
  grep -q "^connected:   yes" "$T/status.txt" || fail "agent status text: $(cat "$T/status.txt")"

# The server goes away: the policy stays.
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
SERVER_PID=""
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  [ "$(status_field connected)" = "false" ] && break
  sleep 0.1
done
[ "$(status_field connected)" = "false" ] || fail "status still says connected with the server gone"
sleep 1
expect "server gone" 0 1 deny
expect "server gone" 1 0 allow
[ "$(status_field enforced_revision)" = "2" ] || fail "enforced revision changed without a server"

# The agent restarted while the server is down: the persisted policy, no token needed.
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
start_agent
wait_enforced 2
expect "restart, server gone" 0 1 deny
expect "restart, server gone" 1 0 allow

# The server is back: the agent converges to the newest revision.
start_server
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  in_ns "$R" "$BH" apply -f "$T/policy-open.yaml" >>"$T/cli.log" 2>&1 && break
  sleep 0.1
done
wait_enforced 3
expect "server back, revision 3" 0 1 allow

if [ "$FAILS" -ne 0 ]; then
  echo "--- agent log" >&2; tail -50 "$T/agent.log" >&2
  echo "--- server log" >&2; tail -20 "$T/server.log" >&2
  echo "FAILED: $FAILS checks" >&2
  exit 1
fi
echo "PASS"
