/**
 * Berth's benchmarks side by side with its peers, in one run on one machine.
 *
 *   bun bench/run.ts [--quick] [--only cni,berthd,...] [--out DIR] [--scales 0,100,500,1000]
 *   bash scripts/bench.sh [same options]       installs the peers, builds dist/, then runs this
 *
 * Writes DIR/report.md (tables, targets), DIR/*.png charts (with their .svg) and
 * DIR/results.json (raw samples). Default DIR: bench/results/<UTC date-time>.
 * Needs root; everything happens in throwaway namespaces (test/harness/sandbox.ts),
 * never in the machine's own network namespace. Not part of the unit test suite;
 * test/e2e/bench-smoke.test.ts runs `--quick` so it keeps working.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanStale } from "../test/harness/sandbox.ts";
import { writeChart } from "./lib/chart.ts";
import { loadAverage, sh } from "./lib/proc.ts";
import { renderReport } from "./lib/report.ts";
import type { BenchOptions, Section } from "./lib/types.ts";
import { SCENARIOS } from "./scenarios/index.ts";

const ROOT = join(import.meta.dir, "..");

function options(): BenchOptions & { only: string[] | undefined } {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      out: { type: "string" },
      scales: { type: "string" },
      probes: { type: "string" },
      "port-counts": { type: "string" },
      "cni-dir": { type: "string" },
    },
  });
  const quick = values.quick === true;
  const list = (s: string | undefined, d: number[]) => (s ? s.split(",").map((x) => Number(x.trim())) : d);
  const stamp = new Date().toISOString().replace(/[:]/g, "").replace(/\..*/, "Z");
  const only = values.only?.split(",").map((s) => s.trim());
  for (const id of only ?? []) {
    if (!SCENARIOS.some((s) => s.id === id)) throw new Error(`unknown scenario ${id}; known: ${SCENARIOS.map((s) => s.id).join(", ")}`);
  }
  return {
    quick,
    only,
    scales: list(values.scales, quick ? [0, 5] : [0, 100, 500, 1000]),
    probes: Number(values.probes ?? (quick ? 1 : 20)),
    portCounts: list(values["port-counts"], quick ? [10, 100] : [10, 1000, 10000]),
    iperfSeconds: quick ? 1 : 5,
    dataplaneReps: quick ? 1 : 3,
    dnsQueries: quick ? 200 : 3000,
    out: values.out ?? join(ROOT, "bench", "results", stamp),
    root: ROOT,
    berthCniDir: values["cni-dir"] ?? join(ROOT, "dist", "cni"),
    log: (m) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}`),
  };
}

function versions(): string[] {
  const v = (argv: string[]) => {
    const r = sh(argv);
    return r.code === 0 ? (r.out || r.err).trim().split("\n")[0]! : "not installed";
  };
  const deb = (pkg: string) => v(["dpkg-query", "-W", "-f", "$" + "{Version}", pkg]);
  return [
    `Berth: this tree, Bun ${Bun.version}; CNI plugins from dist/cni (compiled multi-call binary)`,
    `containernetworking-plugins ${deb("containernetworking-plugins")} (/usr/lib/cni)`,
    `netavark ${deb("netavark")}, aardvark-dns ${deb("aardvark-dns")}`,
    `iptables: ${v(["iptables", "--version"])}; nftables: ${v(["nft", "--version"])}; iperf3: ${v(["iperf3", "--version"])}`,
  ];
}

/**
 * On Ctrl-C / SIGTERM: kill this run's child processes (berthd, iperf3 and tcpbench servers)
 * by PID so none outlives the run; its namespaces and cgroups go at the next start (cleanStale).
 */
function killChildrenOnSignal(): void {
  const handler = () => {
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      try {
        if (/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] === String(process.pid)) process.kill(Number(pid), "SIGKILL");
      } catch {
        /* gone meanwhile */
      }
    }
    process.exit(130);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error("the benchmarks need root (network namespaces)");
  killChildrenOnSignal();
  const o = options();
  mkdirSync(o.out, { recursive: true });
  cleanStale();
  const started = new Date();
  const loadBefore = loadAverage();
  const sections: Section[] = [];
  const skipped: { id: string; title: string; reason: string }[] = [];
  for (const s of SCENARIOS) {
    if (o.only && !o.only.includes(s.id)) continue;
    const reason = s.unavailable?.(o);
    if (reason) {
      o.log(`${s.id}: not available: ${reason}`);
      skipped.push({ id: s.id, title: s.title, reason });
      continue;
    }
    o.log(`${s.id}: ${s.title}`);
    const t0 = performance.now();
    try {
      sections.push(await s.run(o));
    } catch (e) {
      // one failing scenario does not lose the others' numbers; the run still fails at the end
      o.log(`${s.id} FAILED: ${(e as Error).stack ?? e}`);
      skipped.push({ id: s.id, title: s.title, reason: `failed: ${(e as Error).message}` });
    }
    o.log(`${s.id}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const chartFiles = new Map<string, string>();
  for (const c of sections.flatMap((s) => s.charts)) chartFiles.set(c.name, writeChart(o.out, c).file);
  const md = renderReport(
    {
      started: started.toISOString(),
      seconds: (Date.now() - started.getTime()) / 1000,
      quick: o.quick,
      machine: `${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, kernel ${release()}`,
      loadBefore,
      loadAfter: loadAverage(),
      versions: versions(),
      skipped,
      chartFiles,
    },
    sections,
  );
  writeFileSync(join(o.out, "report.md"), md);
  writeFileSync(join(o.out, "results.json"), JSON.stringify({ started, options: { ...o, log: undefined }, sections, skipped }, null, 1));
  o.log(`report: ${join(o.out, "report.md")}`);
  return skipped.some((s) => s.reason.startsWith("failed:")) ? 1 : 0;
}

main().then(
  (c) => process.exit(c),
  (e) => {
    console.error(String((e as Error).stack ?? e));
    process.exit(2);
  },
);
