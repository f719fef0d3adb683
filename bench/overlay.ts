/**
 * Overlay benchmark: throughput of an overlay (VXLAN between two hosts) against a
 * same-host bridge and the loopback, as ratios, and how long the other hosts'
 * agents take to program (and to remove) the forwarding of 1 / 10 / 100 new
 * endpoints after they appear in etcd.
 *
 *   bun bench/overlay.ts [--seconds 5] [--reps 3] [--out bench/results/overlay.md]
 *
 * Runs in the test topology (test/harness/multihost.ts: sandbox namespaces, one
 * etcd on the underlay, a real berthd per host); nothing touches the machine's
 * own network. Convergence: a helper process on the underlay writes N endpoint
 * records of host h2 (one transaction each, concurrently) and prints when all committed; this
 * process polls h1's `bridge fdb` until all N MACs point at h2 (20 ms polls).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { IPNet, MAC } from "../src/net/index.ts";
import { openEtcdStore } from "../src/store/etcd/store.ts";
import { newId } from "../src/store/ids.ts";
import { createMultihost, type TestHost } from "../test/harness/multihost.ts";
import { cleanStale, iperf3Bps } from "../test/harness/sandbox.ts";
import { median } from "./lib/stats.ts";

const SELF = import.meta.path;

/** Helper mode (inside the underlay namespace): inject or remove N endpoint records of host h2. */
async function inject(url: string, netId: string, n: number, mode: "add" | "del"): Promise<void> {
  const store = await openEtcdStore({ url, host: "h2" });
  const net = await store.networks.get(netId);
  if (!net) throw new Error(`no network ${netId}`);
  const base = net.ipam.pools[0]!.subnet;
  // one transaction per endpoint, all at once: like N containers starting on h2 together
  if (mode === "add") {
    await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const ip = base.nth(100 + i); // .100 onwards: clear of the real containers
        return store.endpoints.create({
          id: newId(),
          networkId: netId,
          containerId: `bench-${i}`,
          ifname: "eth0",
          mac: MAC.fromIPv4(ip),
          addresses: [IPNet.of(ip, base.length)],
          gateways: [],
          ports: [],
          aliases: [],
          created: new Date().toISOString(),
          driverState: {},
          host: "h2",
        });
      }),
    );
  } else {
    const mine = (await store.endpoints.listByNetwork(netId)).filter((ep) => ep.containerId.startsWith("bench-"));
    await Promise.all(mine.map((ep) => store.endpoints.delete(ep.id)));
  }
  // the last commit happened when these returned
  console.log(JSON.stringify({ committed: Date.now() }));
  await store.close();
}

function fdbMacs(h: TestHost, netId: string): Map<string, string> {
  const r = Bun.spawnSync(["ip", "netns", "exec", h.sb.host, "bridge", "-j", "fdb", "show", "dev", `vx${netId.slice(0, 12)}`], { stdout: "pipe" });
  const out = new Map<string, string>();
  for (const e of JSON.parse(r.stdout.toString() || "[]") as { mac: string; dst?: string }[]) if (e.dst) out.set(e.mac, e.dst);
  return out;
}

async function converge(underlayNs: string, url: string, netId: string, h1: TestHost, n: number, mode: "add" | "del"): Promise<number> {
  const r = Bun.spawnSync(["nsenter", `--net=/run/netns/${underlayNs}`, "--", process.execPath, SELF, "inject", url, netId, String(n), mode], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`inject failed: ${r.stderr.toString()}`);
  const { committed } = JSON.parse(r.stdout.toString().trim()) as { committed: number };
  const done = (): boolean => {
    const benchMacs = [...fdbMacs(h1, netId).entries()].filter(([, dst]) => dst === "192.168.50.2").length;
    return mode === "add" ? benchMacs >= n + 1 : benchMacs <= 1; // +1: the real container on h2
  };
  for (;;) {
    if (done()) return Date.now() - committed;
    if (Date.now() - committed > 30_000) throw new Error(`no convergence for ${n} endpoints (${mode})`);
    await Bun.sleep(20);
  }
}

