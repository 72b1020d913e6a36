#!/usr/bin/env bash
# Part 1 walks through `bulkhead simulate` on the bundled example estate (examples/shop):
# single flows allowed and denied with their explanations, an audit-mode would-deny, IP
# endpoints, the reachability matrix and the full connectivity. Part 2 (as root) brings up a
# lab (examples/lab/small.yaml) through the CNI chain with the real agent and eBPF datapath,
# sends real traffic, explains from the kernel's tables, compares the kernel's matrix with
# simulate's, shows live flows, changes a policy live, and tears the lab down. Part 3 (as root)
# brings up a lab of three hosts with one `bulkhead server` and an agent per host joined over
# mutual TLS, sends traffic across hosts, and runs policy as code against the server (diff,
# apply, history, rollback, a workload's mode) while the agents enforce it. Builds nothing
# (bulkhead-cni must sit next to the bulkhead binary: scripts/build.sh bulkhead bulkhead-cni).
# Usage: scripts/demo.sh [PATH_TO_BULKHEAD]   (default: build/src/cli/bulkhead)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/src/cli/bulkhead}
EXAMPLES=examples/shop

if [ ! -x "$BIN" ]; then
  echo "demo: no bulkhead binary at $BIN (build it first: scripts/build.sh bulkhead)" >&2
  exit 1
fi

if [ -t 1 ] && [ -z "${NO_COLOR+set}" ]; then BOLD=$'\033[1m' RESET=$'\033[0m'; else BOLD='' RESET=''; fi
heading() { printf '\n%s== %s%s\n' "$BOLD" "$1" "$RESET"; }
# Prints the command, then runs it. A denied flow is still a successful simulation (exit 0).
run() {
  printf '$ bulkhead %s\n\n' "$*"
  "$BIN" "$@"
}

