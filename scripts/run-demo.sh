#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, run the demo (simulate over the
# bundled example estate, then, as root, enforcement in a lab of network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh bulkhead bulkhead-cni
exec bash scripts/demo.sh build/src/cli/bulkhead
