#!/usr/bin/env bash
# netns test of bulkhead-cni: a host netns runs the real agent; the real CNI chain (Debian's
# bridge with host-local, then bulkhead-cni), invoked directly with the CNI_* variables as a
# runtime would, wires 3 pods (IPv4 + IPv6) in 2 namespaces. Real TCP shows the policy (one
# allowed pair, default deny for the rest) enforced as soon as ADD returns; then CHECK, a
# retried ADD, DEL (endpoint, ipcache entries and TC filters gone), DEL again, CHECK after DEL,
# an agent restart that keeps the registrations, and the codes when the agent is down.
# Everything it makes has a unique name and is removed on exit. About 10 s.
# Usage: cni_chain_test.sh PATH/TO/bulkhead   (bulkhead-cni must be next to it)
set -uo pipefail
BH=$(readlink -f "${1:?usage: $0 PATH/TO/bulkhead}")
CNI=$(dirname "$BH")/bulkhead-cni
PLUGINS=/usr/lib/cni

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: the CNI chain test needs root (network namespaces, bpffs, TC); run it as root" >&2
  exit 77
fi
for tool in ip ss nsenter socat timeout mount python3 tc bpftool; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done
for p in "$CNI" "$PLUGINS/bridge" "$PLUGINS/host-local"; do
  [ -x "$p" ] || { echo "FAIL: $p is missing (containernetworking-plugins, or build bulkhead-cni)" >&2; exit 1; }
done

START=$SECONDS
ID=$(printf '%04x' $((($$ + RANDOM) % 65536)))
T=$(mktemp -d "/tmp/bh-cni-$ID.XXXX")
H="bh${ID}host"                        # the node: agent, bridge, host veths
BR="bhbr$ID"                           # the bridge (in $H)
NET4="10.$((0x${ID:0:2} % 200 + 20)).$((0x${ID:2:2})).0/24"
NET6="fd42:${ID}::/64"
SOCK="$T/agent.sock"
PODS=(client web other)                # pod names
PNS=(shop shop batch)                  # their namespaces
APP=(client web client)                # their app label
CID=()                                 # container ids
NETNS=()                               # their netns names
IP4=() IP6=() VETH=()
AGENT_PID=""
FAILS=0

cleanup() {
  set +e
  [ -n "$AGENT_PID" ] && kill -9 "$AGENT_PID" 2>/dev/null
  for n in "${NETNS[@]}" "$H"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null  # the bridge and the host veths go with $H
  done
  umount "$T/bpffs" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
in_ns() { local n=$1; shift; nsenter --net="/var/run/netns/$n" "$@"; }
json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# ---- the node and its agent ----
ip netns add "$H" || exit 1
in_ns "$H" ip link set lo up
in_ns "$H" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
mkdir -p "$T/policies" "$T/state" "$T/bpffs" "$T/ipam"
mount -t bpf bpf "$T/bpffs" || exit 1
# shop is in the inventory (with a label); batch is not: it gets only the implicit
# kubernetes.io/metadata.name label, as in Kubernetes.
cat >"$T/inventory.yaml" <<'INV'
apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: cni-test}
spec:
  namespaces:
  - {name: shop, labels: {team: shop}}
INV
cat >"$T/policies/policy.yaml" <<'POL'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 80, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: batch}
spec:
  podSelector: {}
  policyTypes: [Ingress]
POL

start_agent() {
  nsenter --net="/var/run/netns/$H" "$BH" agent --policies "$T/policies" --inventory "$T/inventory.yaml" \
    --state-dir "$T/state" --pin-root "$T/bpffs/bulkhead" --socket "$SOCK" --node cni-test \
    >>"$T/agent.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 1 100); do
    "$BH" agent status --socket "$SOCK" >/dev/null 2>&1 && return 0
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "agent did not become ready; log:" >&2
  cat "$T/agent.log" >&2
  return 1
}
start_agent || exit 1

