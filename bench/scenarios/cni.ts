/**
 * CNI ADD/DEL latency per plugin and for a chain, Berth's plugins (dist/cni)
 * against the reference plugins (/usr/lib/cni, Debian containernetworking-plugins),
 * with 0/100/500/1000 containers attached. The measuring runs in cni-worker.ts
 * inside a sandbox host namespace.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSandbox, RUN_PREFIX } from "../../test/harness/sandbox.ts";
import { runWorker } from "../lib/proc.ts";
import { fmt, median, p50p99, pct, ratio, sum } from "../lib/stats.ts";
import { type BenchOptions, emptySection, type Scenario, type Section } from "../lib/types.ts";
import { CNI_CONFIGS, type CniCell, type CniJob } from "./cni-worker.ts";

const REFERENCE = "/usr/lib/cni";
const WORKER = join(import.meta.dir, "cni-worker.ts");

export const cniScenario: Scenario = {
  id: "cni",
  title: "CNI plugins: ADD/DEL per plugin and chain, Berth vs reference",
  unavailable(o) {
    if (!existsSync(join(REFERENCE, "bridge"))) return "reference plugins missing (apt-get install containernetworking-plugins)";
    if (!existsSync(join(o.berthCniDir, "bridge"))) return `Berth's plugins missing in ${o.berthCniDir} (run scripts/build.sh)`;
    return undefined;
  },
  async run(o: BenchOptions): Promise<Section> {
    const sec = emptySection(
      "cni",
      this.title,
      [
        "Each plugin is exec'd from a process inside a sandbox host namespace, as libcni does (one process per plugin,",
        "prevResult forward on ADD, cached result in reverse on DEL); the time is fork+exec+wait of the plugin. With N",
        `containers attached (each its own netns; the chain gives each its own host port), a probe container runs ${o.probes}`,
        "timed ADD/DEL cycles after one warm-up. Same configs, same host-local IPAM, for both implementations.",
      ].join(" "),
    );
    const sb = createSandbox("bcni");
    const work = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}cni-`));
    try {
      const job: CniJob = { work, scales: o.scales, probes: o.probes, dirs: { reference: REFERENCE, berth: o.berthCniDir } };
      const { cells, floor } = await runWorker<{ cells: CniCell[]; floor: number[] }>(sb.host, WORKER, job);
      const cell = (impl: string, cfg: string, n: number) => cells.find((c) => c.impl === impl && c.config === cfg && c.attached === n);
      const rows: (string | number)[][] = [];
      for (const cfg of CNI_CONFIGS) {
        for (const r of cells.filter((c) => c.impl === "reference" && c.config === cfg.id)) {
          const b = cell("berth", cfg.id, r.attached);
          if (!b) continue;
          rows.push([cfg.title, r.attached, p50p99(r.add), p50p99(b.add), ratio(median(b.add), median(r.add)), p50p99(r.del), p50p99(b.del), ratio(median(b.del), median(r.del))]);
          if (r.perPlugin && b.perPlugin) {
            for (const p of Object.keys(r.perPlugin)) {
              const rp = r.perPlugin[p]!;
              const bp = b.perPlugin[p]!;
              rows.push([`  ↳ ${p}`, r.attached, p50p99(rp.add), p50p99(bp.add), ratio(median(bp.add), median(rp.add)), p50p99(rp.del), p50p99(bp.del), ratio(median(bp.del), median(rp.del))]);
            }
          }
        }
      }
      sec.tables.push({
        title: "CNI latency (ms), p50 [p99]; ratio = Berth ÷ reference (p50)",
        head: ["config", "attached", "reference ADD", "Berth ADD", "ADD ratio", "reference DEL", "Berth DEL", "DEL ratio"],
        rows,
      });
      const seriesRows: (string | number)[][] = [];
      for (const cfg of CNI_CONFIGS.filter((c) => c.scaled)) {
        for (const impl of ["reference", "berth"]) {
          const all = cells.filter((c) => c.impl === impl && c.config === cfg.id).flatMap((c) => c.series ?? []);
          if (all.length > 0) seriesRows.push([cfg.title, impl, all.length, fmt(sum(all) / 1000, 2), p50p99(all.slice(0, 50)), p50p99(all.slice(-50))]);
        }
      }
      sec.tables.push({
        title: "attaching containers one after another (sum of plugin exec time)",
        head: ["config", "implementation", "containers", "total (s)", "ADD #1–50", "last 50 ADDs"],
        rows: seriesRows,
      });
      for (const cfg of CNI_CONFIGS.filter((c) => c.scaled)) {
        sec.charts.push({
          name: `cni-${cfg.id}`,
          title: `CNI ADD/DEL p50: ${cfg.title}`,
          unit: "ms",
          groups: cells
            .filter((c) => c.impl === "reference" && c.config === cfg.id)
            .map((r) => ({
              label: `${r.attached} attached`,
              bars: [
                { series: "reference ADD", value: median(r.add) },
                { series: "Berth ADD", value: median(cell("berth", cfg.id, r.attached)?.add ?? []) },
                { series: "reference DEL", value: median(r.del) },
                { series: "Berth DEL", value: median(cell("berth", cfg.id, r.attached)?.del ?? []) },
              ],
            })),
        });
      }
      for (const [cfg, limit] of [["bridge", 0.5], ["chain", 0.25]] as const) {
        const r = cell("reference", cfg, 500);
        const b = cell("berth", cfg, 500);
        if (r && b) {
          const v = median(b.add) / median(r.add);
          sec.targets.push({ what: `CNI ${cfg} ADD at 500 attached, Berth ÷ reference`, value: v, limit, unit: "×", met: v <= limit });
        }
      }
      sec.notes.push(`Harness floor (spawn+wait of /bin/true from the same worker): p50 ${fmt(pct(floor, 50), 2)} ms.`);
      sec.raw = { cells, floor };
      return sec;
    } finally {
      rmSync(work, { recursive: true, force: true });
      await sb.cleanup();
    }
  },
};
