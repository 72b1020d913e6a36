#!/usr/bin/env bash
# Propagation to real agents: a lab of 3 hosts with one `bulkhead server` (bulkhead lab up
# --control-plane server; each host runs `bulkhead agent --server`, eBPF datapath included),
# then one-policy changes through the REST API, each timed from the apply to the moment the
# server's agents list shows every agent's ack of the revision (an agent acks after it has
# compiled and loaded the revision into its datapath). The baseline of the same run is the
# apply alone. Needs root (netns, bpf); exit 77 when not root.
#
#   sudo bench/server/propagation_lab.sh --bulkhead build/src/cli/bulkhead [--changes 50]
set -euo pipefail

BULKHEAD=""
CHANGES=50
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bulkhead) BULKHEAD="$2"; shift 2 ;;
    --changes) CHANGES="$2"; shift 2 ;;
    *) echo "usage: propagation_lab.sh --bulkhead PATH [--changes N]" >&2; exit 2 ;;
  esac
done
[[ -n "$BULKHEAD" ]] || { echo "propagation_lab.sh: --bulkhead PATH is required" >&2; exit 2; }
BULKHEAD="$(realpath "$BULKHEAD")"
if [[ $EUID -ne 0 ]]; then
  echo "SKIP: propagation_lab.sh needs root (network namespaces, bpf)" >&2
  exit 77
fi
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON=/usr/bin/python3

# Unique per run: two runs never share a lab, a pin root or a temp dir.
NAME="prop$$"
TMP="$(mktemp -d /tmp/bulkhead_prop_lab.XXXXXX)"
cleanup() {
  "$BULKHEAD" lab down --name "$NAME" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

cp "$REPO/examples/lab/multihost.yaml" "$TMP/lab.yaml"
mkdir "$TMP/policies"
cp "$REPO"/examples/lab/small-policies/*.yaml "$TMP/policies/"
"$BULKHEAD" lab up -f "$TMP/lab.yaml" --policies "$TMP/policies" --name "$NAME" \
  --control-plane server >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; exit 1; }

STATE="/run/bulkhead/lab/$NAME"
CORE="bhlab-${NAME}_core"
[[ -f "$STATE/server/admin.token" ]] || { echo "no $STATE/server/admin.token" >&2; exit 1; }

# The driver runs inside the core netns, where the REST API listens on loopback: one process
# for the whole loop, so that polls are ~2 ms apart instead of a process start each.
cat >"$TMP/driver.py" <<'EOF'
# Drives one-policy changes through the lab server's REST API and times each to every ack.
import json, ssl, statistics, sys, time, urllib.request

state, changes = sys.argv[1], int(sys.argv[2])
base = sys.argv[3] if len(sys.argv) > 3 else "https://127.0.0.1:8443"  # the lab's REST port
token = open(state + "/server/admin.token").read().strip()
ctx = ssl.create_default_context(cafile=state + "/server/ca.crt")
ctx.check_hostname = False  # the certificate names the lab's server, we dial 127.0.0.1

def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
        return json.loads(r.read())

def policy(i):
    return ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            "metadata: {name: bench-prop, namespace: shop}\nspec:\n"
            "  podSelector: {matchLabels: {app: db}}\n  ingress:\n"
            "  - from: [{podSelector: {matchLabels: {app: web}}}]\n"
            "    ports: [{port: %d, protocol: TCP}]\n" % (20000 + i))

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]

agents = [a["node"] for a in call("GET", "/api/v1/agents")["agents"]]
apply_ms, ack_ms, after_ms = [], [], []
for i in range(changes + 3):
    t0 = time.monotonic()
    r = call("POST", "/api/v1/apply", {"files": [{"name": "bench.yaml", "content": policy(i)}]})
    t1 = time.monotonic()
    rev = r["revision"]
    while True:
        listed = call("GET", "/api/v1/agents")["agents"]
        done = [a for a in listed if a["enforcedRevision"] >= rev and a["health"] == "ok"]
        if len(done) == len(agents):
            break
        if time.monotonic() - t1 > 60:
            sys.exit("revision %d: not acked by every agent in 60 s: %s" % (rev, listed))
        time.sleep(0.002)
    t2 = time.monotonic()
    if i >= 3:  # the first three warm up
        apply_ms.append((t1 - t0) * 1000)
        ack_ms.append((t2 - t0) * 1000)
        after_ms.append((t2 - t1) * 1000)
if not agents:
    sys.exit("the server lists no agent")
print("%d agents (%s), %d one-policy changes" % (len(agents), ", ".join(agents), changes))
print("%-40s %8s %8s %8s" % ("ms", "p50", "p99", "max"))
for name, v in [("apply alone (REST, baseline)", apply_ms),
                ("apply sent -> every agent acked", ack_ms),
                ("apply returned -> every agent acked", after_ms)]:
    print("%-40s %8.1f %8.1f %8.1f" % (name, pct(v, 0.5), pct(v, 0.99), max(v)))
print("ratio p50 (sent -> acked) / apply alone: %.2fx" % (pct(ack_ms, 0.5) / pct(apply_ms, 0.5)))
EOF
ip netns exec "$CORE" "$PYTHON" "$TMP/driver.py" "$STATE" "$CHANGES"
