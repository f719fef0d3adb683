#!/usr/bin/env bash
# Builds the single multi-call binary dist/berth (berth, berthd and every CNI plugin)
# and the plugin directory dist/cni/ with one link per plugin name (point CNI_PATH there).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/cni
if [ ! -x dist/berth ] || [ -n "$(find src -newer dist/berth -name '*.ts' -print -quit)" ]; then
  node_modules/.bin/bun build --compile --minify --bytecode src/main.ts --outfile dist/berth >/dev/null
fi
ln -sf berth dist/berthd
for p in loopback host-local static bridge ptp macvlan ipvlan tuning portmap bandwidth firewall; do
  ln -sf ../berth "dist/cni/$p"
done
