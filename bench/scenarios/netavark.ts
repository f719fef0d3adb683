/**
 * netavark (podman's network backend) setup/teardown latency for a bridge
 * network with one published port per container, with 0/100/500/1000
 * containers attached (../shared/bench-peers/02-netavark.sh, in TypeScript).
 *
 * netavark gets podman's NetworkOptions JSON; podman does IPAM, so each container
 * gets a static address. It runs inside a sandbox host namespace (this file
 * re-executes itself there as the worker) with its iptables driver, config dir
 * in a temp dir, DNS off.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSandbox, RUN_PREFIX, uniqueName } from "../../test/harness/sandbox.ts";
import { must, runWorker, sh } from "../lib/proc.ts";
import { fmt, median, p50p99, sum } from "../lib/stats.ts";
import { type BenchOptions, emptySection, type Scenario, type Section } from "../lib/types.ts";

const NETAVARK = "/usr/lib/podman/netavark";

interface Job {
  work: string;
  scales: number[];
  probes: number;
}

interface Cell {
  attached: number;
  setup: number[];
  teardown: number[];
}

interface Out {
  cells: Cell[];
  series: number[];
  teardownSeries: number[];
  iptablesRules: number;
}

/** The host address of container i in 10.244.128.0/18 (i = 0 -> .128.10). */
function ipOf(i: number): string {
  const n = i + 10;
  return `10.244.${128 + Math.floor(n / 256)}.${n % 256}`;
}

function conf(cid: string, ip: string, hostPort: number): string {
  return JSON.stringify({
    container_id: cid,
    container_name: cid,
    port_mappings: [{ host_ip: "", container_port: 80, host_port: hostPort, range: 1, protocol: "tcp" }],
    networks: { benchnet: { static_ips: [ip], interface_name: "eth0" } },
    network_info: {
      benchnet: {
        name: "benchnet",
        id: "b".repeat(64),
        driver: "bridge",
        network_interface: "nvbench0",
        subnets: [{ subnet: "10.244.128.0/18", gateway: "10.244.128.1" }],
        ipv6_enabled: false,
        internal: false,
        dns_enabled: false,
        ipam_options: { driver: "host-local" },
      },
    },
  });
}

function worker(job: Job): Out {
  mkdirSync(join(job.work, "config"), { recursive: true });
  const made: string[] = [];
  const nv = (verb: "setup" | "teardown", ns: string, file: string) => {
    const r = sh([NETAVARK, "--config", join(job.work, "config"), "-f", file, verb, `/run/netns/${ns}`]);
    if (r.code !== 0) throw new Error(`netavark ${verb} failed: ${r.err || r.out}`);
    return r.ms;
  };
  const container = (i: number, port: number) => {
    const ns = uniqueName("n");
    must(["ip", "netns", "add", ns]);
    made.push(ns);
    const file = join(job.work, `${i}.json`);
    writeFileSync(file, conf(`bench${i}`.padEnd(64, "0"), ipOf(i), port));
    return { ns, file };
  };
  const out: Out = { cells: [], series: [], teardownSeries: [], iptablesRules: 0 };
  const attached: { ns: string; file: string }[] = [];
  try {
    const probe = container(16000, 8080);
    for (const scale of [...job.scales].sort((a, b) => a - b)) {
      while (attached.length < scale) {
        const c = container(attached.length, 20000 + attached.length);
        out.series.push(nv("setup", c.ns, c.file));
        attached.push(c);
      }
      const cell: Cell = { attached: scale, setup: [], teardown: [] };
      for (let p = 0; p < job.probes + 1; p++) {
        const s = nv("setup", probe.ns, probe.file);
        const t = nv("teardown", probe.ns, probe.file);
        if (p > 0) {
          cell.setup.push(s);
          cell.teardown.push(t);
        }
      }
      out.cells.push(cell);
      console.error(`[netavark] ${String(scale).padStart(4)} attached: setup p50 ${fmt(median(cell.setup))} ms, teardown p50 ${fmt(median(cell.teardown))} ms`);
    }
    out.iptablesRules = sh(["iptables-save"]).out.split("\n").filter((l) => l.startsWith("-A")).length;
    for (const c of attached.reverse()) out.teardownSeries.push(nv("teardown", c.ns, c.file));
  } finally {
    for (const n of made) sh(["ip", "netns", "del", n]);
  }
  return out;
}

export const netavarkScenario: Scenario = {
  id: "netavark",
  title: "netavark setup/teardown at scale (podman's backend)",
  unavailable: () => (existsSync(NETAVARK) ? undefined : "netavark missing (apt-get install netavark)"),
  async run(o: BenchOptions): Promise<Section> {
    const sec = emptySection(
      "netavark",
      this.title,
      [
        "`netavark setup|teardown` with podman's NetworkOptions JSON (bridge network, static IP, one published port",
        `per container, DNS off, iptables driver) from a process inside a sandbox host namespace; ${o.probes} timed`,
        "setup/teardown cycles of a probe container after one warm-up, with N containers attached. Compare with the",
        "berthd section (API connect, no published port) and the CNI chain (bridge→portmap→bandwidth).",
      ].join(" "),
    );
    const sb = createSandbox("bnv");
    const work = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}nv-`));
    try {
      const r = await runWorker<Out>(sb.host, import.meta.path, { work, scales: o.scales, probes: o.probes } satisfies Job);
      sec.tables.push({
        title: "netavark latency (ms), p50 [p99]",
        head: ["attached", "setup", "teardown"],
        rows: r.cells.map((c) => [c.attached, p50p99(c.setup), p50p99(c.teardown)]),
      });
      sec.tables.push({
        title: "attaching containers one after another",
        head: ["containers", "sum of setups (s)", "first 200 (s)", "setup #1–50", "last 50 setups", "sum of teardowns (s)", "iptables rules at the end"],
        rows: [[r.series.length, fmt(sum(r.series) / 1000, 2), fmt(sum(r.series.slice(0, 200)) / 1000, 2), p50p99(r.series.slice(0, 50)), p50p99(r.series.slice(-50)), fmt(sum(r.teardownSeries) / 1000, 2), r.iptablesRules]],
      });
      sec.charts.push({
        name: "netavark",
        title: "netavark setup/teardown p50 vs containers attached",
        unit: "ms",
        groups: r.cells.map((c) => ({ label: `${c.attached} attached`, bars: [{ series: "setup", value: median(c.setup) }, { series: "teardown", value: median(c.teardown) }] })),
      });
      sec.raw = r;
      return sec;
    } finally {
      rmSync(work, { recursive: true, force: true });
      await sb.cleanup();
    }
  },
};

if (import.meta.main) console.log(JSON.stringify(worker(JSON.parse(process.argv[2] ?? "{}") as Job)));
