/**
 * Differential tests: the same configurations run through the reference plugins
 * (/usr/lib/cni, containernetworking-plugins) and through Berth's, each in its own
 * sandbox. The results (interfaces by name, ips, routes, gateway), the kernel
 * state (addresses, routes, link kinds / MTU in the containers and on the host)
 * and connectivity must be the same; after DEL both leave the same state.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  addExternalClient,
  assertRootUntouched,
  createSandbox,
  RUN_PREFIX,
  reachable,
  type Sandbox,
  startEchoServer,
  tcpRoundTrip,
} from "../harness/sandbox.ts";
import { addrState, cni, type Impl, linkState, normaliseResult, ok, REF_DIR, routeState } from "./cni-util.ts";
import { seenFrom } from "./util.ts";

assertRootUntouched();
// each test runs many plugin processes; a loaded machine makes them slow
setDefaultTimeout(120_000);

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Scenario {
  name: string;
  /** One plugin config of the "conflist", with a fresh dataDir. */
  conf(dataDir: string): Record<string, unknown>;
  /** Extra sandbox set-up before the plugins run (e.g. a macvlan master and its LAN). */
  setup?(sb: Sandbox): void;
  /** Probes run from container 1: "ping <ip>" or "masq <port>". */
  probes: string[];
  ifname?: string;
}

const SCENARIOS: Scenario[] = [
  {
    name: "bridge + host-local, isGateway, ipMasq",
    conf: (dataDir) => ({
      cniVersion: "1.0.0",
      name: "dnet",
      type: "bridge",
      bridge: "cni0",
      isGateway: true,
      ipMasq: true,
      ipam: { type: "host-local", dataDir, subnet: "10.66.0.0/24", routes: [{ dst: "0.0.0.0/0" }] },
    }),
    probes: ["ping 10.66.0.3", "ping 10.66.0.1", "masq 7501"],
  },
  {
    name: "bridge + host-local, isDefaultGateway, mtu, hairpin, ranges",
    conf: (dataDir) => ({
      cniVersion: "1.0.0",
      name: "dnet2",
      type: "bridge",
      bridge: "br-d2",
      isDefaultGateway: true,
      hairpinMode: true,
      mtu: 1400,
      ipam: { type: "host-local", dataDir, ranges: [[{ subnet: "10.67.0.0/24", rangeStart: "10.67.0.50", rangeEnd: "10.67.0.60", gateway: "10.67.0.1" }]] },
    }),
    probes: ["ping 10.67.0.51", "ping 10.67.0.1"],
  },
  {
    // IPv6 ranges of host-local (a v4 and a v6 range set, rangeStart in v6), gateways on the bridge
    name: "bridge + host-local, dual-stack ranges, isGateway",
    conf: (dataDir) => ({
      cniVersion: "1.0.0",
      name: "dnet6",
      type: "bridge",
      bridge: "br-d6",
      isGateway: true,
      ipam: {
        type: "host-local",
        dataDir,
        ranges: [[{ subnet: "10.71.0.0/24" }], [{ subnet: "fd71::/64", rangeStart: "fd71::100", rangeEnd: "fd71::1ff" }]],
        routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
      },
    }),
    probes: ["ping 10.71.0.3", "ping fd71::101", "ping fd71::1"],
  },
  {
    name: "ptp + host-local, ipMasq",
    conf: (dataDir) => ({
      cniVersion: "1.0.0",
      name: "dptp",
      type: "ptp",
      ipMasq: true,
      mtu: 1450,
      ipam: { type: "host-local", dataDir, subnet: "10.68.0.0/24", routes: [{ dst: "0.0.0.0/0" }] },
    }),
    probes: ["ping 10.68.0.3", "ping 10.68.0.1", "masq 7502"],
  },
  {
    name: "macvlan + host-local",
    setup(sb) {
      const lan = sb.netns("lan");
      sh(["ip", "-n", sb.host, "link", "add", "mv0", "type", "veth", "peer", "name", "eth0", "netns", lan]);
      sh(["ip", "-n", sb.host, "link", "set", "mv0", "up"]);
      sh(["ip", "-n", lan, "addr", "add", "10.69.0.1/24", "dev", "eth0"]);
      sh(["ip", "-n", lan, "link", "set", "eth0", "up"]);
    },
    conf: (dataDir) => ({
      cniVersion: "1.0.0",
      name: "dmv",
      type: "macvlan",
      master: "mv0",
      mode: "bridge",
      mtu: 1400,
      ipam: { type: "host-local", dataDir, subnet: "10.69.0.0/24", routes: [{ dst: "10.70.0.0/16" }] },
    }),
    probes: ["ping 10.69.0.3", "ping 10.69.0.1"],
  },
  {
    name: "loopback",
    conf: () => ({ cniVersion: "1.0.0", name: "dlo", type: "loopback" }),
    probes: ["ping 127.0.0.1"],
    ifname: "lo",
  },
];

