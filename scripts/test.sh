#!/usr/bin/env bash
# Runs every test tier of Bulkhead on a fresh Debian bookworm machine (as root for bpf/netns):
# installs dependencies, builds once, runs the ctest tiers, the unit tests again under
# ASan+UBSan, the parser fuzzer for a bounded time, and the lint checks.
# Usage: scripts/test.sh [--quick]   (--quick: release build tiers only)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
JOBS=${JOBS:-$(nproc)}
export CCACHE_DIR=${CCACHE_DIR:-/var/cache/bulkhead-ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# Relative paths in the cache key, so that clones in other folders hit the same cache.
export CCACHE_BASEDIR=$ROOT CCACHE_NOHASHDIR=true
mkdir -p "$CCACHE_DIR" 2>/dev/null || export CCACHE_DIR="$HOME/.cache/bulkhead-ccache"

step() { printf '\n==== %s (%s)\n' "$1" "$(date +%T)"; }
PASSED=0
FAILED=0
SKIPPED=0
FAILED_STEPS=()
FAILED_TESTS=()   # "step: test name", printed again in the summary (CI shows the log's tail)
FAILED_DIRS=()
FAILED_OUTPUT=$(mktemp)
trap 'rm -f "$FAILED_OUTPUT"' EXIT

# Runs ctest in a build dir with a label regex and adds its counts to the totals.
run_ctest() {
  local dir=$1 labels=$2 name=$3 log
  log=$(mktemp)
  ctest --test-dir "$dir" -L "$labels" --output-on-failure -j "$JOBS" --timeout 1800 2>&1 | tee "$log"
  local total failed skipped
  total=$(sed -nE 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\2/p' "$log" | tail -1)
  failed=$(sed -nE 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\1/p' "$log" | tail -1)
  skipped=$(grep -cE '\*\*\*Skipped|Not Run' "$log" || true)
  if [ -z "$total" ]; then
    echo "ctest ($name) ran no test or crashed"
    FAILED=$((FAILED + 1)); FAILED_STEPS+=("$name")
  else
    PASSED=$((PASSED + total - failed - skipped)); FAILED=$((FAILED + failed)); SKIPPED=$((SKIPPED + skipped))
    if [ "$failed" -ne 0 ]; then
      FAILED_STEPS+=("$name"); FAILED_DIRS+=("$dir")
      while IFS= read -r t; do
        FAILED_TESTS+=("$name: $t")
        # The failed run's own output (its last lines), kept for the end of the log.
        { echo "---- $name: $t, first run's output (last 30 lines)"
          awk -v t="${t% (*}" 'index($0, ": " t " ") && /Test +#[0-9]+:/ { cap = 1; next }
                               cap && (/^ *Start +[0-9]+:/ || /Test +#[0-9]+:/) { cap = 0 }
                               cap { print }' "$log" | tail -30; } >>"$FAILED_OUTPUT"
      done < <(sed -n '/The following tests FAILED:/,$p' "$log" | sed -nE 's/^[[:space:]]+[0-9]+ - (.*)$/\1/p')
    fi
  fi
  rm -f "$log"
}

step "dependencies"
bash scripts/install-deps.sh || { echo "dependency installation failed"; exit 1; }

step "build (release)"
if ! cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || ! ninja -C build -j "$JOBS"; then
  echo "release build failed"; echo "total: 0 passed, 1 failed"; exit 1
fi

step "tests: unit, etcd, conformance, bpf, netns"
run_ctest build 'unit|etcd|conformance|bpf|netns' release

if [ "$QUICK" -eq 0 ]; then
  step "build (ASan+UBSan)"
  if cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBULKHEAD_SANITIZE=ON -DBULKHEAD_BENCH=OFF >/dev/null &&
     ninja -C build-asan -j "$JOBS"; then
    step "tests: unit under ASan+UBSan"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      run_ctest build-asan 'unit|etcd' asan
  else
    echo "ASan build failed"; FAILED=$((FAILED + 1)); FAILED_STEPS+=("asan-build")
  fi

  step "build (libFuzzer, clang)"
  if CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       -DBULKHEAD_FUZZ=ON -DBULKHEAD_BENCH=OFF >/dev/null &&
     ninja -C build-fuzz -j "$JOBS" parser_fuzz; then
    step "tests: fuzz (bounded)"
    run_ctest build-fuzz 'fuzz' fuzz
  else
    echo "fuzz build failed"; FAILED=$((FAILED + 1)); FAILED_STEPS+=("fuzz-build")
  fi

  step "lint: clang-format, clang-tidy"
  if bash scripts/lint.sh build; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); FAILED_STEPS+=("lint"); fi
fi

if [ "${#FAILED_DIRS[@]}" -ne 0 ]; then
  # For diagnosis only (the result stays failed): the failed tests once more, alone, with
  # their output, so that the end of the log shows why and whether they fail again.
  step "failed tests: run again alone, then the first run's output (diagnosis; does not change the result)"
  for d in "${FAILED_DIRS[@]}"; do
    ctest --test-dir "$d" --rerun-failed --output-on-failure --timeout 600 2>&1 | tail -25
  done
  head -60 "$FAILED_OUTPUT"
fi

step "summary"
for t in "${FAILED_TESTS[@]}"; do echo "failed test: $t"; done
[ "${#FAILED_STEPS[@]}" -eq 0 ] || echo "failed steps: ${FAILED_STEPS[*]}"
echo "total: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