function startIperf(ns: string, port: number): { stop(): void } {
  const p = Bun.spawn(["nsenter", `--net=/run/netns/${ns}`, "--", "iperf3", "-s", "-p", String(port)], { stdout: "ignore", stderr: "ignore" });
  return { stop: () => p.kill("SIGKILL") };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { seconds: { type: "string" }, reps: { type: "string" }, out: { type: "string" } } });
  const seconds = Number(values.seconds ?? 5);
  const reps = Number(values.reps ?? 3);
  const out = values.out ?? join(import.meta.dir, "results", "overlay.md");
  cleanStale();
  const m = await createMultihost(2, { hostTtl: 5 });
  const [h1, h2] = m.hosts as [TestHost, TestHost];
  const cli = (h: TestHost, ...a: string[]) => {
    const r = h.daemon.cli(...a);
    if (r.code !== 0) throw new Error(`berth ${a.join(" ")}: ${r.err}`);
    return r.out;
  };
  const nsOf = (h: TestHost, name: string) => (JSON.parse(cli(h, "inspect", name))[0] as { NetnsName: string }).NetnsName;
  const ipOf = (h: TestHost, name: string) =>
    (JSON.parse(cli(h, "inspect", name))[0] as { Networks: { Ifname: string; Addresses: string[] }[] }).Networks.find((x) => x.Ifname === "eth0")!.Addresses[0]!.split("/")[0]!;
  try {
    cli(h1, "network", "create", "-d", "overlay", "--subnet", "10.90.0.0/24", "ovbench");
    cli(h1, "network", "create", "--subnet", "10.91.0.0/24", "brbench");
    const netId = (JSON.parse(cli(h1, "network", "inspect", "ovbench"))[0] as { Id: string }).Id;
    for (const [h, n, net] of [[h1, "o1", "ovbench"], [h2, "o2", "ovbench"], [h1, "b1", "brbench"], [h1, "b2", "brbench"]] as const) {
      cli(h, "run", "-d", "--network", net, "--name", n, "--", "sleep", "3600");
    }
    const [o1, o2, b1, b2] = [nsOf(h1, "o1"), nsOf(h2, "o2"), nsOf(h1, "b1"), nsOf(h1, "b2")] as [string, string, string, string];
    const paths: [string, string, string, string][] = [
      ["overlay (VXLAN, h1 -> h2)", o1, o2, ipOf(h2, "o2")],
      ["bridge (same host)", b1, b2, ipOf(h1, "b2")],
      ["loopback (one namespace)", o1, o1, "127.0.0.1"],
    ];
    const bps = new Map<string, number>();
    for (const [label, from, to, addr] of paths) {
      const srv = startIperf(to, 5201);
      const xs: number[] = [];
      try {
        for (let i = 0; i < reps; i++) xs.push(await iperf3Bps(from, addr, 5201, { seconds }));
      } finally {
        srv.stop();
      }
      bps.set(label, median(xs));
      console.error(`${label}: ${(median(xs) / 1e9).toFixed(2)} Gbit/s`);
    }
    const conv: [number, number, number][] = [];
    for (const n of [1, 10, 100]) {
      const add: number[] = [];
      const del: number[] = [];
      for (let i = 0; i < reps; i++) {
        add.push(await converge(m.underlay.host, m.etcd.url, netId, h1, n, "add"));
        del.push(await converge(m.underlay.host, m.etcd.url, netId, h1, n, "del"));
      }
      conv.push([n, median(add), median(del)]);
      console.error(`convergence ${n}: add ${median(add)} ms, del ${median(del)} ms`);
    }
    const lo = bps.get("loopback (one namespace)") ?? 1;
    const br = bps.get("bridge (same host)") ?? 1;
    const lines = [
      "# Overlay benchmark",
      "",
      `Measured ${new Date().toISOString()} by \`bun bench/overlay.ts --seconds ${seconds} --reps ${reps}\` (medians of ${reps} runs;`,
      "2 hosts as namespaces on one underlay bridge, real berthd per host, etcd on the underlay; TCP, iperf3 single stream).",
      "All paths share this machine's CPUs, so only the ratios mean something.",
      "",
      "| path | Gbit/s | vs bridge | vs loopback |",
      "|---|---:|---:|---:|",
      ...[...bps].map(([k, v]) => `| ${k} | ${(v / 1e9).toFixed(2)} | ${(v / br).toFixed(2)} | ${(v / lo).toFixed(2)} |`),
      "",
      "Convergence: from the etcd commit of N new endpoint records of host h2 to all N MACs in h1's VXLAN FDB",
      "(agent: etcd watch + level-triggered pass), and the same for their removal.",
      "",
      "| endpoints | add (ms) | remove (ms) |",
      "|---:|---:|---:|",
      ...conv.map(([n, a, d]) => `| ${n} | ${a} | ${d} |`),
      "",
    ];
    writeFileSync(out, lines.join("\n"));
    console.log(lines.join("\n"));
  } finally {
    await m.cleanup();
  }
}

const [, , verb, url = "", netId = "", n = "1", mode = "add"] = process.argv;
(verb === "inject" ? inject(url, netId, Number(n), mode === "del" ? "del" : "add") : main()).then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
