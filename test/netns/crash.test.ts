/**
 * Crash consistency (issue 9): berthd and the CNI plugins are SIGKILLed at every
 * injected point of their multi-step operations (BERTH_FAULT="point:kill", see
 * src/controller/faults.ts), then recovered the way production recovers:
 *  - berthd: restarted (crash recovery + reconcile at start, src/controller/recovery.ts);
 *  - CNI: the runtime's DEL of the failed attachment, and GC with the live attachments.
 * After every recovery the whole state is checked against the kernel: no address
 * allocated twice or leaked (store allocations = live endpoints = addresses held in the
 * namespaces), no orphan bridge/veth/netns/nft element, nothing left marked in flight, the
 * interrupted operation entirely undone (or, for removals, entirely done), and every
 * surviving container still reachable (ping).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { openSqliteStore } from "../../src/store/sqlite.ts";
import { sourcePoints } from "../harness/fault-points.ts";
import { assertRootUntouched, canPing, createSandbox, ipJson, removeCgroupTree, RUN_PREFIX, type Sandbox, uniqueName } from "../harness/sandbox.ts";
import { leases, pluginArgv } from "./cni-util.ts";
import { type JLink, links } from "./util.ts";

assertRootUntouched();

const ROOT = join(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src", "main.ts");

/** Every crash point in the source: `faults.hit("…")`, `faults.checkpoint("…")`, `crashPoint("…")`. */
const crashPoints = (): string[] => sourcePoints([""], /(?:faults\.(?:hit|checkpoint)|crashPoint)\(\s*"([^"]+)"\s*\)/g);

/** Kills per point, by point (the report at the end of each describe). */
const kills = new Map<string, number>();
const countKill = (p: string, n = 1) => kills.set(p, (kills.get(p) ?? 0) + n);

// ====================================================================================
// berthd
// ====================================================================================

interface Berthd {
  proc: Subprocess;
  logs(): string;
}

interface NetJ {
  Id: string;
  Name: string;
}
interface CtrJ {
  Id: string;
  Name: string;
  NetnsName: string;
  Networks: { NetworkID: string; Addresses: string[] }[];
}

/** Scenarios: which request is interrupted at which points, and what recovery must leave. */
interface Scenario {
  what: string;
  points: string[];
  /** Normal requests before the one that is killed (the daemon is armed, but they do not pass the point). */
  prepare?: () => Promise<void>;
  act: () => Promise<unknown>;
  /** Checked after the restart. */
  expectAfter: (point: string) => Promise<void>;
}

const BERTHD_ROUNDS = Number(process.env.CRASH_ROUNDS ?? 3);

