/**
 * Where does a real berthd spend its time while containers attach? Starts berthd
 * (with Bun's --cpu-prof when PROFILE_DIR is set) in a sandbox, creates N `berth
 * run` containers on a base network, then connects them one at a time to a
 * second network over the API and prints the connect latency by decile.
 *
 *   bun bench/tools/profile-berthd.ts [N=200]
 *     PROFILE_INPROCESS=1: the daemon (Daemon.start, as berthd runs it) in this process instead,
 *       with every Controller, Firewall, Dataplane, Store-table and runtime method timed: the
 *       time per connect by method, for the first and the last tenth of the connects
 *       (--cpu-prof does not mix with in-process nftables: SIGPROF interrupts its netlink calls)
 *     PROFILE_CONTAINER_IPV6=0: before the timed connects, IPv6 off for new interfaces in every container
 *       namespace (net.ipv6.conf.default.disable_ipv6=1): shows what the IPv6 multicast of each new
 *       interface (DAD, MLD, router solicitation), flooded to every port of a 1000-port bridge, costs
 */
import { join } from "node:path";
import { Daemon } from "../../src/daemon/daemon.ts";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { socketApi, startDaemon } from "../../test/harness/daemon.ts";
import { createSandbox, RUN_PREFIX, removeCgroupTree, uniqueName } from "../../test/harness/sandbox.ts";
import { MethodTimer, quantile } from "./method-timer.ts";

const N = Number(process.argv[2] ?? 200);
const sb = createSandbox("pb");
const prof = process.env.PROFILE_DIR;
const timer = new MethodTimer();

interface Api {
  api(method: string, path: string, body?: unknown): Promise<unknown>;
  stop(): Promise<void>;
}

async function inProcess(): Promise<Api> {
  process.env.BERTH_LOG_LEVEL ??= "warn"; // not a line per request on this tool's output
  const socket = join(sb.stateDir, "berth.sock");
  const prefix = uniqueName("d");
  const cgroupParent = `${RUN_PREFIX}dcg${prefix.slice(-2)}`;
  const d = await Daemon.start({
    socket,
    stateDir: join(sb.stateDir, "state"),
    hostNetns: sb.host,
    netnsPrefix: prefix,
    cgroupParent,
    pluginSocket: null,
    cniOplog: join(sb.stateDir, "cni-ops.log"),
    defaultPools: [{ base: "10.124.0.0/16", size: 24 }],
    dnsUpstreams: ["192.0.2.53"],
    reconcileIntervalMs: 1000,
  });
  const ctl = d.controller;
  timer.wrap(ctl, "ctl");
  timer.wrap(ctl.dp, "dp");
  timer.wrap(ctl.firewall, "firewall");
  timer.wrap(ctl.ipam, "ipam");
  timer.wrap(d.runtime, "rt");
  timer.wrap(d.reconciler, "reconciler");
  for (const t of ["networks", "endpoints", "allocations", "containers"] as const) timer.wrap((d.store as unknown as Record<string, object>)[t]!, `store.${t}`);
  return {
    api: (method, path, body) => socketApi(socket, method, path, body),
    async stop() {
      await d.stop();
      for (const c of ["memory", "cpu", "pids", "cpuacct", "blkio", ""]) removeCgroupTree(join("/sys/fs/cgroup", c, cgroupParent));
    },
  };
}

const inproc = process.env.PROFILE_INPROCESS === "1";
const d: Api = inproc ? await inProcess() : await startDaemon(sb, [], prof ? { argvPrefix: ["env", `BUN_OPTIONS=--cpu-prof --cpu-prof-dir=${prof}`] } : {});
try {
  await d.api("POST", "/networks/create", { Name: "base", IPAM: { Config: [{ Subnet: "10.140.0.0/20" }] } });
  await d.api("POST", "/networks/create", { Name: "bench", IPAM: { Config: [{ Subnet: "10.141.0.0/20" }] } });
  const names = Array.from({ length: N }, (_, i) => `p${i}`);
  for (let i = 0; i < N; i += 6) {
    await Promise.all(names.slice(i, i + 6).map((n) => d.api("POST", "/berth/containers/run", { Name: n, Command: ["sleep", "3600"], Networks: [{ Network: "base" }] })));
  }
  if (process.env.PROFILE_CONTAINER_IPV6 === "0") {
    const dp = new Dataplane();
    for (const n of names) {
      const c = (await d.api("GET", `/berth/containers/${n}`)) as { NetnsName: string };
      await dp.sysctlSet(c.NetnsName, { "net.ipv6.conf.default.disable_ipv6": 1 });
    }
  }
  const ms: number[] = [];
  const cpu: number[] = [];
  const tenth = Math.max(1, Math.floor(N / 10));
  timer.acc.clear();
  let first = new Map<string, number>();
  let beforeLast = new Map<string, number>();
  const t0 = performance.now();
  for (const [i, n] of names.entries()) {
    if (i === tenth) first = timer.snapshot();
    if (i === N - tenth) beforeLast = timer.snapshot();
    const t = performance.now();
    const c = process.cpuUsage();
    await d.api("POST", "/networks/bench/connect", { Container: n });
    ms.push(performance.now() - t);
    const used = process.cpuUsage(c);
    cpu.push((used.user + used.system) / 1000);
  }
  const total = performance.now() - t0;
  console.log(`${N} connects in ${(total / 1000).toFixed(2)} s; p50 first ${tenth}: ${quantile(ms.slice(0, tenth), 0.5)} ms, last ${tenth}: ${quantile(ms.slice(-tenth), 0.5)} ms`);
  console.log(`p50 by decile (ms): ${Array.from({ length: 10 }, (_, k) => quantile(ms.slice(k * tenth, (k + 1) * tenth), 0.5)).join(" ")}; p99 ${quantile(ms, 0.99)} ms`);
  if (inproc) {
    // this process's CPU time (user + system) per connect: what the code costs, whatever else runs on the machine
    console.log(`CPU ms per connect, p50 by decile: ${Array.from({ length: 10 }, (_, k) => quantile(cpu.slice(k * tenth, (k + 1) * tenth), 0.5)).join(" ")}`);
    timer.print(N, "connect", 30);
    console.log(`\nms/connect, first ${tenth} connects vs last ${tenth}:`);
    timer.printSpans(first, beforeLast, tenth, 20);
  }
  timer.acc.clear();
  const t1 = performance.now();
  await Promise.all(Array.from({ length: 8 }, async (_, w) => {
    for (let i = w; i < N; i += 8) await d.api("POST", "/networks/bench/disconnect", { Container: names[i] });
  }));
  console.log(`${N} disconnects with 8 in flight in ${((performance.now() - t1) / 1000).toFixed(2)} s`);
  if (inproc) timer.print(N, "disconnect", 15);
  const t2 = performance.now();
  await Promise.all(Array.from({ length: 8 }, async (_, w) => {
    for (let i = w; i < N; i += 8) await d.api("POST", "/networks/bench/connect", { Container: names[i] });
  }));
  console.log(`${N} connects with 8 in flight in ${((performance.now() - t2) / 1000).toFixed(2)} s`);
  for (let i = 0; i < N; i += 6) await Promise.all(names.slice(i, i + 6).map((n) => d.api("DELETE", `/berth/containers/${n}?force=1`).catch(() => undefined)));
} finally {
  await d.stop();
  await sb.cleanup();
}
