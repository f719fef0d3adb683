/**
 * Published ports at 10/1000/10000 mappings: install time, add/remove one, and
 * the latency of a new TCP connection to the LAST mapped port (and the first,
 * as a control), from an "external" namespace through the host's address.
 *
 * Berth: its controller (`setEndpointPorts`, what berthd runs for Docker's
 * port programming) renders its nftables table with the port map and applies it.
 * Peer: Docker-style linear iptables DNAT rules (one rule per port, what
 * docker.io, netavark's iptables driver and the CNI portmap plugin install),
 * loaded with iptables-restore (nf_tables backend) into an identical topology.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTestBerth } from "../../test/harness/berth.ts";
import { addExternalClient, createSandbox, type Sandbox } from "../../test/harness/sandbox.ts";
import type { PortMapping } from "../../src/net/index.ts";
import { haveCommand, ipn, must, type ConnectStats, tcpConnect, tcpServer } from "../lib/proc.ts";
import { fmt, median, p50p99 } from "../lib/stats.ts";
import { type BenchOptions, emptySection, type Scenario, type Section } from "../lib/types.ts";

const BASE_PORT = 10000;

interface Cell {
  impl: "berth" | "iptables";
  n: number;
  install: number[];
  add: number[];
  remove: number[];
  last: ConnectStats[];
  first: ConnectStats[];
}

const mappings = (n: number, first = BASE_PORT): PortMapping[] =>
  Array.from({ length: n }, (_, i) => ({ hostIP: undefined, hostPort: first + i, containerPort: 80, protocol: "tcp" as const }));

async function timed(f: () => unknown): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

function reps(o: BenchOptions) {
  return { install: o.quick ? 1 : 3, inc: o.quick ? 2 : 10, conns: o.quick ? 300 : 3000, connReps: o.quick ? 1 : 3 };
}

async function measureBerth(o: BenchOptions): Promise<Cell[]> {
  const b = await createTestBerth("bpt");
  try {
    const ext = addExternalClient(b.sb);
    await b.ctl.createNetwork({ name: "ports", ipam: { config: [{ subnet: "10.202.0.0/24" }] } });
    const ns1 = b.containerNs("p");
    const ns2 = b.containerNs("q");
    const ep1 = await b.ctl.connect({ network: "ports", containerId: "a".repeat(64), netns: ns1 });
    const ep2 = await b.ctl.connect({ network: "ports", containerId: "b".repeat(64), netns: ns2 });
    b.sb.track(await tcpServer(ns1, "0.0.0.0", 80));
    const r = reps(o);
    const cells: Cell[] = [];
    for (const n of o.portCounts) {
      const cell: Cell = { impl: "berth", n, install: [], add: [], remove: [], last: [], first: [] };
      for (let i = 0; i < r.install; i++) {
        await b.ctl.setEndpointPorts("ports", ep1.id, []);
        cell.install.push(await timed(() => b.ctl.setEndpointPorts("ports", ep1.id, mappings(n))));
      }
      for (let i = 0; i < r.inc; i++) {
        cell.add.push(await timed(() => b.ctl.setEndpointPorts("ports", ep2.id, mappings(1, 9000))));
        cell.remove.push(await timed(() => b.ctl.setEndpointPorts("ports", ep2.id, [])));
      }
      for (let i = 0; i < r.connReps; i++) {
        cell.last.push(tcpConnect(ext.ns, ext.hostIP, BASE_PORT + n - 1, r.conns));
        cell.first.push(tcpConnect(ext.ns, ext.hostIP, BASE_PORT, r.conns));
      }
      cells.push(cell);
      o.log(`ports: berth ${n}: install ${fmt(median(cell.install))} ms, connect last p50 ${fmt(median(cell.last.map((c) => c.p50)))} µs`);
    }
    await b.ctl.setEndpointPorts("ports", ep1.id, []);
    return cells;
  } finally {
    await b.close();
  }
}

function iptablesRules(n: number, extra = 0): string {
  const lines = ["*nat", ":BENCH-DNAT - [0:0]", "-A PREROUTING -m addrtype --dst-type LOCAL -j BENCH-DNAT"];
  for (let p = BASE_PORT; p < BASE_PORT + n + extra; p++) lines.push(`-A BENCH-DNAT -p tcp -m tcp --dport ${p} -j DNAT --to-destination 10.202.0.2:80`);
  return `${lines.join("\n")}\nCOMMIT\n`;
}

/** The same topology as Berth's (bridge, veth container, external client), built with ip. */
function peerTopology(sb: Sandbox): { ext: { ns: string; hostIP: string }; ctr: string } {
  const ext = addExternalClient(sb);
  const ctr = sb.netns("p");
  const h = sb.host;
  ipn(h, "link", "add", "benchbr0", "type", "bridge");
  ipn(h, "addr", "add", "10.202.0.1/24", "dev", "benchbr0");
  ipn(h, "link", "set", "benchbr0", "up");
  ipn(h, "link", "add", "vbench0", "type", "veth", "peer", "name", "eth0", "netns", ctr);
  ipn(h, "link", "set", "vbench0", "master", "benchbr0", "up");
  ipn(ctr, "addr", "add", "10.202.0.2/24", "dev", "eth0");
  ipn(ctr, "link", "set", "eth0", "up");
  ipn(ctr, "route", "add", "default", "via", "10.202.0.1");
  must(["ip", "netns", "exec", h, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  return { ext, ctr };
}

async function measureIptables(o: BenchOptions): Promise<Cell[]> {
  const sb = createSandbox("bpi");
  try {
    const { ext, ctr } = peerTopology(sb);
    sb.track(await tcpServer(ctr, "0.0.0.0", 80));
    const inHost = (argv: string[], stdin?: string) => must(["ip", "netns", "exec", sb.host, ...argv], stdin === undefined ? {} : { stdin });
    const r = reps(o);
    const cells: Cell[] = [];
    for (const n of o.portCounts) {
      const cell: Cell = { impl: "iptables", n, install: [], add: [], remove: [], last: [], first: [] };
      const file = join(sb.stateDir, `rules-${n}`);
      writeFileSync(file, iptablesRules(n));
      for (let i = 0; i < r.install; i++) {
        inHost(["iptables", "-t", "nat", "-F"]);
        inHost(["iptables", "-t", "nat", "-X"]);
        cell.install.push(inHost(["iptables-restore", file]).ms);
      }
      const rule = ["BENCH-DNAT", "-p", "tcp", "-m", "tcp", "--dport", "9000", "-j", "DNAT", "--to-destination", "10.202.0.2:80"];
      for (let i = 0; i < r.inc; i++) {
        cell.add.push(inHost(["iptables", "-t", "nat", "-A", ...rule]).ms);
        cell.remove.push(inHost(["iptables", "-t", "nat", "-D", ...rule]).ms);
      }
      for (let i = 0; i < r.connReps; i++) {
        cell.last.push(tcpConnect(ext.ns, ext.hostIP, BASE_PORT + n - 1, r.conns));
        cell.first.push(tcpConnect(ext.ns, ext.hostIP, BASE_PORT, r.conns));
      }
      cells.push(cell);
      o.log(`ports: iptables ${n}: install ${fmt(median(cell.install))} ms, connect last p50 ${fmt(median(cell.last.map((c) => c.p50)))} µs`);
    }
    return cells;
  } finally {
    await sb.cleanup();
  }
}

export const portsScenario: Scenario = {
  id: "ports",
  title: "Published ports at scale: Berth's nft map vs Docker-style iptables rules",
  unavailable: () => (haveCommand("gcc") ? (haveCommand("iptables-restore") ? undefined : "iptables missing") : "gcc missing (builds bench/tools/tcpbench.c)"),
  async run(o: BenchOptions): Promise<Section> {
    const r = reps(o);
    const sec = emptySection(
      "ports",
      this.title,
      [
        `N host ports (${BASE_PORT}…) all map to one container's :80 (an accept-and-close server). install = load all N into an`,
        `empty state (${r.install}×); add/remove = one more mapping with N present (${r.inc}×); connect = ${r.connReps}×${r.conns}`,
        "sequential TCP connects (RST close, so each is a new conntrack entry through the nat hook) from an external",
        "namespace to the host address, to the LAST mapped port and to the first. Berth: `Controller.setEndpointPorts`",
        "(store + render + one `nft -f` transaction, what berthd runs for a port change). Peer: one iptables DNAT rule per",
        "port (Docker/netavark/portmap style), `iptables-restore` / `iptables -A|-D` (nf_tables backend).",
      ].join(" "),
    );
    const cells = [...(await measureBerth(o)), ...(await measureIptables(o))];
    const p50 = (cs: ConnectStats[]) => median(cs.map((c) => c.p50));
    sec.tables.push({
      title: "control plane (ms, p50 [p99]) and new-connection latency (µs, p50 of the runs' p50s)",
      head: ["mechanism", "mappings", "install all", "add one", "remove one", "connect LAST port µs", "connects/s LAST", "connect FIRST port µs"],
      rows: cells.map((c) => [c.impl === "berth" ? "Berth (nft map)" : "iptables rules", c.n, p50p99(c.install), p50p99(c.add), p50p99(c.remove), fmt(p50(c.last)), fmt(median(c.last.map((x) => x.rate)), 0), fmt(p50(c.first))]),
    });
    sec.charts.push({
      name: "ports-connect",
      title: "New TCP connection to the last published port",
      unit: "µs (p50)",
      groups: o.portCounts.map((n) => ({
        label: `${n} mappings`,
        bars: cells.filter((c) => c.n === n).map((c) => ({ series: c.impl === "berth" ? "Berth (nft map)" : "iptables rules", value: p50(c.last) })),
      })),
    });
    sec.charts.push({
      name: "ports-control",
      title: "Published ports: install all / add one / remove one",
      unit: "ms (p50)",
      groups: cells.map((c) => ({
        label: `${c.impl === "berth" ? "Berth" : "iptables"} ${c.n}`,
        bars: [
          { series: "install all", value: median(c.install) },
          { series: "add one", value: median(c.add) },
          { series: "remove one", value: median(c.remove) },
        ],
      })),
    });
    const b10 = cells.find((c) => c.impl === "berth" && c.n === 10);
    const bBig = cells.find((c) => c.impl === "berth" && c.n === 10000);
    if (b10 && bBig) {
      const v = p50(bBig.last) / p50(b10.last);
      sec.targets.push({ what: "Berth connect latency to the last port, 10000 ÷ 10 mappings", value: v, limit: 1.2, unit: "×", met: v <= 1.2 });
    }
    sec.notes.push("No conntrack flush between runs (conntrack tool not required): every connect uses a new source port, so each SYN is a new entry through the nat hook anyway.");
    sec.raw = cells;
    return sec;
  },
};

