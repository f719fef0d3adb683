/**
 * CNI ADD/DEL latency, Berth's plugins (dist/cni) side by side with the
 * reference plugins (/usr/lib/cni, Debian containernetworking-plugins), in one
 * run on one machine, with 0/100/500 containers already attached.
 *
 *   bun bench/cni-latency.ts [--scales 0,100,500] [--probes 15] [--out bench/results]
 *
 * Everything happens inside a sandbox host namespace (`bcni<pid>-host`); the
 * plugins run from a process inside it (as a runtime would), with per-run
 * host-local dataDirs under a temp dir. Writes a markdown report with p50/p90
 * and Berth/reference ratios. Not part of the test suite (a smoke run of it is).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const ROOT = join(import.meta.dir, "..");
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    scales: { type: "string", default: "0,100,500" },
    probes: { type: "string", default: "15" },
    out: { type: "string", default: join(ROOT, "bench", "results") },
    inner: { type: "string" },
  },
});

type Impl = "reference" | "berth";
const BIN: Record<Impl, string> = { reference: "/usr/lib/cni", berth: join(ROOT, "dist", "cni") };
const TAG = `bcni${process.pid.toString(36)}`;

function sh(argv: string[], stdin?: string, env?: Record<string, string>): { code: number; out: string; err: string; ms: number } {
  const t0 = performance.now();
  const r = Bun.spawnSync(argv, {
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString(), ms: performance.now() - t0 };
}

interface PluginConf {
  type: string;
  [k: string]: unknown;
}

function confs(impl: Impl, work: string, i: number): Record<string, { name: string; plugins: PluginConf[] }> {
  const ipam = (subnet: string) => ({ type: "host-local", ranges: [[{ subnet }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: join(work, "ipam") });
  return {
    "bridge+host-local ipMasq": {
      name: `b${impl[0]}${i}masq`,
      plugins: [{ type: "bridge", bridge: `bm${impl[0]}${i}`, isGateway: true, ipMasq: true, ipam: ipam(`10.${100 + i}.0.0/20`) }],
    },
    "chain bridge→portmap→bandwidth": {
      name: `b${impl[0]}${i}chain`,
      plugins: [
        { type: "bridge", bridge: `bc${impl[0]}${i}`, isGateway: true, ipMasq: true, ipam: ipam(`10.${110 + i}.0.0/20`) },
        { type: "portmap", capabilities: { portMappings: true }, snat: true },
        { type: "bandwidth", capabilities: { bandwidth: true } },
      ],
    },
  };
}

/** One ADD (or DEL) through a chain as libcni would: prevResult forward, reverse on DEL. Returns ms. */
function runChain(impl: Impl, verb: "ADD" | "DEL", net: { name: string; plugins: PluginConf[] }, ns: string, cid: string, hostPort: number, cached?: unknown): { ms: number; result: unknown } {
  let prev: unknown = verb === "DEL" ? cached : undefined;
  const plugins = verb === "ADD" ? net.plugins : [...net.plugins].reverse();
  let total = 0;
  for (const p of plugins) {
    const { capabilities, ...rest } = p as PluginConf & { capabilities?: Record<string, boolean> };
    const conf: Record<string, unknown> = { ...rest, name: net.name, cniVersion: "1.0.0" };
    if (capabilities?.portMappings) conf.runtimeConfig = { portMappings: [{ hostPort, containerPort: 80, protocol: "tcp" }] };
    if (capabilities?.bandwidth) conf.runtimeConfig = { bandwidth: { ingressRate: 1e9, ingressBurst: 1e8, egressRate: 1e9, egressBurst: 1e8 } };
    if (prev !== undefined) conf.prevResult = prev;
    const r = sh([join(BIN[impl], p.type)], JSON.stringify(conf), {
      CNI_COMMAND: verb,
      CNI_CONTAINERID: cid,
      CNI_NETNS: `/run/netns/${ns}`,
      CNI_IFNAME: "eth0",
      CNI_PATH: BIN[impl],
    });
    total += r.ms;
    if (r.code !== 0) throw new Error(`${impl} ${p.type} ${verb} failed: ${r.out} ${r.err}`);
    if (verb === "ADD") prev = JSON.parse(r.out);
  }
  return { ms: total, result: prev };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

/** The measuring part: runs inside the sandbox host namespace. */
function inner(work: string): void {
  const scales = values.scales!.split(",").map(Number);
  const probes = Number(values.probes);
  const rows: { impl: Impl; config: string; attached: number; add: number[]; del: number[] }[] = [];
  let nsCount = 0;
  const newNs = () => {
    const n = `${TAG}-c${nsCount++}`;
    sh(["ip", "netns", "add", n]);
    return n;
  };
  let ci = 0;
  for (const [configName] of Object.entries(confs("berth", work, 0))) {
    for (const impl of ["reference", "berth"] as Impl[]) {
      const net = confs(impl, work, ci++)[configName]!;
      const attached: { ns: string; cid: string; res: unknown }[] = [];
      let port = 20000;
      for (const scale of scales) {
        while (attached.length < scale) {
          const ns = newNs();
          const cid = `bg${attached.length}`;
          attached.push({ ns, cid, res: runChain(impl, "ADD", net, ns, cid, port++).result });
        }
        const add: number[] = [];
        const del: number[] = [];
        for (let p = 0; p < probes + 2; p++) {
          const ns = newNs();
          const cid = `probe${scale}x${p}`;
          const a = runChain(impl, "ADD", net, ns, cid, port++);
          const d = runChain(impl, "DEL", net, ns, cid, port - 1, a.result);
          sh(["ip", "netns", "del", ns]);
          if (p >= 2) {
            add.push(a.ms);
            del.push(d.ms);
          }
        }
        rows.push({ impl, config: configName, attached: scale, add, del });
        console.error(`${impl.padEnd(9)} ${configName.padEnd(32)} ${String(scale).padStart(4)} attached: ADD p50 ${pct(add, 50).toFixed(1)} ms, DEL p50 ${pct(del, 50).toFixed(1)} ms`);
      }
      for (const a of attached) {
        runChain(impl, "DEL", net, a.ns, a.cid, 0, a.res);
        sh(["ip", "netns", "del", a.ns]);
      }
    }
  }
  writeFileSync(join(work, "rows.json"), JSON.stringify(rows));
}

function report(rows: { impl: Impl; config: string; attached: number; add: number[]; del: number[] }[]): string {
  const lines = [
    "# CNI ADD/DEL latency: Berth vs reference plugins (one run, same machine)",
    "",
    `Date: ${new Date().toISOString()}; probes per cell: ${values.probes}; load average at start: ${sh(["cat", "/proc/loadavg"]).out.trim()}`,
    "",
    "| config | attached | ref ADD p50 [p90] ms | Berth ADD p50 [p90] ms | ADD ratio | ref DEL p50 ms | Berth DEL p50 ms | DEL ratio |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows.filter((x) => x.impl === "reference")) {
    const b = rows.find((x) => x.impl === "berth" && x.config === r.config && x.attached === r.attached);
    if (!b) continue;
    const f = (n: number) => n.toFixed(1);
    lines.push(
      `| ${r.config} | ${r.attached} | ${f(pct(r.add, 50))} [${f(pct(r.add, 90))}] | ${f(pct(b.add, 50))} [${f(pct(b.add, 90))}] | ${(pct(b.add, 50) / pct(r.add, 50)).toFixed(2)}× | ${f(pct(r.del, 50))} | ${f(pct(b.del, 50))} | ${(pct(b.del, 50) / pct(r.del, 50)).toFixed(2)}× |`,
    );
  }
  return `${lines.join("\n")}\n`;
}

async function main(): Promise<number> {
  if (values.inner) {
    inner(values.inner);
    return 0;
  }
  const build = sh(["bash", join(ROOT, "scripts", "build.sh")]);
  if (build.code !== 0) throw new Error(`build failed: ${build.err}`);
  const work = mkdtempSync(join(tmpdir(), `${TAG}-`));
  const host = `${TAG}-host`;
  try {
    sh(["ip", "netns", "add", host]);
    sh(["ip", "-n", host, "link", "set", "lo", "up"]);
    const r = Bun.spawnSync(["ip", "netns", "exec", host, process.execPath, import.meta.path, "--inner", work, "--scales", values.scales!, "--probes", values.probes!], {
      stdout: "inherit",
      stderr: "inherit",
    });
    if (r.exitCode !== 0) throw new Error("measurement failed");
    const md = report(JSON.parse(await Bun.file(join(work, "rows.json")).text()));
    mkdirSync(values.out!, { recursive: true });
    writeFileSync(join(values.out!, "cni-latency.md"), md);
    console.log(md);
    return 0;
  } finally {
    for (const n of (sh(["ip", "netns", "list"]).out.match(new RegExp(`${TAG}-\\S+`, "g")) ?? [])) sh(["ip", "netns", "del", n]);
    rmSync(work, { recursive: true, force: true });
  }
}

main().then((c) => process.exit(c), (e) => {
  console.error(String(e));
  process.exit(1);
});
