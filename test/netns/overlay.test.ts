/**
 * Overlay networks across 3 "hosts" (namespaces on one underlay bridge), one
 * etcd on the underlay and a real berthd per host, driven through the real CLI:
 * cross-host ping and TCP, isolation of two overlays, MTU, masqueraded egress
 * through the host's gateway bridge, VXLAN FDB/neighbour state read back with
 * `bridge -j fdb` / `ip -j neigh`, a host agent crash (lease expiry removes its
 * endpoints from the others' FDB; a restart resyncs without loss or
 * duplicates) and an etcd restart (dataplane kept, then resynced).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createMultihost, type Multihost, type TestHost, UNDERLAY_SWITCH_IP } from "../harness/multihost.ts";
import { assertRootUntouched, canPing, ipJson, startEchoServer, tcpRoundTrip, reachable } from "../harness/sandbox.ts";
import { createTestBerth } from "../harness/berth.ts";
import { dockerCli } from "../harness/dockerd.ts";
import { cni, ok } from "./cni-util.ts";
import { eventually, expectBerthError, link, seenFrom } from "./util.ts";

assertRootUntouched();

const DNS_QUERY = join(import.meta.dir, "..", "fixtures", "dns-query.ts");
const DOCKER = dockerCli();

interface Ctr {
  name: string;
  host: TestHost;
  ns: string;
  ip: string;
  mac: string;
}

interface FdbJ {
  mac: string;
  dst?: string;
  state?: string;
}

let m: Multihost;
const ctrs = new Map<string, Ctr>();
let h1: TestHost;
let h2: TestHost;
let h3: TestHost;
let netA: { Id: string; Options: Record<string, string>; Scope: string; Driver: string };

function cli(h: TestHost, ...args: string[]): string {
  const r = h.daemon.cli(...args);
  if (r.code !== 0) throw new Error(`berth ${args.join(" ")} on ${h.name}: ${r.err}\n${h.daemon.logs().slice(-3000)}`);
  return r.out;
}

function run(h: TestHost, name: string, network: string): Ctr {
  cli(h, "run", "-d", "--network", network, "--name", name, "--", "sleep", "600");
  const [info] = JSON.parse(cli(h, "inspect", name)) as { NetnsName: string; Networks: { Ifname: string; Addresses: string[] }[] }[];
  // eth0 is the overlay endpoint, eth1 the gateway bridge's
  const ip = info!.Networks.find((x) => x.Ifname === "eth0")!.Addresses[0]!.split("/")[0]!;
  const mac = link(info!.NetnsName, "eth0")!.address!;
  const c = { name, host: h, ns: info!.NetnsName, ip, mac };
  ctrs.set(name, c);
  return c;
}

const vxlanOf = (netId: string): string => `vx${netId.slice(0, 12)}`;

function fdb(h: TestHost, netId: string): Map<string, string> {
  const r = Bun.spawnSync(["ip", "netns", "exec", h.sb.host, "bridge", "-j", "fdb", "show", "dev", vxlanOf(netId)], { stdout: "pipe", stderr: "pipe" });
  const out = new Map<string, string>();
  if (r.exitCode !== 0) return out;
  for (const e of JSON.parse(r.stdout.toString() || "[]") as FdbJ[]) {
    if (e.dst && e.state === "permanent" && e.mac !== "00:00:00:00:00:00") out.set(e.mac, e.dst);
  }
  return out;
}

function neigh(h: TestHost, netId: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const n of ipJson<{ dst: string; lladdr?: string }[]>(h.sb.host, "neigh", "show", "dev", vxlanOf(netId))) {
    if (n.lladdr) out.set(n.dst, n.lladdr);
  }
  return out;
}

/** Endpoint keys of a network in etcd (read inside the underlay, where etcd listens). */
function storedEndpoints(netId: string): string[] {
  const r = m.underlayExec("etcdctl", "--endpoints", `http://${UNDERLAY_SWITCH_IP}:2379`, "get", "--prefix", "--keys-only", `/berth/g/epnet/${netId}/`);
  return r.out.split("\n").filter((l) => l.trim() !== "");
}