# ---- the chain, as a runtime runs it: one plugin at a time, each with its own config ----
# plugin TYPE COMMAND POD-INDEX CONFIG-FILE: runs in $H; prints stdout; returns the exit code.
plugin() {
  local type=$1 cmd=$2 i=$3 conf=$4 bin
  bin=$([ "$type" = bulkhead-cni ] && echo "$CNI" || echo "$PLUGINS/$type")
  in_ns "$H" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND="$cmd" \
    CNI_CONTAINERID="${CID[$i]}" CNI_NETNS="/var/run/netns/${NETNS[$i]}" CNI_IFNAME=eth0 \
    CNI_PATH="$PLUGINS" \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=${PNS[$i]};K8S_POD_NAME=${PODS[$i]}" \
    "$bin" <"$conf"
}
bridge_conf() {
  cat <<EOF
{"cniVersion": "1.0.0", "name": "bh$ID", "type": "bridge", "bridge": "$BR",
 "isGateway": true, "ipMasq": false,
 "ipam": {"type": "host-local", "dataDir": "$T/ipam",
          "ranges": [[{"subnet": "$NET4"}], [{"subnet": "$NET6"}]],
          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}
EOF
}
# bulkhead-cni's config: what libcni gives the last plugin of a conflist (prevResult, args).
bulkhead_conf() {
  local i=$1 prev=$2
  python3 - "$SOCK" "${APP[$i]}" "$prev" "$ID" <<'PY'
import json, sys
sock, app, prev, ident = sys.argv[1:5]
conf = {"cniVersion": "1.0.0", "name": "bh" + ident, "type": "bulkhead-cni", "agentSocket": sock,
        "args": {"cni": {"labels": [{"key": "app", "value": app}]},
                 "bulkhead": {"serviceAccount": app}}}
if prev:
    conf["prevResult"] = json.load(open(prev))
print(json.dumps(conf))
PY
}

add_pod() {
  local i=$1 out rc
  CID[$i]="cid$ID${PODS[$i]}$SECONDS"
  NETNS[$i]="bh${ID}${PODS[$i]}"
  ip netns add "${NETNS[$i]}" || return 1
  in_ns "${NETNS[$i]}" ip link set lo up
  bridge_conf >"$T/bridge.json"
  plugin bridge ADD "$i" "$T/bridge.json" >"$T/prev$i.json" || { fail "bridge ADD ${PODS[$i]}: $(cat "$T/prev$i.json")"; return 1; }
  bulkhead_conf "$i" "$T/prev$i.json" >"$T/bh$i.json"
  out=$(plugin bulkhead-cni ADD "$i" "$T/bh$i.json"); rc=$?
  [ $rc -eq 0 ] || { fail "bulkhead-cni ADD ${PODS[$i]} exit $rc: $out"; return 1; }
  # A chained plugin that changes nothing prints the previous result.
  python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1]) != json.load(open(sys.argv[2])))' \
    "$out" "$T/prev$i.json" || fail "ADD ${PODS[$i]} did not pass prevResult on: $out"
  IP4[$i]=$(json_get '[x["address"].split("/")[0] for x in d["ips"] if ":" not in x["address"]][0]' <"$T/prev$i.json")
  IP6[$i]=$(json_get '[x["address"].split("/")[0] for x in d["ips"] if ":" in x["address"]][0]' <"$T/prev$i.json")
  VETH[$i]=$(json_get '[x["name"] for x in d["interfaces"] if not x.get("sandbox") and x["name"] != "'"$BR"'"][0]' <"$T/prev$i.json")
  in_ns "${NETNS[$i]}" socat TCP6-LISTEN:80,fork,reuseaddr,ipv6only=0 EXEC:/bin/cat &
  in_ns "${NETNS[$i]}" socat TCP6-LISTEN:8080,fork,reuseaddr,ipv6only=0 EXEC:/bin/cat &
  # The pod is ready for probes when both servers listen and its IPv6 address has left DAD
  # (a probe sent before would see a refused or unroutable connect, not the policy).
  # Polled with a generous bound: a loaded machine may take seconds to start the servers.
  local ready="" deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(in_ns "${NETNS[$i]}" ss -Hltn '( sport = :80 or sport = :8080 )' | wc -l)" -ge 2 ] &&
      [ -z "$(in_ns "${NETNS[$i]}" ip -6 addr show dev eth0 tentative)" ]; then
      ready=1; break
    fi
    sleep 0.05
  done
  [ -n "$ready" ] || { fail "pod ${PODS[$i]} not ready in 60 s (servers or IPv6 DAD)"; return 1; }
}
for i in 0 1 2; do add_pod "$i" || exit 1; done
echo "pods: client ${IP4[0]} ${IP6[0]}, web ${IP4[1]} ${IP6[1]}, other ${IP4[2]} ${IP6[2]} ($((SECONDS - START)) s)"

