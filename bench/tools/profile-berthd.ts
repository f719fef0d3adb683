/**
 * Where does a real berthd spend its time while containers attach? Starts berthd
 * (with Bun's --cpu-prof when PROFILE_DIR is set) in a sandbox, creates N `berth
 * run` containers on a base network, then connects them one at a time to a
 * second network over the API and prints the connect latency by decile.
 *
 *   bun bench/tools/profile-berthd.ts [N=200]
 */
import { startDaemon } from "../../test/harness/daemon.ts";
import { createSandbox } from "../../test/harness/sandbox.ts";

const N = Number(process.argv[2] ?? 200);
const sb = createSandbox("pb");
const prof = process.env.PROFILE_DIR;
const d = await startDaemon(sb, [], prof ? { argvPrefix: ["env", `BUN_OPTIONS=--cpu-prof --cpu-prof-dir=${prof}`] } : {});
try {
  await d.api("POST", "/networks/create", { Name: "base", IPAM: { Config: [{ Subnet: "10.140.0.0/20" }] } });
  await d.api("POST", "/networks/create", { Name: "bench", IPAM: { Config: [{ Subnet: "10.141.0.0/20" }] } });
  const names = Array.from({ length: N }, (_, i) => `p${i}`);
  for (let i = 0; i < N; i += 6) {
    await Promise.all(names.slice(i, i + 6).map((n) => d.api("POST", "/berth/containers/run", { Name: n, Command: ["sleep", "3600"], Networks: [{ Network: "base" }] })));
  }
  const ms: number[] = [];
  const t0 = performance.now();
  for (const n of names) {
    const t = performance.now();
    await d.api("POST", "/networks/bench/connect", { Container: n });
    ms.push(performance.now() - t);
  }
  const total = performance.now() - t0;
  const dec = (a: number[]) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)]!.toFixed(1);
  const tenth = Math.max(1, Math.floor(N / 10));
  console.log(`${N} connects in ${(total / 1000).toFixed(2)} s; p50 first ${tenth}: ${dec(ms.slice(0, tenth))} ms, last ${tenth}: ${dec(ms.slice(-tenth))} ms`);
  const t1 = performance.now();
  await Promise.all(Array.from({ length: 8 }, async (_, w) => {
    for (let i = w; i < N; i += 8) await d.api("POST", "/networks/bench/disconnect", { Container: names[i] });
  }));
  console.log(`${N} disconnects with 8 in flight in ${((performance.now() - t1) / 1000).toFixed(2)} s`);
  const t2 = performance.now();
  await Promise.all(Array.from({ length: 8 }, async (_, w) => {
    for (let i = w; i < N; i += 8) await d.api("POST", "/networks/bench/connect", { Container: names[i] });
  }));
  console.log(`${N} connects with 8 in flight in ${((performance.now() - t2) / 1000).toFixed(2)} s`);
  for (const n of names) await fetch(`http://berthd/berth/containers/${n}?force=1`, { method: "DELETE", unix: d.socket });
} finally {
  await d.stop();
  await sb.cleanup();
}