describe("overlay networks across 3 hosts", () => {
  beforeAll(async () => {
    m = await createMultihost(3, { hostTtl: 3 });
    [h1, h2, h3] = m.hosts as [TestHost, TestHost, TestHost];
    cli(h1, "network", "create", "-d", "overlay", "--subnet", "10.77.0.0/24", "ovA");
    cli(h2, "network", "create", "-d", "overlay", "--subnet", "10.78.0.0/24", "ovB");
    [netA] = JSON.parse(cli(h3, "network", "inspect", "ovA"));
    run(h1, "a1", "ovA");
    run(h2, "a2", "ovA");
    run(h3, "a3", "ovA");
    run(h2, "b2", "ovB");
    run(h3, "b3", "ovB");
  }, 90_000);

  afterAll(async () => {
    await m?.cleanup();
  }, 60_000);

  test("an overlay is one global network on every host; inspect shows its VNI and MTU (underlay 1500 - 50)", () => {
    expect(netA.Driver).toBe("overlay");
    expect(netA.Scope).toBe("global");
    expect(netA.Options["com.docker.network.driver.mtu"]).toBe("1450");
    expect(Number(netA.Options["com.docker.network.driver.overlay.vxlanid_list"])).toBeGreaterThanOrEqual(4097);
    for (const h of m.hosts) {
      expect(cli(h, "network", "ls").split("\n").filter((l) => /\bov[AB]\b/.test(l)).length).toBe(2);
      const vx = ipJson<{ mtu: number; linkinfo?: { info_kind?: string; info_data?: { id?: number; port?: number; local?: string; learning?: boolean } } }[]>(
        h.sb.host, "-d", "link", "show", vxlanOf(netA.Id),
      )[0]!;
      expect(vx.mtu).toBe(1450);
      expect(vx.linkinfo?.info_kind).toBe("vxlan");
      expect(vx.linkinfo?.info_data?.id).toBe(Number(netA.Options["com.docker.network.driver.overlay.vxlanid_list"]));
      expect(vx.linkinfo?.info_data?.port).toBe(4789);
      expect(vx.linkinfo?.info_data?.local).toBe(h.ip);
      expect(vx.linkinfo?.info_data?.learning).toBe(false);
    }
    expect(link(ctrs.get("a1")!.ns, "eth0")?.mtu).toBe(1450);
    // each host has its own local "bridge" network beside the shared overlays
    const bridges = m.hosts.map((h) => JSON.parse(cli(h, "network", "inspect", "bridge"))[0].Id as string);
    expect(new Set(bridges).size).toBe(3);
  });

  test("Docker API: POST /networks/create with Driver overlay makes a global network every host sees; bad options are refused", async () => {
    const made = await h2.daemon.api<{ Id: string }>("POST", "/networks/create", { Name: "ovD", Driver: "overlay" });
    const seen = await h3.daemon.api<{ Id: string; Scope: string; Driver: string; IPAM: { Config: { Subnet: string }[] } }>("GET", "/networks/ovD");
    expect(seen.Id).toBe(made.Id);
    expect([seen.Scope, seen.Driver]).toEqual(["global", "overlay"]);
    expect(seen.IPAM.Config.length).toBe(1);
    // a second overlay gets its own VNI
    const vnis = ["ovA", "ovB", "ovD"].map((n) => JSON.parse(cli(h1, "network", "inspect", n))[0].Options["com.docker.network.driver.overlay.vxlanid_list"]);
    expect(new Set(vnis).size).toBe(3);
    const bad = h1.daemon.cli("network", "create", "-d", "overlay", "-o", "parent=eth0", "ovX");
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("unknown overlay option");
    const taken = h1.daemon.cli("network", "create", "-d", "overlay", "-o", `com.docker.network.driver.overlay.vxlanid_list=${vnis[0]}`, "ovY");
    expect(taken.code).not.toBe(0);
    expect(taken.err).toContain("is used by another overlay network");
    await h1.daemon.api("DELETE", "/networks/ovD");
    expect(cli(h3, "network", "ls")).not.toContain("ovD");
    expect(cli(h1, "network", "ls")).not.toContain("ovY");
  });

  test.skipIf(!DOCKER)("the docker CLI creates, sees, connects to and removes an overlay (docker network create -d overlay)", () => {
    const docker = (h: TestHost, ...args: string[]) => {
      const r = Bun.spawnSync([DOCKER!, ...args], { env: { ...process.env, DOCKER_HOST: `unix://${h.daemon.socket}` }, stdout: "pipe", stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`docker ${args.join(" ")} on ${h.name}: ${r.stderr.toString()}`);
      return r.stdout.toString().trim();
    };
    const id = docker(h1, "network", "create", "-d", "overlay", "--subnet", "10.76.0.0/24", "ovDk");
    expect(docker(h3, "network", "ls", "--filter", "driver=overlay", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").split("\n")).toContain(
      "ovDk overlay global",
    );
    expect(docker(h2, "network", "inspect", "-f", "{{.Id}} {{index .Options \"com.docker.network.driver.mtu\"}}", "ovDk")).toBe(`${id} 1450`);
    docker(h1, "network", "connect", "ovDk", "a1");
    // another host's inspect names the container by its endpoint
    const seen = JSON.parse(docker(h2, "network", "inspect", "ovDk"))[0] as { Containers: Record<string, { IPv4Address: string }> };
    expect(Object.values(seen.Containers).map((c) => c.IPv4Address.split(".").slice(0, 3).join("."))).toEqual(["10.76.0"]);
    docker(h1, "network", "disconnect", "ovDk", "a1");
    docker(h3, "network", "rm", "ovDk");
    expect(cli(h1, "network", "ls")).not.toContain("ovDk");
  });

  test("containers on different hosts ping each other and do TCP round trips", async () => {
    const [a1, a2, a3] = ["a1", "a2", "a3"].map((n) => ctrs.get(n)!) as [Ctr, Ctr, Ctr];
    expect(new Set([a1.ip, a2.ip, a3.ip]).size).toBe(3);
    expect(reachable(a1.ns, a2.ip)).toBe(true);
    expect(reachable(a1.ns, a3.ip)).toBe(true);
    expect(reachable(a3.ns, a2.ip)).toBe(true);
    const srv = await startEchoServer(h1.sb, a1.ns, "0.0.0.0", 7101);
    try {
      expect(tcpRoundTrip(a3.ns, a1.ip, 7101, "cross")).toBe(`echo:cross from:${a3.ip}`);
      expect(tcpRoundTrip(a2.ns, a1.ip, 7101, "cross2")).toBe(`echo:cross2 from:${a2.ip}`);
    } finally {
      await srv.stop();
    }
  });

  test("names resolve across hosts through the embedded DNS, and only on shared networks", () => {
    const [a1, a3, b3] = ["a1", "a3", "b3"].map((n) => ctrs.get(n)!) as [Ctr, Ctr, Ctr];
    const ask = (from: Ctr, name: string) => {
      const r = Bun.spawnSync(["nsenter", `--net=/run/netns/${from.ns}`, "--", process.execPath, DNS_QUERY, "127.0.0.11", "53", name, "A", "udp", "3000"], { stdout: "pipe", stderr: "pipe" });
      return JSON.parse(r.stdout.toString().trim() || "{}") as { rcode?: string; answers?: { data: string }[] };
    };
    // a3 runs on h3; a1's resolver on h1 answers from the shared endpoint registry
    expect(ask(a1, "a3").answers?.map((x) => x.data)).toEqual([a3.ip]);
    expect(ask(b3, "a1").answers ?? []).toEqual([]);
  });

  test("two overlays are isolated, also between containers sharing a host", async () => {
    const [a1, a2, a3, b2, b3] = ["a1", "a2", "a3", "b2", "b3"].map((n) => ctrs.get(n)!) as [Ctr, Ctr, Ctr, Ctr, Ctr];
    expect(reachable(b2.ns, b3.ip)).toBe(true); // B works on its own
    expect(canPing(a1.ns, b2.ip)).toBe(false);
    expect(canPing(a1.ns, b3.ip)).toBe(false);
    expect(canPing(b2.ns, a3.ip)).toBe(false);
    // same host (h2), different overlays
    expect(canPing(a2.ns, b2.ip)).toBe(false);
    const srv = await startEchoServer(h3.sb, b3.ns, "0.0.0.0", 7102);
    try {
      expect(tcpRoundTrip(b2.ns, b3.ip, 7102, "ok")).toBe(`echo:ok from:${b2.ip}`);
      expect(tcpRoundTrip(a3.ns, b3.ip, 7102, "x", 700)).toBeUndefined();
      expect(tcpRoundTrip(a1.ns, b3.ip, 7102, "x", 700)).toBeUndefined();
    } finally {
      await srv.stop();
    }
  });

  test("the overlay CNI plugin attaches a container through the shared etcd state; DEL takes it away everywhere", async () => {
    const a3 = ctrs.get("a3")!;
    const ns = h1.sb.netns("cni");
    const conf = { cniVersion: "1.0.0", name: "ovA", type: "overlay", etcd: m.etcd.url, hostName: "h1", advertiseAddr: h1.ip };
    const call = (command: "ADD" | "DEL" | "CHECK") => cni({ plugin: "overlay", host: h1.sb.host, command, containerId: "cnictr1", netns: ns, ifname: "eth0", conf });
    const add = ok(call("ADD"), "overlay ADD");
    const ifs = add.json.interfaces as { name: string; mac: string }[];
    expect(ifs.map((i) => i.name)).toEqual(["eth0", "eth1"]);
    const ip = (add.json.ips[0].address as string).split("/")[0]!;
    expect(ip).toStartWith("10.77.0.");
    expect(link(ns, "eth0")?.mtu).toBe(1450);
    // the other hosts' agents forward to it at once (etcd watch); it reaches a container on h3 and the outside
    expect(await eventually(() => fdb(h3, netA.Id).get(ifs[0]!.mac) === h1.ip, 10_000, 100)).toBe(true);
    expect(reachable(ns, a3.ip)).toBe(true);
    expect(call("CHECK").code).toBe(0);
    ok(call("DEL"), "overlay DEL");
    ok(call("DEL"), "second overlay DEL");
    expect(link(ns, "eth0")).toBeUndefined();
    expect(link(ns, "eth1")).toBeUndefined();
    expect(await eventually(() => !fdb(h3, netA.Id).has(ifs[0]!.mac), 10_000, 100)).toBe(true);
    expect(call("CHECK").code).not.toBe(0);
    const bad = cni({ plugin: "overlay", host: h1.sb.host, command: "ADD", containerId: "cnictr2", netns: ns, ifname: "eth0", conf: { ...conf, network: "nosuch" } });
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toContain("no overlay network");
  });

  test("an overlay and a local bridge network are isolated both ways, on the same host and across hosts", async () => {
    cli(h1, "network", "create", "--subnet", "10.75.0.0/24", "lb1");
    const l1 = run(h1, "l1", "lb1");
    const [a1, a3] = ["a1", "a3"].map((n) => ctrs.get(n)!) as [Ctr, Ctr];
    try {
      expect(reachable(l1.ns, "10.75.0.1")).toBe(true); // the bridge network itself works
      expect(canPing(a1.ns, l1.ip)).toBe(false);
      expect(canPing(l1.ns, a1.ip)).toBe(false);
      expect(canPing(a3.ns, l1.ip)).toBe(false);
      expect(canPing(l1.ns, a3.ip)).toBe(false);
      const srv = await startEchoServer(h1.sb, l1.ns, "0.0.0.0", 7104);
      try {
        expect(tcpRoundTrip(a1.ns, l1.ip, 7104, "x", 700)).toBeUndefined();
      } finally {
        await srv.stop();
      }
    } finally {
      cli(h1, "rm", "-f", "l1");
      ctrs.delete("l1");
      cli(h1, "network", "rm", "lb1");
    }
  });

  test("a dual-stack overlay carries IPv6 across hosts (ping -6, TCP), names resolve to AAAA", async () => {
    cli(h1, "network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.74.0.0/24", "--subnet", "fd00:74::/64", "ov6");
    const x1 = run(h1, "x1", "ov6");
    const x2 = run(h2, "x2", "ov6");
    const v6 = (c: Ctr) => {
      const [info] = JSON.parse(cli(c.host, "inspect", c.name)) as { Networks: { Ifname: string; Addresses: string[] }[] }[];
      return info!.Networks.find((x) => x.Ifname === "eth0")!.Addresses.find((a) => a.includes(":"))!.split("/")[0]!;
    };
    try {
      const [ip1, ip2] = [v6(x1), v6(x2)];
      expect(ip1).toStartWith("fd00:74::");
      expect(await eventually(() => canPing(x1.ns, ip2), 10_000, 200)).toBe(true);
      expect(reachable(x2.ns, ip1)).toBe(true);
      const srv = await startEchoServer(h2.sb, x2.ns, "::", 7105);
      try {
        expect(tcpRoundTrip(x1.ns, ip2, 7105, "six")).toBe(`echo:six from:${ip1}`);
      } finally {
        await srv.stop();
      }
      const r = Bun.spawnSync(["nsenter", `--net=/run/netns/${x1.ns}`, "--", process.execPath, DNS_QUERY, "127.0.0.11", "53", "x2", "AAAA", "udp", "3000"], {
        stdout: "pipe",
        stderr: "pipe",
      });
      expect((JSON.parse(r.stdout.toString()) as { answers: { data: string }[] }).answers.map((a) => a.data)).toEqual([ip2]);
    } finally {
      cli(h1, "rm", "-f", "x1");
      cli(h2, "rm", "-f", "x2");
      ctrs.delete("x1");
      ctrs.delete("x2");
      cli(h2, "network", "rm", "ov6");
    }
  });

  test("an internal overlay: members reach each other across hosts, nothing else; no gateway bridge", async () => {
    cli(h1, "network", "create", "-d", "overlay", "--internal", "--subnet", "10.79.0.0/24", "ovI");
    const i1 = run(h1, "i1", "ovI");
    const i2 = run(h2, "i2", "ovI");
    try {
      expect(await eventually(() => canPing(i1.ns, i2.ip), 5000, 100)).toBe(true);
      expect(link(i1.ns, "eth1")).toBeUndefined();
      expect(ipJson<{ dst: string }[]>(i1.ns, "route", "show").some((r) => r.dst === "default")).toBe(false);
      expect(canPing(i1.ns, UNDERLAY_SWITCH_IP)).toBe(false);
    } finally {
      cli(h1, "rm", "-f", "i1");
      cli(h2, "rm", "-f", "i2");
      cli(h2, "network", "rm", "ovI");
    }
  });

  test("outbound traffic leaves through the container's own host, masqueraded to its underlay address", async () => {
    const srv = await startEchoServer(m.underlay, m.underlay.host, "0.0.0.0", 7103);
    try {
      for (const n of ["a1", "a3", "b2"]) {
        const c = ctrs.get(n)!;
        expect(seenFrom(tcpRoundTrip(c.ns, UNDERLAY_SWITCH_IP, 7103, n))).toBe(c.host.ip);
      }
    } finally {
      await srv.stop();
    }
  });

  test("each VXLAN device holds exactly the other hosts' endpoints: MAC -> VTEP, IP -> MAC", () => {
    const [a1, a2, a3] = ["a1", "a2", "a3"].map((n) => ctrs.get(n)!) as [Ctr, Ctr, Ctr];
    expect(Object.fromEntries(fdb(h1, netA.Id))).toEqual({ [a2.mac]: h2.ip, [a3.mac]: h3.ip });
    expect(Object.fromEntries(fdb(h2, netA.Id))).toEqual({ [a1.mac]: h1.ip, [a3.mac]: h3.ip });
    expect(Object.fromEntries(neigh(h1, netA.Id))).toEqual({ [a2.ip]: a2.mac, [a3.ip]: a3.mac });
    expect(storedEndpoints(netA.Id).length).toBe(3);
    // inspect on any host lists every host's containers by name
    const inspected = JSON.parse(cli(h1, "network", "inspect", "ovA"))[0].Containers as Record<string, { Name: string; IPv4Address: string }>;
    expect(Object.values(inspected).map((c) => c.Name).sort()).toEqual(["a1", "a2", "a3"]);
  });

  test("a host's berthd killed: after its lease expires the others drop its endpoints; a restart resyncs", async () => {
    const [a1, a2, a3] = ["a1", "a2", "a3"].map((n) => ctrs.get(n)!) as [Ctr, Ctr, Ctr];
    await h3.kill();
    expect(await eventually(() => !fdb(h1, netA.Id).has(a3.mac) && !fdb(h2, netA.Id).has(a3.mac), 15_000, 200)).toBe(true);
    expect(neigh(h1, netA.Id).has(a3.ip)).toBe(false);
    // the others keep talking; the dead host's records stay in the store
    expect(reachable(a1.ns, a2.ip)).toBe(true);
    expect(storedEndpoints(netA.Id).length).toBe(3);
    await h3.restart();
    expect(await eventually(() => fdb(h1, netA.Id).get(a3.mac) === h3.ip && fdb(h2, netA.Id).get(a3.mac) === h3.ip, 15_000, 200)).toBe(true);
    expect(await eventually(() => fdb(h3, netA.Id).size === 2, 10_000, 200)).toBe(true);
    expect(Object.fromEntries(fdb(h1, netA.Id))).toEqual({ [a2.mac]: h2.ip, [a3.mac]: h3.ip });
    expect(Object.fromEntries(fdb(h3, netA.Id))).toEqual({ [a1.mac]: h1.ip, [a2.mac]: h2.ip });
    expect(storedEndpoints(netA.Id).length).toBe(3);
    expect(reachable(a1.ns, a3.ip)).toBe(true);
    expect(reachable(a3.ns, a2.ip)).toBe(true);
  }, 60_000);

  test("etcd restarted: the dataplane keeps forwarding meanwhile, and agents resync afterwards", async () => {
    const [a1, a2] = ["a1", "a2"].map((n) => ctrs.get(n)!) as [Ctr, Ctr];
    const before = Object.fromEntries(fdb(h1, netA.Id));
    await m.etcd.kill("SIGKILL");
    await Bun.sleep(2500); // several agent passes fail meanwhile
    expect(Object.fromEntries(fdb(h1, netA.Id))).toEqual(before);
    expect(reachable(a1.ns, a2.ip)).toBe(true);
    await m.etcd.restart();
    // a container started after etcd is back is seen by the others
    const a4 = await (async () => {
      for (let i = 0; ; i++) {
        try {
          return run(h2, "a4", "ovA");
        } catch (e) {
          if (i > 20) throw e;
          await Bun.sleep(250);
        }
      }
    })();
    expect(await eventually(() => fdb(h1, netA.Id).get(a4.mac) === h2.ip, 15_000, 200)).toBe(true);
    expect(reachable(a1.ns, a4.ip)).toBe(true);
    expect(storedEndpoints(netA.Id).length).toBe(4);
  }, 60_000);

  test("removing containers and networks removes forwarding entries and devices on every host", async () => {
    const a2 = ctrs.get("a2")!;
    cli(h2, "rm", "-f", "a2");
    expect(await eventually(() => !fdb(h1, netA.Id).has(a2.mac) && !fdb(h3, netA.Id).has(a2.mac), 10_000, 200)).toBe(true);
    for (const [h, names] of [[h1, ["a1"]], [h2, ["a4", "b2"]], [h3, ["a3", "b3"]]] as const) cli(h, "rm", "-f", ...names);
    cli(h3, "network", "rm", "ovA", "ovB");
    for (const h of m.hosts) {
      expect(await eventually(() => !link(h.sb.host, vxlanOf(netA.Id)), 10_000, 200)).toBe(true);
      expect(cli(h, "network", "ls")).not.toContain("ovA");
    }
  }, 60_000);
});

describe("overlay without a cluster", () => {
  test("an overlay needs --store etcd and --advertise-addr: a clear error, nothing left behind", async () => {
    const b = await createTestBerth("ovn");
    try {
      const before = (await b.store.networks.list()).length;
      await expectBerthError(b.ctl.createNetwork({ name: "ov", driver: "overlay" }), { kind: "unavailable", code: "overlay-needs-cluster", message: "--advertise-addr" });
      expect((await b.store.networks.list()).length).toBe(before);
      expect(await b.store.allocations.list()).toEqual([]);
    } finally {
      await b.close();
    }
  });
});