heading "The estate: 3 namespaces, 7 workloads (one a plain Linux VM), every policy tier"
printf '%s\n' "$EXAMPLES"/*.yaml

heading "Allowed: the web tier calls the shop API (baseline allows egress, a NetworkPolicy allows ingress by named port)"
run simulate -f "$EXAMPLES" --from frontend/web --to shop/api --port 8080

heading "Denied by the admin tier: the frontend may never reach the PCI zone"
run simulate -f "$EXAMPLES" --from frontend/web --to payments/gateway --port 8443

heading "Allowed across namespaces: the admin tier passes shop traffic to the payments NetworkPolicies"
run simulate -f "$EXAMPLES" --from shop/api --to payments/gateway --port 8443

heading "Denied implicitly: isolated workloads, with the nearest rule that did not match"
run simulate -f "$EXAMPLES" --from shop/api --to payments/db --port 5432

heading "Audit mode: the ledger VM (by its IP) reaches the database, reported as would-deny"
run simulate -f "$EXAMPLES" --from 10.20.0.5 --to payments/db --port 5432

heading "Outside the cluster: ipBlock with except"
run simulate -f "$EXAMPLES" --from payments/gateway --to 203.0.113.10 --port 443
echo
run simulate -f "$EXAMPLES" --from payments/gateway --to 203.0.113.200 --port 443

heading "The same flow as JSON, for tools and CI gates"
run simulate -f "$EXAMPLES" --from shop/cart --to shop/redis --port 6379 -o json

heading "Reachability matrix on TCP/5432: every ordered pair of workloads"
run simulate -f "$EXAMPLES" --matrix --port 5432

heading "Connectivity: every allowed protocol and port range, to and from outside the cluster"
run simulate -f "$EXAMPLES" --connectivity

# ---- Part 2: the same kind of policy enforced in the kernel, in a lab (needs root) ----
if [ "$(id -u)" -ne 0 ]; then
  heading "Enforcement in a lab: skipped (it needs root: network namespaces, bpffs, TC)"
  echo "Run the demo as root to see the eBPF datapath enforce policy on real traffic."
  exit 0
fi
LAB=demo$$
LAB2=demomh$$
WORK=$(mktemp -d /tmp/bulkhead-demo.XXXX)
OBSERVER=""
lab_cleanup() {
  set +e
  [ -n "$OBSERVER" ] && kill "$OBSERVER" 2>/dev/null
  "$BIN" lab down --name "$LAB" >/dev/null 2>&1
  "$BIN" lab down --name "$LAB2" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap lab_cleanup EXIT
cp -r examples/lab/small-policies "$WORK/policies"
SOCK=/run/bulkhead/lab/$LAB/agent.sock

heading "Enforcement: a lab of 3 workloads in network namespaces, attached through the CNI chain (bridge, host-local, bulkhead-cni), the real agent and eBPF datapath"
cat examples/lab/small.yaml | sed -n '/^spec:/,$p'
run lab up -f examples/lab/small.yaml --policies "$WORK/policies" --name "$LAB"

heading "The policies the agent enforces (default deny for every selected workload)"
grep -v '^#' "$WORK/policies/shop.yaml"

# A probe is a real connection from one workload's netns to another's address.
probe() {
  printf '$ bulkhead lab probe %s\n' "$*"
  "$BIN" lab probe --name "$LAB" --timeout 500 "$@" || true
}
heading "Real traffic: allowed and denied flows, TCP and UDP, IPv4 and IPv6"
probe --from shop/web --to shop/db --port 8080
probe --from shop/web --to shop/db --port 80
probe --from ops/monitor --to shop/db --port 80 --protocol udp --family 6
probe --from ops/monitor --to shop/db --port 8080 --protocol udp --family 6
probe --from ops/monitor --to shop/web --port 80

heading "Why a flow is denied, answered from the tables loaded in the kernel"
run explain --socket "$SOCK" --from shop/web --to shop/db --port 80

heading "The kernel's reachability matrix (every pair probed at once) against simulate's, TCP/8080"
"$BIN" lab probe --name "$LAB" --matrix --port 8080 --timeout 500 || true
"$BIN" lab probe --name "$LAB" --matrix --port 8080 --timeout 500 -o json > "$WORK/kernel.json" || true
"$BIN" simulate -f "$WORK/policies" -f "/run/bulkhead/lab/$LAB/cluster.yaml" --matrix --port 8080 \
  -o json > "$WORK/simulate.json" || true
# A workload's traffic to its own address stays inside its netns (loopback): no datapath sees
# it, so the diagonal is left out of the comparison.
python3 - "$WORK/kernel.json" "$WORK/simulate.json" <<'PY'
import json, sys
kernel, sim = (json.load(open(f)) for f in sys.argv[1:3])
kernel = kernel[0] if isinstance(kernel, list) else kernel
pairs = [(a, b) for a in sim["workloads"] for b in sim["workloads"] if a != b]
differ = [(a, b) for a, b in pairs if kernel["matrix"][a][b] != sim["matrix"][a][b]]
for a, b in differ:
    print(f"  {a} -> {b}: kernel {kernel['matrix'][a][b]}, simulate {sim['matrix'][a][b]}")
print(f"{len(pairs)} pairs compared: " + (f"{len(differ)} DIFFER" if differ else "kernel and simulate agree on every one"))
PY

heading "Live flows with verdict, policy and rule (bulkhead observe), while web probes db"
"$BIN" observe --socket "$SOCK" --workload shop/db > "$WORK/observe.txt" 2>&1 &
OBSERVER=$!
sleep 0.5
"$BIN" lab probe --name "$LAB" --from shop/web --to shop/db --port 8080 --timeout 500 >/dev/null || true
"$BIN" lab probe --name "$LAB" --from shop/web --to shop/db --port 80 --timeout 500 >/dev/null || true
sleep 0.5
kill "$OBSERVER" 2>/dev/null; wait "$OBSERVER" 2>/dev/null || true; OBSERVER=""
cat "$WORK/observe.txt"

heading "A policy change is in force at once: db stops taking TCP/8080 from web"
sed -i 's/ports: \[{port: 8080, protocol: TCP}\]/ports: [{port: 9999, protocol: TCP}]/' "$WORK/policies/shop.yaml"
for _ in $(seq 50); do
  "$BIN" lab probe --name "$LAB" --from shop/web --to shop/db --port 8080 --timeout 200 >/dev/null || break
  sleep 0.1
done
probe --from shop/web --to shop/db --port 8080
run agent status --socket "$SOCK"

heading "Tear down: every namespace, link, pin and process of the lab goes"
run lab down --name "$LAB"

# ---- Part 3: several hosts, one server, agents over mutual TLS, policy as code ----
heading "Several hosts: 3 host namespaces (bridge, CNI, agent each) joined by a routed underlay, one bulkhead server, each agent joined with a join token"
sed -n '/^spec:/,/^  namespaces:/p' examples/lab/multihost.yaml
mkdir -p "$WORK/mh"
cp examples/lab/small-policies/*.yaml "$WORK/mh/"
run lab up -f examples/lab/multihost.yaml --policies "$WORK/mh" --name "$LAB2"

# The server's API listens in the lab's core namespace; the CLI talks to it there.
SERVER_DIR=/run/bulkhead/lab/$LAB2/server
BIN_ABS=$(readlink -f "$BIN")
server_cli() {
  printf '$ bulkhead %s

' "$*"
  nsenter --net="/run/netns/bhlab-${LAB2}_core" "$BIN_ABS" "$@" --server https://127.0.0.1:8443 \
    --ca "$SERVER_DIR/ca.crt" --token-file "$SERVER_DIR/admin.token"
}
probe2() {
  printf '$ bulkhead lab probe %s\n' "$*"
  "$BIN" lab probe --name "$LAB2" --timeout 500 "$@" || true
}
# Waits until web (host-1) -> db (host-2) on TCP/8080 is as expected: 0 connected, 1 blocked.
wait_flow() {
  for _ in $(seq 100); do
    rc=0
    "$BIN" lab probe --name "$LAB2" --from shop/web --to shop/db --port 8080 --timeout 200 >/dev/null || rc=$?
    [ "$rc" -eq "$1" ] && return 0
    sleep 0.1
  done
}

# Waits (30 s at most) until every agent enforces the server's head and is healthy: one
# agent's flow in force does not mean the others' acks have reached the server yet.
wait_agents() {
  for _ in $(seq 300); do
    nsenter --net="/run/netns/bhlab-${LAB2}_core" "$BIN_ABS" agents -o json \
      --server https://127.0.0.1:8443 --ca "$SERVER_DIR/ca.crt" \
      --token-file "$SERVER_DIR/admin.token" 2>/dev/null | python3 -c '
import json, sys
a = json.load(sys.stdin).get("agents", [])
sys.exit(0 if a and all(x.get("lag") == 0 and x.get("health") == "ok" for x in a) else 1)' && return 0
    sleep 0.1
  done
}

heading "Every agent enforces the server's revision (enforced, lag, health, endpoints, CPU, memory)"
wait_agents
server_cli agents

heading "Traffic across hosts: web on host-1, db on host-2, monitor on host-3"
probe2 --from shop/web --to shop/db --port 8080
probe2 --from shop/web --to shop/db --port 80
probe2 --from ops/monitor --to shop/db --port 80 --protocol udp --family 6
probe2 --from ops/monitor --to shop/web --port 80 --family 6

heading "Policy as code: change a file, diff it against the server (exit 1: differs), apply it"
sed -i 's/ports: \[{port: 8080, protocol: TCP}\]/ports: [{port: 9999, protocol: TCP}]/' "$WORK/mh/shop.yaml"
server_cli diff -f "$WORK/mh" -f "/run/bulkhead/lab/$LAB2/namespaces.yaml" || true
server_cli apply -f "$WORK/mh" -f "/run/bulkhead/lab/$LAB2/namespaces.yaml" -m "db: 9999 instead of 8080"
wait_flow 1
probe2 --from shop/web --to shop/db --port 8080
wait_agents
server_cli agents

heading "History and rollback: revision 1 again, as a new revision; host-2's agent enforces it"
server_cli history
server_cli rollback 1 -m "back to the first policy"
wait_flow 0
probe2 --from shop/web --to shop/db --port 8080

heading "One workload in audit mode (a WorkloadMode object): db takes what policy would deny, and says so"
server_cli mode set audit --workload shop/db
for _ in $(seq 50); do
  "$BIN" lab probe --name "$LAB2" --from shop/web --to shop/db --port 80 --timeout 200 >/dev/null && break
  sleep 0.1
done
probe2 --from shop/web --to shop/db --port 80
wait_agents
server_cli agents
server_cli audit --limit 5

heading "Tear down: the server, the agents, every host, link and pin of the lab"
run lab down --name "$LAB2"