describe("berthd SIGKILLed at every step, restarted, state consistent", () => {
  let sb: Sandbox;
  let stateDir: string;
  let socket: string;
  let netnsPrefix: string;
  let cgroupParent: string;
  let d: Berthd | undefined;
  const survivors: CtrJ[] = [];
  let seq = 0;

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> => {
    const r = await fetch(`http://berthd${path}`, {
      unix: socket,
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } }),
    });
    return { status: r.status, text: await r.text() };
  };
  const must = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const r = await api(method, path, body);
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
    return (r.text ? JSON.parse(r.text) : undefined) as T;
  };

  async function start(fault?: string): Promise<Berthd> {
    if (d) throw new Error("a berthd is still running"); // its socket would answer the readiness probe
    const proc = Bun.spawn(
      [process.execPath, MAIN, "berthd", "--socket", socket, "--state-dir", stateDir, "--host-netns", sb.host, "--netns-prefix", netnsPrefix,
        "--cgroup-parent", cgroupParent, "--default-pool", "10.125.0.0/16:24", "--plugin-socket", "", "--reconcile-interval", "0",
        // the CNI operation log stays inside the sandbox, not the real /run/berth
        "--cni-oplog", join(sb.stateDir, "cni-ops.log")],
      { stdout: "ignore", stderr: "pipe", env: { ...process.env, BERTH_FAULT: fault ?? "" } },
    );
    sb.track(proc);
    let text = "";
    void (async () => {
      const dec = new TextDecoder();
      for await (const c of proc.stderr as ReadableStream<Uint8Array>) text += dec.decode(c, { stream: true });
    })();
    for (let i = 0; ; i++) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`berthd exited at start: ${text}`);
      try {
        if ((await api("GET", "/_ping")).status === 200) break;
      } catch {
        /* not listening yet */
      }
      if (i > 400) throw new Error(`berthd did not start: ${text}`);
      await Bun.sleep(15);
    }
    return { proc, logs: () => text };
  }

  async function stop(): Promise<void> {
    if (!d) return;
    d.proc.kill("SIGTERM");
    await d.proc.exited;
    d = undefined;
  }

  /** Store, kernel and packets agree; nothing in flight; survivors reachable. */
  async function checkConsistent(): Promise<void> {
    const s = openSqliteStore(stateDir);
    try {
      const nets = await s.networks.list();
      const ctrs = await s.containers.list();
      expect(nets.filter((n) => n.pending).map((n) => n.name)).toEqual([]);
      expect(ctrs.filter((c) => c.state === "created" || c.pending).map((c) => c.name)).toEqual([]);
      const ctrIds = new Set(ctrs.map((c) => c.id));
      const wantBridges: string[] = [];
      const wantVeths: string[] = [];
      const held = new Map<string, string[]>(); // netns -> addresses the store says it holds
      const wantIfs = new Map<string, string[]>();
      let ports = 0;
      for (const n of nets) {
        const eps = await s.endpoints.listByNetwork(n.id);
        expect(eps.filter((e) => e.pending).map((e) => e.id)).toEqual([]);
        if (n.driver === "bridge") wantBridges.push((n.driverState as { bridge: string }).bridge);
        // allocations of the network = addresses of its endpoints, key by key
        const allocs = (await s.allocations.list({ networkId: n.id })).map((a) => `${a.containerId}/${a.ifname}=${a.address}`).sort();
        const fromEps = eps.flatMap((e) => e.addresses.map((a) => `${e.containerId}/${e.ifname}=${a.ip}`)).sort();
        expect({ network: n.name, allocs }).toEqual({ network: n.name, allocs: fromEps });
        for (const e of eps) {
          expect(ctrIds.has(e.containerId)).toBe(true);
          const c = ctrs.find((x) => x.id === e.containerId)!;
          if (n.driver === "bridge") wantVeths.push((e.driverState as { hostIfname: string }).hostIfname);
          held.set(c.netns, [...(held.get(c.netns) ?? []), ...e.addresses.map(String)]);
          wantIfs.set(c.netns, [...(wantIfs.get(c.netns) ?? []), e.ifname]);
          ports += e.ports.length;
        }
      }
      // no address twice among all namespaces
      const all = [...held.values()].flat();
      expect(new Set(all).size).toBe(all.length);
      // host namespace: exactly the recorded bridges and veths
      const hl = links(sb.host);
      const kind = (l: JLink) => l.linkinfo?.info_kind;
      expect(hl.filter((l) => kind(l) === "bridge").map((l) => l.ifname).sort()).toEqual(wantBridges.sort());
      expect(hl.filter((l) => kind(l) === "veth").map((l) => l.ifname).sort()).toEqual(wantVeths.sort());
      // container namespaces: exactly the containers', each with exactly its interfaces and addresses
      const nss = readdirSync("/run/netns").filter((n) => n.startsWith(netnsPrefix)).sort();
      expect(nss).toEqual(ctrs.map((c) => c.netns).sort());
      for (const c of ctrs) {
        const got = ipJson<{ ifname: string; addr_info: { family: string; local: string; prefixlen: number; scope: string }[] }[]>(c.netns, "addr", "show");
        expect(got.filter((l) => l.ifname !== "lo").map((l) => l.ifname).sort()).toEqual((wantIfs.get(c.netns) ?? []).sort());
        const addrs = got.flatMap((l) => l.addr_info.filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`));
        expect(addrs.sort()).toEqual((held.get(c.netns) ?? []).sort());
      }
      // Berth's table: one bridge element per bridge network, one port element per published port
      const t = JSON.parse(Bun.spawnSync(["ip", "netns", "exec", sb.host, "nft", "-j", "list", "table", "inet", "berth"]).stdout.toString()) as {
        nftables: { set?: { name: string; elem?: unknown[] }; map?: { name: string; elem?: unknown[] } }[];
      };
      const elems = (name: string) => t.nftables.find((o) => (o.set ?? o.map)?.name === name);
      expect((elems("bridges")?.set?.elem ?? []).length).toBe(wantBridges.length);
      expect((elems("ports4")?.map?.elem ?? []).length).toBe(ports);
      // the anti-spoofing table: one (port . MAC . address) element per container address, no stale one
      const spoof = JSON.parse(Bun.spawnSync(["ip", "netns", "exec", sb.host, "nft", "-j", "list", "set", "bridge", "berth", "src4"]).stdout.toString()) as {
        nftables: { set?: { elem?: unknown[] } }[];
      };
      expect(spoof.nftables.find((o) => o.set)?.set?.elem?.length ?? 0).toBe(all.length);
    } finally {
      await s.close();
    }
    // every survivor reaches every other one
    for (const a of survivors) {
      for (const b of survivors) {
        if (a === b) continue;
        expect({ from: a.Name, to: b.Name, ok: canPing(a.NetnsName, b.Networks[0]!.Addresses[0]!.split("/")[0]!) }).toEqual({ from: a.Name, to: b.Name, ok: true });
      }
    }
  }

  const exists = async (kindPath: string, name: string): Promise<boolean> => (await api("GET", `${kindPath}/${name}`)).status === 200;
  const run = (name: string, networks: unknown[]) => api("POST", "/berth/containers/run", { Name: name, Command: ["sleep", "3600"], Networks: networks });

  let victim = "";
  let victimNet = "";
  const scenarios: Scenario[] = [
    {
      what: "run (record, netns, cgroup, connect, spawn)",
      points: [
        "run:after-record", "run:after-netns", "run:after-cgroup", "connect:after-ipam", "connect:after-store", "bridge.createEndpoint:after-veth",
        "connect:after-create-endpoint", "bridge.join:after-move", "bridge.join:after-configure", "connect:after-join", "connect:after-firewall", "run:before-spawn",
      ],
      act: () => {
        victim = `v${++seq}`;
        return run(victim, [{ Network: "n1", Ports: [`${9000 + seq}:80`] }]);
      },
      // rolled back: the container never existed
      expectAfter: async () => expect(await exists("/berth/containers", victim)).toBe(false),
    },
    {
      what: "network connect of a running container",
      points: [
        "connect:after-ipam", "connect:after-store", "bridge.createEndpoint:after-veth", "connect:after-create-endpoint", "bridge.join:after-move",
        "bridge.join:after-configure", "connect:after-join",
      ],
      act: () => api("POST", "/networks/n2/connect", { Container: survivors[0]!.Id }),
      // rolled back: still running on n1 only
      expectAfter: async () => {
        const c = await must<CtrJ>("GET", `/berth/containers/${survivors[0]!.Id}`);
        expect(c.Networks.length).toBe(1);
      },
    },
    {
      what: "network disconnect",
      points: ["disconnect:after-mark", "disconnect:after-leave", "disconnect:after-delete-endpoint", "disconnect:after-release"],
      prepare: () => must("POST", "/networks/n2/connect", { Container: survivors[1]!.Id }),
      act: () => api("POST", "/networks/n2/disconnect", { Container: survivors[1]!.Id }),
      // rolled forward: disconnected
      expectAfter: async () => {
        const c = await must<CtrJ>("GET", `/berth/containers/${survivors[1]!.Id}`);
        expect(c.Networks.length).toBe(1);
      },
    },
    {
      what: "container rm -f",
      points: ["remove:after-mark", "disconnect:after-leave", "disconnect:after-release", "remove:after-disconnect", "remove:after-netns"],
      prepare: async () => {
        victim = `v${++seq}`;
        await must("POST", "/berth/containers/run", { Name: victim, Command: ["sleep", "3600"], Networks: [{ Network: "n1", Ports: [`${9000 + seq}:80`] }, { Network: "n2" }] });
      },
      act: () => api("DELETE", `/berth/containers/${victim}?force=1`),
      // rolled forward: removed
      expectAfter: async () => expect(await exists("/berth/containers", victim)).toBe(false),
    },
    {
      what: "network create",
      points: ["createNetwork:after-store", "bridge.createNetwork:after-link", "createNetwork:after-driver", "createNetwork:after-firewall"],
      act: () => {
        victimNet = `vn${++seq}`;
        return api("POST", "/networks/create", { Name: victimNet });
      },
      // rolled back, except once the record is complete (only the firewall left: done at start)
      expectAfter: async (point) => {
        const there = await exists("/networks", victimNet);
        // (a completed one stays: deleting it here could pass the next armed point)
        expect({ point, there }).toEqual({ point, there: point === "createNetwork:after-firewall" });
      },
    },
    {
      what: "network rm",
      points: ["deleteNetwork:after-mark", "deleteNetwork:after-driver", "deleteNetwork:after-release"],
      prepare: async () => {
        victimNet = `vn${++seq}`;
        await must("POST", "/networks/create", { Name: victimNet });
      },
      act: () => api("DELETE", `/networks/${victimNet}`),
      // rolled forward: removed
      expectAfter: async () => expect(await exists("/networks", victimNet)).toBe(false),
    },
  ];

  beforeAll(async () => {
    sb = createSandbox("kd");
    stateDir = join(sb.stateDir, "state");
    socket = join(sb.stateDir, "berth.sock");
    netnsPrefix = uniqueName("d");
    cgroupParent = `${RUN_PREFIX}kdcg`;
    d = await start();
    await must("POST", "/networks/create", { Name: "n1", IPAM: { Config: [{ Subnet: "10.125.1.0/24" }] } });
    await must("POST", "/networks/create", { Name: "n2", IPAM: { Config: [{ Subnet: "10.125.2.0/24" }] } });
    for (const [i, name] of ["keep-a", "keep-b", "keep-c"].entries()) {
      const r = await run(name, [{ Network: "n1", ...(i === 2 ? { Ports: ["8080:80"] } : {}) }]);
      expect(r.status).toBe(201);
      survivors.push(JSON.parse(r.text) as CtrJ);
    }
    await checkConsistent();
  }, 60_000);

  afterAll(async () => {
    try {
      await stop();
      d = await start();
      for (const c of await must<CtrJ[]>("GET", "/berth/containers")) await api("DELETE", `/berth/containers/${c.Id}?force=1`);
      for (const n of await must<NetJ[]>("GET", "/networks")) if (!["bridge", "host", "none"].includes(n.Name)) await api("DELETE", `/networks/${n.Id}`);
      await stop();
    } finally {
      for (const c of ["memory", "cpu", "pids", "cpuacct", "blkio", ""]) removeCgroupTree(join("/sys/fs/cgroup", c, cgroupParent));
      await sb.cleanup();
    }
  }, 60_000);

  test(`${BERTHD_ROUNDS} kills at every point of run, connect, disconnect, rm, network create/rm`, async () => {
    const t0 = performance.now();
    const covered = new Set<string>();
    let after: (() => Promise<void>) | undefined;
    let recoveries = 0;
    await stop();
    for (let round = 0; round < BERTHD_ROUNDS; round++) {
      for (const sc of scenarios) {
        for (const point of sc.points) {
          // the daemon that recovers from the previous kill (at its start) is armed for this one
          d = await start(`${point}:kill`);
          await checkConsistent();
          await after?.();
          await sc.prepare?.();
          const r = await sc.act().catch((e: Error) => e);
          await d.proc.exited;
          recoveries += (d.logs().match(/"recovered"/g) ?? []).length;
          expect({ point, what: sc.what, signal: d.proc.signalCode, reply: r instanceof Error ? "connection lost" : r }).toEqual({
            point,
            what: sc.what,
            signal: "SIGKILL",
            reply: "connection lost",
          });
          d = undefined;
          countKill(`berthd ${point}`);
          covered.add(point);
          after = () => sc.expectAfter(point);
        }
      }
    }
    d = await start();
    await checkConsistent();
    await after?.();
    // every controller/runtime/driver crash point of these paths was exercised (macvlan/ipvlan ones elsewhere)
    const daemonPoints = crashPoints().filter((p) => !p.startsWith("cni.") && (!/^[a-z]+\./.test(p) || p.startsWith("bridge.")));
    expect(daemonPoints.length).toBeGreaterThanOrEqual(25);
    expect(daemonPoints.filter((p) => !covered.has(p))).toEqual([]);
    const n = [...kills.entries()].filter(([k]) => k.startsWith("berthd ")).reduce((s, [, v]) => s + v, 0);
    // recovery did real work (most kills leave something half-done that the next start rolled back or forward)
    expect(recoveries).toBeGreaterThan(n / 2);
    const perPoint = [...kills.entries()].filter(([k]) => k.startsWith("berthd ")).map(([k, v]) => `${k.slice(7)}=${v}`);
    console.log(`berthd: ${n} SIGKILLs over ${covered.size} points (${perPoint.join(" ")}), ${recoveries} recovery actions, in ${Math.round(performance.now() - t0)} ms; all consistent`);
  }, 300_000);
});

// ====================================================================================
// CNI plugins
// ====================================================================================

const CNI_BATCH = 6;
const CNI_ROUNDS = Number(process.env.CRASH_CNI_ROUNDS ?? 2);

interface PluginRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

describe("CNI plugins SIGKILLed at every step, DEL/GC clean up, survivors reachable", () => {
  let sb: Sandbox;
  let dataDir: string;
  const NET = "crashnet";
  const BR = "brk0";
  const survivors: { id: string; ns: string; ip: string; port: number }[] = [];
  const victims: { id: string; ns: string }[] = [];
  let vseq = 0;

  const bridgeConf = () => ({
    cniVersion: "1.1.0",
    name: NET,
    type: "bridge",
    bridge: BR,
    isGateway: true,
    ipMasq: true,
    ipam: { type: "host-local", dataDir, subnet: "10.126.0.0/24" },
  });
  const portmapConf = (port: number, prevResult?: unknown) => ({
    cniVersion: "1.1.0",
    name: NET,
    type: "portmap",
    capabilities: { portMappings: true },
    runtimeConfig: { portMappings: [{ hostPort: port, containerPort: 80, protocol: "tcp" }] },
    ...(prevResult ? { prevResult } : {}),
  });

  async function plugin(name: string, command: string, conf: unknown, id: string, ns: string, fault?: string): Promise<PluginRun> {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      CNI_COMMAND: command,
      CNI_PATH: "/usr/lib/cni",
      CNI_IFNAME: "eth0",
      ...(id ? { CNI_CONTAINERID: id } : {}),
      ...(ns ? { CNI_NETNS: `/run/netns/${ns}` } : {}),
      ...(fault ? { BERTH_FAULT: fault } : {}),
    };
    const p = Bun.spawn(["nsenter", `--net=/run/netns/${sb.host}`, "--", ...pluginArgv("berth", name)], {
      stdin: new TextEncoder().encode(JSON.stringify(conf)),
      stdout: "pipe",
      stderr: "pipe",
      env,
    });
    const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code: p.exitCode, signal: p.signalCode === null ? null : String(p.signalCode), stdout, stderr };
  }
  const ok = (r: PluginRun, what: string) => {
    if (r.code !== 0) throw new Error(`${what}: exit ${r.code} signal ${r.signal}: ${r.stdout} ${r.stderr}`);
    return r;
  };
  /** The runtime's ADD of the chain bridge -> portmap. */
  async function addChain(id: string, ns: string, port: number, fault?: string): Promise<PluginRun> {
    const b = await plugin("bridge", "ADD", bridgeConf(), id, ns, fault);
    if (b.code !== 0) return b;
    return plugin("portmap", "ADD", portmapConf(port, JSON.parse(b.stdout)), id, ns, fault);
  }
  /** The runtime's DEL of the chain (reverse order), as after a failed ADD. */
  async function delChain(id: string, ns: string, port: number, fault?: string): Promise<PluginRun> {
    const p = await plugin("portmap", "DEL", portmapConf(port), id, ns, fault);
    if (p.code !== 0) return p;
    return plugin("bridge", "DEL", bridgeConf(), id, ns, fault);
  }

  function checkClean(): Promise<void> {
    return (async () => {
      // leases: exactly the survivors'
      expect(await leases(dataDir, NET)).toEqual(survivors.map((s) => `${s.id}/eth0=${s.ip}`).sort());
      // host: the bridge's ports are exactly the survivors' veths; no other veth
      const hl = links(sb.host);
      const ports = hl.filter((l) => l.master === BR).length;
      expect(ports).toBe(survivors.length);
      expect(hl.filter((l) => l.linkinfo?.info_kind === "veth").length).toBe(survivors.length);
      // victims' namespaces: nothing but lo
      for (const v of victims) expect(links(v.ns).map((l) => l.ifname)).toEqual(["lo"]);
      // nftables (masquerade and portmap elements carry their owner): no victim's
      const rules = Bun.spawnSync(["ip", "netns", "exec", sb.host, "nft", "list", "ruleset"]).stdout.toString();
      expect(rules.match(/kv\d+x/g) ?? []).toEqual([]);
      for (const s of survivors) expect(rules).toContain(s.id);
      // survivors reach each other
      for (const a of survivors) for (const b of survivors) if (a !== b) expect({ from: a.id, to: b.ip, ok: canPing(a.ns, b.ip) }).toEqual({ from: a.id, to: b.ip, ok: true });
    })();
  }

  beforeAll(async () => {
    sb = createSandbox("kc");
    dataDir = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}crash-cni-`));
    for (const [i, id] of ["keepa", "keepb"].entries()) {
      const ns = sb.netns("ks");
      const r = ok(await addChain(id, ns, 8000 + i), `ADD ${id}`);
      const ip = String(JSON.parse(r.stdout).ips[0].address).split("/")[0]!;
      survivors.push({ id, ns, ip, port: 8000 + i });
    }
    for (let i = 0; i < CNI_BATCH; i++) victims.push({ id: "", ns: sb.netns("kv") });
    await checkClean();
  }, 60_000);

  afterAll(async () => {
    try {
      for (const s of survivors) await delChain(s.id, s.ns, s.port);
    } finally {
      await sb.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);

  const ADD_POINTS = ["cni.bridge.add:after-veth-ipam", "cni.host-local.add:before-commit", "cni.host-local.add:after-commit", "cni.bridge.add:after-bridge", "cni.bridge.add:after-configure", "cni.portmap.add:after-elements"];
  const DEL_POINTS = ["cni.portmap.del:before-apply", "cni.host-local.del:after-commit", "cni.bridge.del:before-masq"];

  test("every CNI crash point in src/cni has a scenario here", () => {
    expect(crashPoints().filter((p) => p.startsWith("cni.")).sort()).toEqual([...ADD_POINTS, ...DEL_POINTS].sort());
  });

  test(`${CNI_ROUNDS} rounds of ${CNI_BATCH} parallel plugin kills at every ADD and DEL step`, async () => {
    const t0 = performance.now();
    let total = 0;
    for (let round = 0; round < CNI_ROUNDS; round++) {
      for (const point of [...ADD_POINTS, ...DEL_POINTS]) {
        for (const v of victims) v.id = `kv${++vseq}x`;
        const isDel = DEL_POINTS.includes(point);
        const port = (i: number) => 8100 + i;
        if (isDel) for (const [i, v] of victims.entries()) ok(await addChain(v.id, v.ns, port(i)), `ADD ${v.id}`);
        // the crash: every victim's plugin process dies at the point
        const runs = await Promise.all(victims.map((v, i) => (isDel ? delChain : addChain)(v.id, v.ns, port(i), `${point}:kill`)));
        expect(runs.map((r) => ({ point, signal: r.signal }))).toEqual(runs.map(() => ({ point, signal: "SIGKILL" })));
        countKill(point, runs.length);
        total += runs.length;
        // the runtime's answer to a failed ADD or DEL: DEL (again); it must succeed
        const dels = await Promise.all(victims.map((v, i) => delChain(v.id, v.ns, port(i))));
        for (const [i, r] of dels.entries()) ok(r, `DEL ${victims[i]!.id} after ${point}`);
        await checkClean();
      }
      // and GC with the live attachments changes nothing (nothing stale is left to collect)
      const keep = survivors.map((s) => ({ containerID: s.id, ifname: "eth0" }));
      ok(await plugin("bridge", "GC", { ...bridgeConf(), "cni.dev/valid-attachments": keep }, "", ""), "GC bridge");
      ok(await plugin("portmap", "GC", { ...portmapConf(0), "cni.dev/valid-attachments": keep }, "", ""), "GC portmap");
      await checkClean();
    }
    const perPoint = [...ADD_POINTS, ...DEL_POINTS].map((p) => `${p}=${kills.get(p)}`);
    console.log(`CNI: ${total} plugin SIGKILLs (${perPoint.join(" ")}) in ${Math.round(performance.now() - t0)} ms; all cleaned by DEL`);
  }, 300_000);

  test("GC alone collects what killed ADDs left (no DEL)", async () => {
    for (const v of victims) v.id = `kv${++vseq}x`;
    const runs = await Promise.all(victims.map((v, i) => addChain(v.id, v.ns, 8200 + i, "cni.portmap.add:after-elements:kill")));
    expect(runs.map((r) => r.signal)).toEqual(victims.map(() => "SIGKILL"));
    countKill("cni.portmap.add:after-elements (GC)", runs.length);
    expect((await leases(dataDir, NET)).length).toBe(survivors.length + victims.length);
    const keep = survivors.map((s) => ({ containerID: s.id, ifname: "eth0" }));
    ok(await plugin("bridge", "GC", { ...bridgeConf(), "cni.dev/valid-attachments": keep }, "", ""), "GC bridge");
    ok(await plugin("portmap", "GC", { ...portmapConf(0), "cni.dev/valid-attachments": keep }, "", ""), "GC portmap");
    // GC releases addresses and nft elements; the links die with the container namespaces (the runtime deletes them)
    expect(await leases(dataDir, NET)).toEqual(survivors.map((s) => `${s.id}/eth0=${s.ip}`).sort());
    const rules = Bun.spawnSync(["ip", "netns", "exec", sb.host, "nft", "list", "ruleset"]).stdout.toString();
    expect(rules.match(/kv\d+x/g) ?? []).toEqual([]);
    for (const v of victims) Bun.spawnSync(["ip", "-n", v.ns, "link", "del", "eth0"]);
    await checkClean();
  }, 60_000);
});

afterAll(() => {
  const total = [...kills.values()].reduce((a, b) => a + b, 0);
  console.log(`crash campaign: ${total} SIGKILLs in total`);
});
