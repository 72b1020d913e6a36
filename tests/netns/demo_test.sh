#!/usr/bin/env bash
# The README's main job (scripts/demo.sh) end to end (root): runs it with the built binary and
# checks the lines that prove each part did what it shows (the demo itself tolerates blocked
# probes, since showing them is its point). About 10 s.
# Usage: demo_test.sh PATH_TO_BULKHEAD
set -uo pipefail
BIN=$(readlink -f "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: demo_test needs root (network namespaces, bpffs, TC): NOT RUN" >&2
  exit 77
fi
OUT=$(mktemp /tmp/bulkhead-demo-test.XXXX)
trap 'rm -f "$OUT"' EXIT
bash "$ROOT/scripts/demo.sh" "$BIN" >"$OUT" 2>&1
rc=$?
fail=0
expect() {
  if ! grep -qF -- "$1" "$OUT"; then
    echo "demo_test: the demo's output lacks: $1" >&2
    fail=1
  fi
}
[ "$rc" -eq 0 ] || { echo "demo_test: the demo exited $rc" >&2; fail=1; }
# Part 2: the kernel agrees with simulate; a live change is in force.
expect "kernel and simulate agree on every one"
expect "shop/web -> shop/db TCP/80 over IPv4 (10.210.0.3): blocked"
# Part 3: three agents on revision 1, traffic across hosts, then each revision in force.
expect "ops/monitor -> shop/db UDP/80 over IPv6 (fd00:b4:1ab:0:4000::2): connected"
expect "revision 2"
expect "revision 3"
expect "created WorkloadMode shop/db"
[ "$(grep -cE '^host-[123] +4 +0 +ok' "$OUT")" -eq 3 ] || {
  echo "demo_test: not every agent enforces revision 4 with lag 0" >&2
  fail=1
}
# After the rollback web reaches db on 8080 again; in audit mode db takes TCP/80 too.
[ "$(grep -cF 'shop/web -> shop/db TCP/8080 over IPv4 (10.210.0.66): connected' "$OUT")" -ge 2 ] || {
  echo "demo_test: web -> db TCP/8080 across hosts was not connected before and after the change" >&2
  fail=1
}
expect "shop/web -> shop/db TCP/8080 over IPv4 (10.210.0.66): blocked"
expect "shop/web -> shop/db TCP/80 over IPv4 (10.210.0.66): connected"
expect "Lab demomh"
if [ "$fail" -ne 0 ]; then
  echo "---- demo output ----" >&2
  cat "$OUT" >&2
  exit 1
fi
# Nothing of either lab is left.
if ip netns list | grep -q "bhlab-demo"; then
  echo "demo_test: network namespaces left behind" >&2
  exit 1
fi
echo "demo_test: ok"