function sh(argv: string[]): void {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
}

interface Outcome {
  results: unknown[];
  containers: string[][][];
  host: string[][];
  probes: Record<string, string | boolean | undefined>;
  afterDel: { containers: string[][][]; host: string[][] };
  delTwice: number[];
}

async function runScenario(s: Scenario, impl: Impl): Promise<Outcome> {
  const sb = createSandbox(impl === "ref" ? "dr" : "db");
  const dataDir = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}diff-`));
  dirs.push(dataDir);
  try {
    s.setup?.(sb);
    const ext = s.probes.some((p) => p.startsWith("masq")) ? addExternalClient(sb, "203.0.113.1/24", "203.0.113.2/24") : undefined;
    const conf = s.conf(dataDir);
    const ifname = s.ifname ?? "eth0";
    const cs = [sb.netns("c"), sb.netns("c")];
    const base = { impl, plugin: String(conf.type), host: sb.host, ifname, conf };
    const results = cs.map((c) => normaliseResult(ok(cni({ ...base, command: "ADD", containerId: `id-${c.slice(-3)}`, netns: c }), `${impl} ADD`).json));
    const state = (ns: string) => [linkState(ns), addrState(ns), routeState(ns)];
    const probes: Outcome["probes"] = {};
    const c0 = cs[0] ?? "";
    for (const p of s.probes) {
      const [kind, arg = ""] = p.split(" ");
      // every ping probe is expected to answer: retried for up to 5 s (an IPv6 gateway on a
      // bridge the reference plugin made may still be in DAD under load)
      if (kind === "ping") probes[p] = reachable(c0, arg, 5000);
      if (kind === "masq" && ext) {
        const srv = await startEchoServer(sb, ext.ns, ext.clientIP, Number(arg));
        probes[p] = seenFrom(tcpRoundTrip(c0, ext.clientIP, Number(arg))) === ext.hostIP ? "from host address" : "not masqueraded";
        await srv.stop();
      }
    }
    const out: Outcome = {
      results,
      containers: cs.map(state),
      host: state(sb.host),
      probes,
      afterDel: { containers: [], host: [] },
      delTwice: [],
    };
    for (const c of cs) {
      for (let i = 0; i < 2; i++) out.delTwice.push(cni({ ...base, command: "DEL", containerId: `id-${c.slice(-3)}`, netns: c }).code);
    }
    out.afterDel = { containers: cs.map(state), host: state(sb.host) };
    return out;
  } finally {
    await sb.cleanup();
  }
}

describe.each(SCENARIOS)("$name", (s) => {
  test("reference and Berth agree on results, kernel state and connectivity", async () => {
    const ref = await runScenario(s, "ref");
    const berth = await runScenario(s, "berth");
    if (process.env.DIFF_DUMP) console.log(JSON.stringify({ ref, berth }, null, 1));
    // the reference run itself must be what we think it is
    for (const [p, v] of Object.entries(ref.probes)) expect([p, v]).toEqual([p, p.startsWith("masq") ? "from host address" : true]);
    expect(berth.results).toEqual(ref.results);
    expect(berth.containers).toEqual(ref.containers);
    expect(berth.host).toEqual(ref.host);
    expect(berth.probes).toEqual(ref.probes);
    expect(berth.delTwice).toEqual(ref.delTwice);
    expect(berth.afterDel).toEqual(ref.afterDel);
  });
});

test("the reference plugins are installed", () => {
  for (const p of ["bridge", "ptp", "macvlan", "host-local", "loopback"]) expect(Bun.file(join(REF_DIR, p)).size).toBeGreaterThan(0);
});
