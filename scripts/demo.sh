#!/usr/bin/env bash
# Walks through `bulkhead simulate` on the bundled example estate (examples/shop): single
# flows allowed and denied with their explanations, an audit-mode would-deny, IP endpoints,
# the reachability matrix and the full connectivity. Builds nothing.
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
