#!/usr/bin/env bash
# The main job: install what is needed, then run `berth demo` (everything inside a sandbox namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bin/berth demo
