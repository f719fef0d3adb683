#!/usr/bin/env bash
# Berth side by side with its peers, in one run on this machine (as root):
#   bash scripts/bench.sh [--quick] [--only cni,berthd,netavark,ports,dataplane,dns] [--out DIR] [--scales 0,100,500,1000]
# Installs the peers (scripts/setup.sh --bench: containernetworking-plugins, netavark, aardvark-dns, iperf3,
# iptables, rsvg-convert, gcc), builds dist/ (Berth's CNI plugins), then runs bench/run.ts, which writes
# DIR/report.md, DIR/*.png and DIR/results.json (default DIR: bench/results/<UTC time>).
# Everything runs in throwaway network namespaces; the full run takes about an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --bench
bash scripts/build.sh
exec node_modules/.bin/bun bench/run.ts "$@"
