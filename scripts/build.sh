#!/usr/bin/env bash
# Builds the single multi-call binary dist/berth (berth, berthd and every CNI plugin)
# and the plugin directory dist/cni/ with one link per plugin name (point CNI_PATH there),
# and the web UI's static app dist/ui/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/cni
if [ ! -x dist/berth ] || [ -n "$(find src scripts/build.sh -newer dist/berth \( -name '*.ts' -o -name build.sh \) -print -quit)" ]; then
  # --splitting: each lazily imported part (daemon, CLI, one CNI plugin) is its own chunk whose bytecode
  # loads only when imported, so a plugin process does not pay for the daemon's code (4-5 ms per exec)
  # --compile-jit-policy: short-lived processes stay in the interpreter (berthd resets it, src/main.ts);
  # no bunfig.toml or .env is looked for in the caller's directory
  node_modules/.bin/bun build --compile --minify --bytecode --splitting --format=esm --compile-jit-policy=20 \
    --no-compile-autoload-bunfig --no-compile-autoload-dotenv src/main.ts --outfile dist/berth >/dev/null
fi
ln -sf berth dist/berthd
for p in loopback host-local static bridge ptp macvlan ipvlan tuning portmap bandwidth firewall overlay; do
  ln -sf ../berth "dist/cni/$p"
done
# the web UI (berthd --ui serves dist/ui, next to dist/berth)
if [ ! -f dist/ui/index.html ] || [ -n "$(find ui -newer dist/ui/index.html -type f -print -quit)" ]; then
  node_modules/.bin/bun scripts/build-ui.ts dist/ui
fi
