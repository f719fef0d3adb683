/**
 * Where does one connect spend its time? Runs an in-process Berth (controller,
 * drivers, store) in a sandbox, wraps every Dataplane, Controller, Firewall,
 * Store-table and IPAM method with a timer, connects N bare container namespaces one at a time and
 * prints the time per method (total, calls, mean) and per connect.
 *
 *   bun bench/tools/profile-connect.ts [N=200]     (PROFILE_FULL_FIREWALL=1: whole-table nft replace per change, as before deltas)
 */
import { createTestBerth } from "../../test/harness/berth.ts";

const N = Number(process.argv[2] ?? 200);
const acc = new Map<string, { ms: number; calls: number }>();

function wrap(obj: object, label: string): void {
  const proto = Object.getPrototypeOf(obj) as Record<string, unknown>;
  for (const k of Object.getOwnPropertyNames(proto)) {
    if (k === "constructor") continue;
    const f = (obj as Record<string, unknown>)[k];
    if (typeof f !== "function") continue;
    (obj as Record<string, unknown>)[k] = function (this: unknown, ...args: unknown[]) {
      const t0 = performance.now();
      const done = () => {
        const a = acc.get(`${label}.${k}`) ?? { ms: 0, calls: 0 };
        a.ms += performance.now() - t0;
        a.calls++;
        acc.set(`${label}.${k}`, a);
      };
      const r = (f as (...a: unknown[]) => unknown).apply(this, args);
      if (r instanceof Promise) return r.finally(done);
      done();
      return r;
    };
  }
}

const b = await createTestBerth("prof");
try {
  await b.ctl.createNetwork({ name: "prof", ipam: { config: [{ subnet: "10.220.0.0/20" }] } });
  const nss = Array.from({ length: N }, () => b.containerNs("p"));
  if (process.env.PROFILE_FULL_FIREWALL === "1") {
    // the behaviour before element deltas: every sync replaces both tables whole
    const fw = b.ctl.firewall;
    const sync = fw.sync.bind(fw);
    fw.sync = (load) => {
      fw.invalidate();
      return sync(load);
    };
  }
  wrap(b.dp, "dp");
  wrap(b.ctl, "ctl");
  wrap(b.ctl.firewall, "firewall");
  wrap(b.ipam, "ipam");
  for (const t of ["networks", "endpoints", "allocations", "containers"] as const) {
    const table = (b.store as unknown as Record<string, object>)[t];
    if (table) wrap(table, `store.${t}`);
  }
  const times: number[] = [];
  const t0 = performance.now();
  for (const [i, ns] of nss.entries()) {
    const s = performance.now();
    await b.ctl.connect({ network: "prof", containerId: i.toString(16).padStart(64, "0"), netns: ns });
    times.push(performance.now() - s);
  }
  const total = performance.now() - t0;
  times.sort((x, y) => x - y);
  console.log(`${N} connects: ${(total / 1000).toFixed(2)} s, p50 ${times[Math.floor(N / 2)]!.toFixed(1)} ms, p99 ${times[Math.floor(N * 0.99)]!.toFixed(1)} ms`);
  console.log("method                                   total ms   calls   mean ms   ms/connect");
  for (const [k, v] of [...acc].sort((x, y) => y[1].ms - x[1].ms)) {
    console.log(`${k.padEnd(40)} ${v.ms.toFixed(0).padStart(8)} ${String(v.calls).padStart(7)} ${(v.ms / v.calls).toFixed(2).padStart(9)} ${(v.ms / N).toFixed(2).padStart(12)}`);
  }
} finally {
  await b.close();
}
