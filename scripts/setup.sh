#!/usr/bin/env bash
# Installs everything Berth needs on a fresh Debian 12 machine (run as root):
# the kernel tools Berth drives (iproute2, nftables, util-linux's nsenter),
# the demo workload (busybox-static) and the npm dependencies (Bun included).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pair in ip:iproute2 nft:nftables nsenter:util-linux busybox:busybox-static ping:iputils-ping ss:iproute2; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/bin/$cmd" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