# ---- enforcement with real TCP ----
probe() {  # probe FROM TO PORT FAMILY -> allow|deny
  local from=$1 to=$2 port=$3 fam=$4 addr out
  if [ "$fam" = 4 ]; then addr="${IP4[$to]}"; else addr="[${IP6[$to]}]"; fi
  out=$(echo "x$from$to" | in_ns "${NETNS[$from]}" timeout 3 socat -t1 - "TCP:$addr:$port,connect-timeout=1" 2>/dev/null)
  [ "$out" = "x$from$to" ] && echo allow || echo deny
}
# Wait for the servers (and IPv6 DAD) on the one allowed pair, then check every pair.
for _ in $(seq 1 50); do
  [ "$(probe 0 1 80 4)" = allow ] && [ "$(probe 0 1 80 6)" = allow ] && break
  sleep 0.1
done
# check "WANT FROM TO PORT FAMILY"...: all probes at once (a denied one waits out its
# connect timeout), then every answer compared.
check() {
  local cases=("$@") n=0 pids=() c got
  for c in "${cases[@]}"; do
    read -r _ from to port fam <<<"$c"
    probe "$from" "$to" "$port" "$fam" >"$T/probe.$n" &
    pids+=($!)
    n=$((n + 1))
  done
  wait "${pids[@]}"
  n=0
  for c in "${cases[@]}"; do
    read -r want from to port fam <<<"$c"
    got=$(cat "$T/probe.$n")
    n=$((n + 1))
    [ "$got" = "$want" ] ||
      fail "${PNS[$from]}/${PODS[$from]} -> ${PNS[$to]}/${PODS[$to]}:$port IPv$fam: $got, want $want"
  done
}
check_policy() {
  local cases=() fam
  for fam in 4 6; do
    cases+=("allow 0 1 80 $fam")   # client -> web:80: the one allowed pair
    cases+=("deny 0 1 8080 $fam")  # another port
    cases+=("deny 2 1 80 $fam")    # batch/other has app=client, but another namespace
    cases+=("deny 1 0 80 $fam")    # shop is default-deny
    cases+=("deny 0 2 80 $fam")    # batch too
    cases+=("deny 1 2 80 $fam")
  done
  check "${cases[@]}"
}
check_policy
echo "policy enforced on the chain's pods ($((SECONDS - START)) s)"

# ---- CHECK, retried ADD ----
for i in 0 1 2; do
  out=$(plugin bulkhead-cni CHECK "$i" "$T/bh$i.json") || fail "CHECK ${PODS[$i]}: $out"
done
out=$(plugin bulkhead-cni ADD 0 "$T/bh0.json") || fail "retried ADD: $out"
"$BH" endpoints --socket "$SOCK" -o json >"$T/eps.json"
[ "$(json_get 'sorted((e["workload"], e["source"], e["error"]) for e in d)' <"$T/eps.json")" = \
  "[('batch/other', 'cni', ''), ('shop/client', 'cni', ''), ('shop/web', 'cni', '')]" ] ||
  { fail "endpoints after ADD"; cat "$T/eps.json" >&2; }

