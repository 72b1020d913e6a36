#!/usr/bin/env bash
# Lint gate: clang-format must leave every C/C++ file unchanged, clang-tidy (.clang-tidy)
# must report nothing on src/. Usage: scripts/lint.sh BUILD_DIR (needs compile_commands.json).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
status=0
mapfile -t files < <(git ls-files '*.cc' '*.h' '*.c' | grep -v '^tests/fuzz/corpus/')
if ! clang-format --dry-run --Werror "${files[@]}"; then
  echo "lint: clang-format found unformatted files (run: clang-format -i FILE)"; status=1
fi
mapfile -t tidy < <(git ls-files 'src/*.cc')
if [ "${#tidy[@]}" -gt 0 ]; then
  if ! printf '%s\n' "${tidy[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p "$BUILD_DIR" --quiet 2>/dev/null; then
    echo "lint: clang-tidy reported problems"; status=1
  fi
fi
[ "$status" -eq 0 ] && echo "lint: clean"
exit $status
