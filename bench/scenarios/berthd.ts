/**
 * berthd's API: POST /networks/{id}/connect and /disconnect (Docker's route) with
 * 0/100/500/1000 containers already attached, the total time to attach 1000
 * containers one after another, and berthd's resident memory idle and with
 * every container attached.
 *
 * A real berthd (the test harness's startDaemon, in a sandbox host namespace).
 * The containers are `berth run` containers (netns + cgroup + a sleeping
 * process) on a "base" network, created up front in parallel (not timed); what is
 * timed is connecting each to a second bridge network, "bench", one at a time,
 * each an HTTP request on the unix socket, as `docker network connect` sends it.
 */
import { startDaemon, type TestDaemon } from "../../test/harness/daemon.ts";
import { createSandbox } from "../../test/harness/sandbox.ts";
import { rssKiB } from "../lib/proc.ts";
import { fmt, median, p50p99, pct, sum } from "../lib/stats.ts";
import { type BenchOptions, emptySection, type Scenario, type Section } from "../lib/types.ts";

const SETUP_PARALLEL = 6;
/** berthd's drift check interval (its default; BERTH_BENCH_RECONCILE_MS=0 turns it off to see its share). */
const RECONCILE_MS = process.env.BERTH_BENCH_RECONCILE_MS ?? "1000";
/** Requests in flight for the parallel attach figure. */
const PARALLEL = 8;

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

/** Runs `f` for every item with `width` calls in flight. */
async function inParallel<T>(items: T[], width: number, f: (x: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await f(items[next++]!);
  };
  await Promise.all(Array.from({ length: width }, worker));
}

function createContainers(d: TestDaemon, names: string[]): Promise<void> {
  return inParallel(names, SETUP_PARALLEL, (name) =>
    d.api("POST", "/berth/containers/run", { Name: name, Command: ["sleep", "1000000"], Networks: [{ Network: "base" }] }),
  );
}