# ---- DEL: the endpoint, its ipcache entries and its TC filters go ----
ipcache_count() { bpftool -j map dump pinned "$T/bpffs/bulkhead/bh_ipcache" | json_get 'len(d)'; }
has_filter() {  # (not grep -q: with pipefail, tc's SIGPIPE would fail the pipe)
  [[ "$(in_ns "$H" tc filter show dev "${VETH[1]}" "$1" 2>/dev/null)" == *" bpf "* ]] && echo yes || echo no
}
IPC_BEFORE=$(ipcache_count)
[ "$(has_filter ingress)" = yes ] && [ "$(has_filter egress)" = yes ] || fail "web's veth ${VETH[1]} has no TC filters before DEL"
bulkhead_conf 1 "" >"$T/del1.json"    # DEL without prevResult must work too
out=$(plugin bulkhead-cni DEL 1 "$T/del1.json") || fail "DEL web: $out"
[ "$(has_filter ingress)" = no ] && [ "$(has_filter egress)" = no ] || fail "TC filters left on ${VETH[1]} after DEL"
[ "$(ipcache_count)" -eq $((IPC_BEFORE - 2)) ] || fail "ipcache had $IPC_BEFORE entries, $(ipcache_count) after DEL (want 2 fewer)"
[ "$("$BH" endpoints --socket "$SOCK" -o json | json_get 'sorted(e["workload"] for e in d)')" = "['batch/other', 'shop/client']" ] ||
  fail "endpoints after DEL: $("$BH" endpoints --socket "$SOCK")"
[ "$("$BH" agent status --socket "$SOCK" -o json | json_get 'd["registered_endpoints"]')" = 2 ] || fail "status: not 2 registered"
out=$(plugin bulkhead-cni DEL 1 "$T/del1.json") || fail "second DEL web: $out"
out=$(plugin bulkhead-cni CHECK 1 "$T/bh1.json") && fail "CHECK of a deleted pod passed"
[ "$(json_get 'd["code"]' <<<"$out")" = 101 ] || fail "CHECK after DEL: $out"
plugin bridge DEL 1 "$T/bridge.json" >/dev/null || fail "bridge DEL web"
# The runtime removes the sandbox (and the server in it).
for p in $(ip netns pids "${NETNS[1]}"); do kill -9 "$p" 2>/dev/null; done
ip netns del "${NETNS[1]}"
echo "DEL done ($((SECONDS - START)) s)"

# ---- agent restart: registrations are kept, enforcement and CHECK continue ----
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=""
out=$(plugin bulkhead-cni DEL 0 "$T/del1.json"); rc=$?
[ $rc -ne 0 ] && [ "$(json_get 'd["code"]' <<<"$out")" = 11 ] || fail "DEL with the agent down: exit $rc, $out (want code 11)"
start_agent || exit 1
for i in 0 2; do
  out=$(plugin bulkhead-cni CHECK "$i" "$T/bh$i.json") || fail "CHECK ${PODS[$i]} after restart: $out"
done
check "deny 2 0 80 4" "deny 2 0 80 6"
# A new web pod (a new sandbox) is enforced at once, beside the adopted ones.
add_pod 1 || exit 1
check_policy

# ---- the rest goes; nothing registered remains ----
for i in 0 1 2; do
  out=$(plugin bulkhead-cni DEL "$i" "$T/del1.json") || fail "DEL ${PODS[$i]}: $out"
  plugin bridge DEL "$i" "$T/bridge.json" >/dev/null || fail "bridge DEL ${PODS[$i]}"
done
[ "$("$BH" endpoints --socket "$SOCK" -o json | json_get 'len(d)')" = 0 ] || fail "endpoints left after DEL"
[ "$(bpftool -j map dump pinned "$T/bpffs/bulkhead/bh_endpoints" | json_get 'len(d)')" = 0 ] ||
  fail "kernel endpoint entries left after DEL"

echo "took $((SECONDS - START)) s"
if [ "$FAILS" -ne 0 ]; then
  echo "---- agent log" >&2; cat "$T/agent.log" >&2
  echo "FAILED: $FAILS checks" >&2
  exit 1
fi
echo "PASS"
