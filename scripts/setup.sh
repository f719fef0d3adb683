#!/usr/bin/env bash
# Installs everything Berth needs on a fresh Debian 12 machine (run as root).
#   scripts/setup.sh          what berth/berthd need: iproute2, nftables, nsenter, busybox, ping, sysctl; npm deps (Bun)
#   scripts/setup.sh --test   plus what the test suite drives: the reference CNI plugins, iperf3, docker, podman, ...
#   scripts/setup.sh --bench  the same set (the benchmarks drive the same peers; scripts/bench.sh uses it)
set -euo pipefail
cd "$(dirname "$0")/.."

# command:package pairs for running Berth
RUNTIME_DEPS=(ip:iproute2 nft:nftables nsenter:util-linux busybox:busybox-static ping:iputils-ping sysctl:procps)
# test dependencies: real peers and clients the suite compares against or is driven by
TEST_DEPS=(/usr/lib/cni/bridge:containernetworking-plugins iperf3:iperf3)
# socat: UDP over IPv6 in test/netns/ipv6.test.ts ([::1] userland forwarding)
TEST_DEPS+=(socat:socat)
# etcd for the multi-host store and overlay tests (berthd only talks to an etcd; it needs no binary of it)
TEST_DEPS+=(etcd:etcd-server etcdctl:etcd-client)
# test dependencies of the CNI runtime/plugin tests: iptables for the reference portmap/firewall
# (test/netns/cni-chain), podman with its OCI runtimes for test/e2e/podman (CNI backend, conmon comes with podman)
TEST_DEPS+=(iptables:iptables podman:podman crun:crun runc:runc tc:iproute2)
# the docker CLI (Debian's 20.10 when /usr/local/bin/docker is absent) and dockerd + containerd for the plugin tests
TEST_DEPS+=(dockerd:docker.io /usr/bin/docker:docker.io containerd:containerd containerd-shim-runc-v2:containerd)
# the browser the web UI test drives (test/e2e/ui.test.ts, through playwright-core; no browser download)
TEST_DEPS+=(/usr/bin/chromium:chromium)
# the benchmarks' peers and tools (bench/run.ts; its smoke test is in the suite): netavark and aardvark-dns
# (podman's backend and DNS), rsvg-convert for the PNG charts, gcc for bench/tools/tcpbench.c
TEST_DEPS+=(/usr/lib/podman/netavark:netavark /usr/lib/podman/aardvark-dns:aardvark-dns rsvg-convert:librsvg2-bin gcc:gcc)
# strace: test/unit/store-durability counts the store's fsyncs
TEST_DEPS+=(strace:strace)

want=("${RUNTIME_DEPS[@]}")
case "${1:-}" in --test|--bench) want+=("${TEST_DEPS[@]}") ;; esac

need=()
for pair in "${want[@]}"; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  if [[ $cmd == /* ]]; then [ -e "$cmd" ] && continue
  else command -v "$cmd" >/dev/null 2>&1 && continue; [ -x "/bin/$cmd" ] && continue; fi
  need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting services (dockerd, containerd) in the root namespace
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # npm 11 with omit-lockfile-registry-resolved (this machine's npmrc) writes no entries for other
  # platforms' optional packages (biome's binaries) and then refuses its own lock in `npm ci`;
  # `npm install` installs exactly the locked versions from the same lock without changing it
  npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || npm install --no-audit --no-fund --loglevel=error
fi
