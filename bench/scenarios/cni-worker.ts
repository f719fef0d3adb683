/**
 * The measuring half of the CNI scenario. It runs INSIDE the sandbox host
 * namespace (started with `ip netns exec`), like a container runtime on that
 * host, and execs the plugins the way libcni does: one process per plugin, the
 * list's name and cniVersion added, runtimeConfig for declared capabilities,
 * prevResult forward on ADD, the cached result on DEL in reverse order.
 *
 *   bun cni-worker.ts '{"work": DIR, "scales": [...], "probes": N, "dirs": {"reference": ..., "berth": ...}}'
 *
 * Prints one JSON value (CniCell[]) on stdout.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { uniqueName } from "../../test/harness/sandbox.ts";
import { must, sh } from "../lib/proc.ts";

export type Impl = "reference" | "berth";

export interface CniJob {
  work: string;
  scales: number[];
  probes: number;
  dirs: Record<Impl, string>;
  /** Only these configs (ids); all when absent. */
  configs?: string[];
}

export interface CniCell {
  impl: Impl;
  config: string;
  attached: number;
  add: number[];
  del: number[];
  /** Chains: per-plugin ADD/DEL latencies. */
  perPlugin?: Record<string, { add: number[]; del: number[] }>;
  /** ADD latency of the background containers attached to reach this scale (by index). */
  series?: number[];
}

interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [k: string]: unknown;
}

export interface CniConfig {
  id: string;
  title: string;
  /** Probed at every scale (else only with 0 attached). */
  scaled: boolean;
  plugins: (work: string, i: number) => PluginConf[];
}

