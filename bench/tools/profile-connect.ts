/**
 * Where does one connect spend its time? Runs an in-process Berth (controller,
 * drivers, store opened as berthd opens it: endpoint index, sync-on-demand) in a
 * sandbox, wraps every Dataplane, Controller, Firewall, Store-table and IPAM
 * method with a timer, connects N bare container namespaces one at a time and
 * prints the time per method (total, calls, mean) and per connect; then times
 * reconciler passes over the N endpoints the same way.
 *
 *   bun bench/tools/profile-connect.ts [N=200]
 *     PROFILE_FULL_FIREWALL=1: every sync replaces both tables whole, as before element deltas
 *     PROFILE_TEST_STORE=1: the plain test store (no endpoint index, fsync per commit) instead of berthd's
 *     PROFILE_BASE=1: first attach every namespace to a "base" network (not timed), like the berthd benchmark
 *     PROFILE_RECONCILE_MS=1000: run the reconciler at that interval during the timed connects, as berthd does
 */
import { Reconciler } from "../../src/controller/reconcile.ts";
import { createTestBerth } from "../../test/harness/berth.ts";
import { MethodTimer, quantile as p } from "./method-timer.ts";

const N = Number(process.argv[2] ?? 200);
const timer = new MethodTimer();

const b = await createTestBerth("prof", { daemonStore: process.env.PROFILE_TEST_STORE !== "1" });
try {
  await b.ctl.createNetwork({ name: "prof", ipam: { config: [{ subnet: "10.220.0.0/20" }] } });
  const nss = Array.from({ length: N }, () => b.containerNs("p"));
  const containerId = (i: number) => i.toString(16).padStart(64, "0");
  if (process.env.PROFILE_BASE === "1") {
    await b.ctl.createNetwork({ name: "base", ipam: { config: [{ subnet: "10.221.0.0/20" }] } });
    for (const [i, ns] of nss.entries()) await b.ctl.connect({ network: "base", containerId: containerId(i), netns: ns });
  }
  if (process.env.PROFILE_FULL_FIREWALL === "1") {
    // the behaviour before element deltas: every sync replaces both tables whole
    const fw = b.ctl.firewall;
    const sync = fw.sync.bind(fw);
    fw.sync = () => {
      fw.invalidate();
      return sync();
    };
  }
  timer.wrap(b.dp, "dp");
  timer.wrap(b.ctl, "ctl");
  timer.wrap(b.ctl.firewall, "firewall");
  timer.wrap(b.ipam, "ipam");
  timer.wrap(b.store, "store");
  for (const t of ["networks", "endpoints", "allocations", "containers"] as const) {
    const table = (b.store as unknown as Record<string, object>)[t];
    if (table) timer.wrap(table, `store.${t}`);
  }
  const background = new Reconciler(b.ctl);
  const reconcileMs = Number(process.env.PROFILE_RECONCILE_MS ?? 0);
  if (reconcileMs > 0) background.start(reconcileMs);
  const times: number[] = [];
  const cpu: number[] = [];
  const tenth = Math.max(1, Math.floor(N / 10));
  let firstTenth = new Map<string, number>();
  let beforeLastTenth = new Map<string, number>();
  const t0 = performance.now();
  for (const [i, ns] of nss.entries()) {
    if (i === tenth) firstTenth = timer.snapshot();
    if (i === N - tenth) beforeLastTenth = timer.snapshot();
    const s = performance.now();
    const c = process.cpuUsage();
    await b.ctl.connect({ network: "prof", containerId: containerId(i), netns: ns });
    times.push(performance.now() - s);
    const used = process.cpuUsage(c);
    cpu.push((used.user + used.system) / 1000);
    // a macrotask boundary per connect, as between berthd's HTTP requests: lets the reconciler's timer run
    if (reconcileMs > 0) await new Promise((r) => setImmediate(r));
  }
  const total = performance.now() - t0;
  background.stop();
  console.log(`${N} connects: ${(total / 1000).toFixed(2)} s, p50 ${p(times, 0.5)} ms, p99 ${p(times, 0.99)} ms`);
  console.log(`p50 by decile (ms): ${Array.from({ length: 10 }, (_, d) => p(times.slice(d * tenth, (d + 1) * tenth), 0.5)).join(" ")}`);
  // this process's CPU time (user + system) per connect: what the code costs, whatever else runs on the machine
  console.log(`CPU ms per connect, p50 by decile: ${Array.from({ length: 10 }, (_, d) => p(cpu.slice(d * tenth, (d + 1) * tenth), 0.5)).join(" ")}`);
  timer.print(N, "connect");
  console.log(`\nms/connect, first ${tenth} connects vs last ${tenth}:`);
  timer.printSpans(firstTenth, beforeLastTenth, tenth);
  // the reconciler's pass with N endpoints: what each tick costs berthd (and blocks its event loop),
  // as berthd runs it (started: links from the link monitor) and as a one-off pass (links dumped)
  const PASSES = 10;
  for (const started of [true, false]) {
    timer.acc.clear();
    const rec = new Reconciler(b.ctl);
    if (started) rec.start(3_600_000); // the monitor, no timer firing during the measurement
    const passes: number[] = [];
    for (let i = 0; i < PASSES; i++) {
      const s = performance.now();
      const repairs = await rec.runOnce();
      passes.push(performance.now() - s);
      if (repairs.length > 0) console.log(`unexpected repairs: ${repairs.map((r) => `${r.object}: ${r.problem}`).join("; ")}`);
    }
    rec.stop();
    console.log(`\nreconciler pass with ${N} endpoints (${started ? "started: link monitor" : "one-off: link dump"}): p50 ${p(passes, 0.5)} ms, max ${p(passes, 1)} ms`);
    timer.print(PASSES, "pass");
  }
} finally {
  await b.close();
}