export const berthdScenario: Scenario = {
  id: "berthd",
  title: "berthd API: connect/disconnect at scale, attach 1000, memory",
  async run(o: BenchOptions): Promise<Section> {
    const sec = emptySection(
      "berthd",
      this.title,
      [
        "A real berthd (`bun src/main.ts berthd`, in a sandbox host namespace) with `berth run` containers on a `base`",
        "bridge network, created up front. Timed: `POST /networks/bench/connect` / `disconnect` (Docker's route, over the",
        "unix socket) to a second bridge network, one at a time; the probe container connects and disconnects",
        `${o.probes} times at each scale. RSS from /proc/PID/status of the berthd process. Reconcile interval: ${RECONCILE_MS} ms.`,
      ].join(" "),
    );
    const maxN = Math.max(...o.scales);
    const sb = createSandbox("bbd");
    let d: TestDaemon | undefined;
    const names = Array.from({ length: maxN }, (_, i) => `c${i}`);
    try {
      d = await startDaemon(sb, ["--dns-upstream", "192.0.2.53", "--reconcile-interval", RECONCILE_MS]);
      const dm = d;
      await Bun.sleep(500);
      const rssIdle = rssKiB(dm.proc.pid);
      await dm.api("POST", "/networks/create", { Name: "base", IPAM: { Config: [{ Subnet: "10.200.0.0/20" }] } });
      await dm.api("POST", "/networks/create", { Name: "bench", IPAM: { Config: [{ Subnet: "10.201.0.0/20" }] } });
      o.log(`berthd: creating ${maxN} containers (${SETUP_PARALLEL} in parallel, not timed)`);
      const tCreate = await timed(() => createContainers(dm, [...names, "probe"]));
      await Bun.sleep(300);
      const rssBase = rssKiB(dm.proc.pid);
      const connect = (c: string) => timed(() => dm.api("POST", "/networks/bench/connect", { Container: c }));
      const disconnect = (c: string) => timed(() => dm.api("POST", "/networks/bench/disconnect", { Container: c }));

      const series: number[] = [];
      const cells: { scale: number; add: number[]; del: number[]; rss: number }[] = [];
      for (const scale of [...o.scales].sort((a, b) => a - b)) {
        while (series.length < scale) series.push(await connect(names[series.length]!));
        const add: number[] = [];
        const del: number[] = [];
        for (let p = 0; p < o.probes + 1; p++) {
          const a = await connect("probe");
          const r = await disconnect("probe");
          if (p > 0) {
            add.push(a);
            del.push(r);
          }
        }
        cells.push({ scale, add, del, rss: rssKiB(dm.proc.pid) });
        o.log(`berthd: ${scale} attached: connect p50 ${fmt(median(add))} ms, disconnect p50 ${fmt(median(del))} ms`);
      }
      const rssAll = rssKiB(dm.proc.pid);
      const teardown: number[] = [];
      for (let i = series.length - 1; i >= 0; i--) teardown.push(await disconnect(names[i]!));
      // what an orchestrator starting many containers at once sees: the same attach, PARALLEL requests in flight
      const attachedNames = names.slice(0, series.length);
      const parAttach = await timed(() => inParallel(attachedNames, PARALLEL, (c) => connect(c)));
      const parDetach = await timed(() => inParallel(attachedNames, PARALLEL, (c) => disconnect(c)));

      sec.tables.push({
        title: "connect / disconnect latency of one more container (ms)",
        head: ["attached", "connect p50 [p99]", "disconnect p50 [p99]", "berthd RSS (MiB)"],
        rows: cells.map((c) => [c.scale, p50p99(c.add), p50p99(c.del), fmt(c.rss / 1024)]),
      });
      const first = series.slice(0, 50);
      const last = series.slice(-50);
      sec.tables.push({
        title: `attaching ${series.length} containers one after another`,
        head: ["measure", "value"],
        rows: [
          [`sum of ${series.length} connect requests (s)`, fmt(sum(series) / 1000, 2)],
          ["connect #1–50 p50 [p99] (ms)", p50p99(first)],
          [`connect #${Math.max(1, series.length - 49)}–${series.length} p50 [p99] (ms)`, p50p99(last)],
          [`sum of ${teardown.length} disconnect requests (s)`, fmt(sum(teardown) / 1000, 2)],
          [`wall time to attach the ${series.length} with ${PARALLEL} requests in flight (s)`, fmt(parAttach / 1000, 2)],
          [`wall time to detach them with ${PARALLEL} requests in flight (s)`, fmt(parDetach / 1000, 2)],
          [`creating ${maxN + 1} containers with berth run, ${SETUP_PARALLEL} in parallel (s, not a target)`, fmt(tCreate / 1000, 1)],
          ["peer for comparison: netavark, 200 setups (see the netavark section; reference: ~20 s on this VM)", ""],
        ],
      });
      sec.tables.push({
        title: "berthd resident memory (MiB)",
        head: ["state", "RSS"],
        rows: [
          ["idle (no networks, no containers)", fmt(rssIdle / 1024)],
          [`${maxN + 1} containers running, one endpoint each`, fmt(rssBase / 1024)],
          [`${maxN + 1} containers, ${series.length} of them on a second network (${maxN + 1 + series.length} endpoints)`, fmt(rssAll / 1024)],
        ],
      });
      sec.charts.push({
        name: "berthd-connect",
        title: "berthd API connect/disconnect latency vs containers attached",
        unit: "ms",
        groups: cells.map((c) => ({
          label: `${c.scale} attached`,
          bars: [
            { series: "connect p50", value: pct(c.add, 50) },
            { series: "connect p99", value: pct(c.add, 99) },
            { series: "disconnect p50", value: pct(c.del, 50) },
          ],
        })),
      });
      if (maxN >= 1000) {
        const total = sum(series.slice(0, 1000)) / 1000;
        sec.targets.push({ what: "berthd attaches 1000 containers (sum of sequential API connects)", value: total, limit: 10, unit: "s", met: total < 10 });
      }
      sec.notes.push("The containers' own creation (netns, cgroup, process, first endpoint) is not part of the connect time.");
      sec.raw = { cells, series, teardown, rssIdle, rssBase, rssAll, tCreate, parAttach, parDetach };
      await inParallel([...names, "probe"], SETUP_PARALLEL, (n) => dm.api("DELETE", `/berth/containers/${n}?force=1`).catch(() => undefined));
      await dm.stop();
      d = undefined;
      return sec;
    } finally {
      if (d) await d.stop().catch(() => undefined);
      await sb.cleanup();
    }
  },
};
