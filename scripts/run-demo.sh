#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, run the simulate demo over
# the bundled example estate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh bulkhead
exec bash scripts/demo.sh build/src/cli/bulkhead