const ipam = (work: string, subnet: string) => ({ type: "host-local", ranges: [[{ subnet }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: join(work, "ipam") });

export const CNI_CONFIGS: CniConfig[] = [
  {
    id: "bridge",
    title: "bridge + host-local, ipMasq",
    scaled: true,
    plugins: (w, i) => [{ type: "bridge", bridge: `cbm${i}`, isGateway: true, ipMasq: true, ipam: ipam(w, `10.${100 + i}.0.0/20`) }],
  },
  {
    id: "ptp",
    title: "ptp + host-local",
    scaled: false,
    plugins: (w, i) => [{ type: "ptp", ipMasq: false, ipam: ipam(w, `10.${120 + i}.0.0/20`) }],
  },
  {
    id: "macvlan",
    title: "macvlan (bridge mode, veth parent) + host-local",
    scaled: false,
    plugins: (w, i) => [{ type: "macvlan", master: "mvparent0", mode: "bridge", ipam: ipam(w, `10.${140 + i}.0.0/20`) }],
  },
  {
    id: "chain",
    title: "chain bridge→portmap→bandwidth",
    scaled: true,
    plugins: (w, i) => [
      { type: "bridge", bridge: `cch${i}`, isGateway: true, ipMasq: true, ipam: ipam(w, `10.${160 + i}.0.0/20`) },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
      { type: "bandwidth", capabilities: { bandwidth: true } },
    ],
  },
];

interface Net {
  name: string;
  plugins: PluginConf[];
}

/** One ADD or DEL through a list, as libcni. Returns total and per-plugin ms and the final result. */
export function runList(dir: string, verb: "ADD" | "DEL", net: Net, ns: string, cid: string, hostPort: number, cached?: unknown): { ms: number; per: number[]; result: unknown } {
  let prev: unknown = verb === "DEL" ? cached : undefined;
  const plugins = verb === "ADD" ? net.plugins : [...net.plugins].reverse();
  const per: number[] = [];
  for (const p of plugins) {
    const { capabilities, ...rest } = p;
    const conf: Record<string, unknown> = { ...rest, name: net.name, cniVersion: "1.0.0" };
    if (capabilities?.portMappings) conf.runtimeConfig = { portMappings: [{ hostPort, containerPort: 80, protocol: "tcp" }] };
    if (capabilities?.bandwidth) conf.runtimeConfig = { bandwidth: { ingressRate: 1e9, ingressBurst: 1e8, egressRate: 1e9, egressBurst: 1e8 } };
    if (prev !== undefined) conf.prevResult = prev;
    const r = sh([join(dir, p.type)], {
      stdin: JSON.stringify(conf),
      env: { CNI_COMMAND: verb, CNI_CONTAINERID: cid, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: "eth0", CNI_PATH: dir },
    });
    if (r.code !== 0) throw new Error(`${join(dir, p.type)} ${verb} failed: ${r.out} ${r.err}`);
    per.push(r.ms);
    if (verb === "ADD") prev = JSON.parse(r.out);
  }
  if (verb === "DEL") per.reverse();
  return { ms: per.reduce((a, b) => a + b, 0), per, result: prev };
}

function measure(job: CniJob): CniCell[] {
  mkdirSync(job.work, { recursive: true });
  // the macvlan parent: a veth pair inside this (sandbox host) namespace
  must(["ip", "link", "add", "mvparent0", "type", "veth", "peer", "name", "mvparent1"]);
  must(["ip", "link", "set", "mvparent0", "up"]);
  must(["ip", "link", "set", "mvparent1", "up"]);
  const cells: CniCell[] = [];
  let idx = 0;
  const made: string[] = [];
  const newNs = () => {
    const n = uniqueName("k");
    must(["ip", "netns", "add", n]);
    made.push(n);
    return n;
  };
  const delNs = (n: string) => {
    sh(["ip", "netns", "del", n]);
    made.splice(made.indexOf(n), 1);
  };
  try {
    for (const cfg of CNI_CONFIGS) {
      if (job.configs && !job.configs.includes(cfg.id)) continue;
      for (const impl of ["reference", "berth"] as Impl[]) {
        const i = idx++;
        const net: Net = { name: `bench-${cfg.id}-${impl}-${i}`, plugins: cfg.plugins(job.work, i) };
        const dir = job.dirs[impl];
        const attached: { ns: string; cid: string; port: number; res: unknown }[] = [];
        let port = 20000;
        const scales = cfg.scaled ? [...job.scales].sort((a, b) => a - b) : [0];
        for (const scale of scales) {
          const series: number[] = [];
          while (attached.length < scale) {
            const ns = newNs();
            const cid = `bg${attached.length}`;
            const r = runList(dir, "ADD", net, ns, cid, port);
            series.push(r.ms);
            attached.push({ ns, cid, port: port++, res: r.result });
          }
          const cell: CniCell = { impl, config: cfg.id, attached: scale, add: [], del: [], series };
          if (net.plugins.length > 1) cell.perPlugin = Object.fromEntries(net.plugins.map((p) => [p.type, { add: [], del: [] }]));
          for (let p = 0; p < job.probes + 1; p++) {
            const ns = newNs();
            const cid = `probe${scale}x${p}`;
            const a = runList(dir, "ADD", net, ns, cid, port++);
            const d = runList(dir, "DEL", net, ns, cid, port - 1, a.result);
            delNs(ns);
            if (p === 0) continue; // warm-up
            cell.add.push(a.ms);
            cell.del.push(d.ms);
            net.plugins.forEach((pl, k) => {
              cell.perPlugin?.[pl.type]?.add.push(a.per[k]!);
              cell.perPlugin?.[pl.type]?.del.push(d.per[k]!);
            });
          }
          cells.push(cell);
          const m = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]?.toFixed(1);
          console.error(`[cni] ${impl.padEnd(9)} ${cfg.id.padEnd(8)} ${String(scale).padStart(4)} attached: ADD p50 ${m(cell.add)} ms, DEL p50 ${m(cell.del)} ms`);
        }
        for (const a of attached.reverse()) {
          runList(dir, "DEL", net, a.ns, a.cid, a.port, a.res);
          delNs(a.ns);
        }
      }
    }
  } finally {
    for (const n of [...made]) delNs(n);
    sh(["ip", "link", "del", "mvparent0"]);
  }
  return cells;
}

if (import.meta.main) {
  const job = JSON.parse(process.argv[2] ?? "{}") as CniJob;
  const floor: number[] = [];
  for (let i = 0; i < 20; i++) floor.push(sh(["/bin/true"]).ms);
  console.log(JSON.stringify({ cells: measure(job), floor }));
}
