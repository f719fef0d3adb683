/**
 * The macvlan driver with real packets, on this machine's kernel. The parent is
 * a veth end in the sandbox host whose peer sits in an "external segment"
 * namespace holding the gateway address of the network's subnet (a router on the
 * LAN). Covers the modes (bridge / private / vepa / passthru: each behaves
 * differently with real pings), MAC and addresses, default route, internal
 * networks, bad input (nothing changed afterwards), rollback, cleanup, and the
 * Docker API and CLI paths.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { route } from "../../src/api/router.ts";
import { Cgroups } from "../../src/dataplane/cgroup.ts";
import type { EndpointRecord, NetworkRecord } from "../../src/store/types.ts";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { startDaemon } from "../harness/daemon.ts";
import { addSegment } from "../harness/segment.ts";
import { assertRootUntouched, canPing, createSandbox, type Sandbox, startEchoServer, tcpRoundTrip, reachable } from "../harness/sandbox.ts";
import { addrsOf, defaultRoute, expectBerthError, link, linkNames, links, nftTableText, routes, seenFrom } from "./util.ts";

assertRootUntouched();

interface JLinkInfo {
  ifname: string;
  address?: string;
  linkinfo?: { info_kind?: string; info_data?: { mode?: string } };
}
const kindOf = (ns: string, dev: string): JLinkInfo | undefined => links(ns).find((l) => l.ifname === dev) as JLinkInfo | undefined;
const ip = (e: EndpointRecord): string => e.addresses[0]!.ip.toString();

describe("macvlan networks", () => {
  let b: TestBerth;
  let lan: { ns: string; ip: string };
  let n1: NetworkRecord;
  let c1: string;
  let c2: string;
  let e1: EndpointRecord;
  let e2: EndpointRecord;

  /** Store and kernel state that a refused request must leave unchanged. */
  const snapshot = async () => ({
    networks: (await b.store.networks.list()).map((n) => n.name).sort(),
    endpoints: (await Promise.all((await b.store.networks.list()).map((n) => b.store.endpoints.listByNetwork(n.id)))).flat().map((e) => e.id).sort(),
    addresses: (await b.store.allocations.list()).map((a) => `${a.containerId}:${a.address}`).sort(),
    hostLinks: linkNames(b.sb.host),
    nft: nftTableText(b.sb.host),
  });

  beforeAll(async () => {
    b = await createTestBerth("mv");
    lan = addSegment(b.sb, "uplink0", "10.210.0.1/24");
    n1 = await b.ctl.createNetwork({ name: "lan", driver: "macvlan", options: { parent: "uplink0" }, ipam: { config: [{ subnet: "10.210.0.0/24" }] } });
    c1 = b.containerNs();
    c2 = b.containerNs();
    e1 = await b.ctl.connect({ network: "lan", containerId: "c1", netns: c1 });
    e2 = await b.ctl.connect({ network: "lan", containerId: "c2", netns: c2 });
  });
  afterAll(async () => {
    await b?.close();
  });

  test("bridge mode (the default): containers reach each other and the external segment, without NAT", async () => {
    expect(n1.driverState).toEqual({ parent: "uplink0", mode: "bridge" });
    expect(ip(e1)).toBe("10.210.0.2");
    expect(ip(e2)).toBe("10.210.0.3");
    expect(reachable(c1, ip(e2))).toBe(true);
    expect(reachable(c2, ip(e1))).toBe(true);
    expect(reachable(c1, lan.ip)).toBe(true);
    expect(reachable(lan.ns, ip(e2))).toBe(true);
    const srv = await startEchoServer(b.sb, lan.ns, "0.0.0.0", 7101);
    try {
      // the LAN sees the container's own address: no bridge, no masquerade
      expect(seenFrom(tcpRoundTrip(c1, lan.ip, 7101, "mv"))).toBe(ip(e1));
    } finally {
      await srv.stop();
    }
  });

  test("eth0 is a macvlan child in bridge mode with the endpoint's MAC, address and default route via the gateway", () => {
    const eth0 = kindOf(c1, "eth0");
    expect(eth0?.linkinfo?.info_kind).toBe("macvlan");
    expect(eth0?.linkinfo?.info_data?.mode).toBe("bridge");
    expect(eth0?.address).toBe(e1.mac.toString().toLowerCase());
    expect(kindOf(c2, "eth0")?.address).toBe(e2.mac.toString().toLowerCase());
    expect(addrsOf(c1, "eth0").filter((a) => !a.startsWith("fe80:"))).toEqual(["10.210.0.2/24"]);
    expect(defaultRoute(c1)).toMatchObject({ gateway: "10.210.0.1", dev: "eth0" });
    // nothing of it stays in the host: no temporary child, no bridge, no firewall entry
    expect(linkNames(b.sb.host).filter((n) => n.startsWith("mv") || n.startsWith("br-"))).toEqual([]);
    expect(nftTableText(b.sb.host)).not.toContain("10.210.0.0");
  });

  test("firewallState only carries bridge networks", async () => {
    const fw = await b.ctl.firewallState();
    expect(fw.networks.map((n) => n.bridge)).toEqual([]);
    expect(fw.networks.flatMap((n) => n.masquerade.map(String))).not.toContain("10.210.0.0/24");
  });

  test("private mode: children cannot reach each other even through a hairpinning switch; vepa mode: they can", async () => {
    const segP = addSegment(b.sb, "uplinkp", "10.211.0.1/24", { hairpin: true });
    const segV = addSegment(b.sb, "uplinkv", "10.212.0.1/24", { hairpin: true });
    await b.ctl.createNetwork({ name: "priv", driver: "macvlan", options: { parent: "uplinkp", macvlan_mode: "private" }, ipam: { config: [{ subnet: "10.211.0.0/24" }] } });
    await b.ctl.createNetwork({ name: "vepa", driver: "macvlan", options: { parent: "uplinkv", macvlan_mode: "vepa" }, ipam: { config: [{ subnet: "10.212.0.0/24" }] } });
    const [p1, p2, v1, v2] = [b.containerNs(), b.containerNs(), b.containerNs(), b.containerNs()];
    const ep1 = await b.ctl.connect({ network: "priv", containerId: "p1", netns: p1 });
    const ep2 = await b.ctl.connect({ network: "priv", containerId: "p2", netns: p2 });
    const ev1 = await b.ctl.connect({ network: "vepa", containerId: "v1", netns: v1 });
    const ev2 = await b.ctl.connect({ network: "vepa", containerId: "v2", netns: v2 });
    expect(kindOf(p1, "eth0")?.linkinfo?.info_data?.mode).toBe("private");
    expect(kindOf(v1, "eth0")?.linkinfo?.info_data?.mode).toBe("vepa");
    // both reach their segment...
    expect(reachable(p1, segP.ip)).toBe(true);
    expect(reachable(p2, segP.ip)).toBe(true);
    expect(reachable(v1, segV.ip)).toBe(true);
    expect(reachable(v2, segV.ip)).toBe(true);
    // ...but only vepa children reach each other (the switch reflects their frames)
    expect(canPing(p1, ip(ep2))).toBe(false);
    expect(canPing(p2, ip(ep1))).toBe(false);
    expect(reachable(v1, ip(ev2))).toBe(true);
    expect(reachable(v2, ip(ev1))).toBe(true);
    // and bridge mode children reach each other without any switch help (first test)
    expect(reachable(c1, ip(e2))).toBe(true);
  });

  test("passthru takes exactly one endpoint; its MAC becomes the parent's and the parent's own comes back after", async () => {
    const seg = addSegment(b.sb, "uplinkt", "10.213.0.1/24");
    const parentMac = link(b.sb.host, "uplinkt")!.address;
    await b.ctl.createNetwork({ name: "pt", driver: "macvlan", options: { parent: "uplinkt", macvlan_mode: "passthru" }, ipam: { config: [{ subnet: "10.213.0.0/24" }] } });
    // no other macvlan network may share a passthru parent
    await expectBerthError(
      b.ctl.createNetwork({ name: "pt2", driver: "macvlan", options: { parent: "uplinkt" }, ipam: { config: [{ subnet: "10.214.0.0/24" }] } }),
      { kind: "conflict", code: "parent-in-use", field: "Options.parent", message: "passthru" },
    );
    const t1 = b.containerNs();
    const t2 = b.containerNs();
    const et1 = await b.ctl.connect({ network: "pt", containerId: "t1", netns: t1 });
    expect(kindOf(t1, "eth0")?.linkinfo?.info_data?.mode).toBe("passthru");
    expect(kindOf(t1, "eth0")?.address).toBe(et1.mac.toString().toLowerCase());
    expect(link(b.sb.host, "uplinkt")!.address).toBe(et1.mac.toString().toLowerCase());
    expect(reachable(t1, seg.ip)).toBe(true);

    const before = await snapshot();
    await expectBerthError(b.ctl.connect({ network: "pt", containerId: "t2", netns: t2 }), {
      kind: "conflict",
      code: "passthru-single-endpoint",
      message: "exactly one endpoint",
    });
    expect(await snapshot()).toEqual(before);
    expect(linkNames(t2)).toEqual(["lo"]);
    expect(reachable(t1, seg.ip)).toBe(true);

    await b.ctl.disconnect("pt", "t1", t1);
    expect(link(b.sb.host, "uplinkt")!.address).toBe(parentMac!);
    // now the one place is free again
    await b.ctl.connect({ network: "pt", containerId: "t2", netns: t2 });
    expect(reachable(t2, seg.ip)).toBe(true);
    await b.ctl.disconnect("pt", "t2", t2);
    await b.ctl.deleteNetwork("pt");
  });

  test("an internal network gets no default route but still reaches its own segment", async () => {
    const seg = addSegment(b.sb, "uplinki", "10.215.0.1/24");
    await b.ctl.createNetwork({ name: "inner", driver: "macvlan", internal: true, options: { parent: "uplinki" }, ipam: { config: [{ subnet: "10.215.0.0/24" }] } });
    const ci = b.containerNs();
    const ei = await b.ctl.connect({ network: "inner", containerId: "ci", netns: ci });
    expect(ei.gateways).toEqual([]);
    expect(defaultRoute(ci)).toBeUndefined();
    expect(routes(ci).map((r) => r.dst)).toEqual(["10.215.0.0/24"]);
    expect(reachable(ci, seg.ip)).toBe(true);
  });

  test("IPv6: dual-stack containers ping each other and the segment over IPv6", async () => {
    const seg = addSegment(b.sb, "uplink6", "10.209.0.1/24");
    expect(Bun.spawnSync(["ip", "-n", seg.ns, "addr", "add", "fd00:209::1/64", "dev", "port0", "nodad"]).exitCode).toBe(0);
    await b.ctl.createNetwork({
      name: "lan6",
      driver: "macvlan",
      enableIPv6: true,
      options: { parent: "uplink6" },
      ipam: { config: [{ subnet: "10.209.0.0/24" }, { subnet: "fd00:209::/64" }] },
    });
    const [s1, s2] = [b.containerNs(), b.containerNs()];
    const es1 = await b.ctl.connect({ network: "lan6", containerId: "s1", netns: s1 });
    const es2 = await b.ctl.connect({ network: "lan6", containerId: "s2", netns: s2 });
    const v6 = (e: EndpointRecord) => e.addresses.find((a) => a.ip.family === 6)!.ip.toString();
    expect(v6(es1)).toBe("fd00:209::2");
    expect(reachable(s1, v6(es2))).toBe(true);
    expect(reachable(s2, "fd00:209::1")).toBe(true);
    expect(reachable(s1, ip(es2))).toBe(true);
    const r6 = JSON.parse(Bun.spawnSync(["ip", "-n", s1, "-6", "-j", "route", "show", "default"]).stdout.toString()) as { gateway?: string; dev?: string }[];
    expect(r6[0]).toMatchObject({ gateway: "fd00:209::1", dev: "eth0" });
  });

  test("a parent that vanished after network create: connect says so (not-found, Options.parent) and changes nothing", async () => {
    addSegment(b.sb, "uplinkx", "10.208.0.1/24");
    await b.ctl.createNetwork({ name: "gone", driver: "macvlan", options: { parent: "uplinkx" }, ipam: { config: [{ subnet: "10.208.0.0/24" }] } });
    expect(Bun.spawnSync(["ip", "-n", b.sb.host, "link", "del", "uplinkx"]).exitCode).toBe(0);
    const before = await snapshot();
    const cg = b.containerNs();
    await expectBerthError(b.ctl.connect({ network: "gone", containerId: "cg", netns: cg }), {
      kind: "not-found",
      code: "parent-not-found",
      field: "Options.parent",
      message: "uplinkx",
    });
    expect(await snapshot()).toEqual(before);
    expect(linkNames(cg)).toEqual(["lo"]);
    await b.ctl.deleteNetwork("gone");
  });

  test("bad input is refused with a clear error and changes nothing", async () => {
    const before = await snapshot();
    const net = (options: Record<string, string>, name = "bad") => ({ name, driver: "macvlan", options, ipam: { config: [{ subnet: "10.216.0.0/24" }] } });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "nosuch0" })), {
      kind: "not-found",
      code: "parent-not-found",
      field: "Options.parent",
      message: '"nosuch0" does not exist',
    });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "uplink0", macvlan_mode: "hairpin" })), {
      kind: "invalid",
      field: "Options.macvlan_mode",
      message: "bridge, private, vepa, passthru",
    });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "uplink0", ipvlan_mode: "l2" })), { kind: "invalid", code: "unknown-option", field: "Options.ipvlan_mode" });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "lo" })), { kind: "invalid", field: "Options.parent", message: "loopback" });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "has space" })), { kind: "invalid", field: "Options.parent" });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "nosuch0.10" })), { kind: "not-found", field: "Options.parent", message: '"nosuch0"' });
    // the kernel here has neither vlan nor dummy links: an 802.1Q parent or a missing parent is refused as unavailable
    if (!(await b.dp.linkKindSupported("vlan"))) {
      await expectBerthError(b.ctl.createNetwork(net({ parent: "uplink0.10" })), { kind: "unavailable", code: "vlan-unsupported", field: "Options.parent", message: "802.1Q" });
    }
    if (!(await b.dp.linkKindSupported("dummy"))) {
      await expectBerthError(b.ctl.createNetwork(net({})), { kind: "unavailable", code: "dummy-unsupported", field: "Options.parent" });
    }
    // macvlan cannot publish ports
    const cx = b.containerNs();
    await expectBerthError(b.ctl.connect({ network: "lan", containerId: "cx", netns: cx, ports: [{ hostIP: undefined, hostPort: 8080, containerPort: 80, protocol: "tcp" }] }), {
      kind: "invalid",
      code: "ports-unsupported",
    });
    expect(await snapshot()).toEqual(before);
    expect(linkNames(cx)).toEqual(["lo"]);
  });

  test("a failure half-way through join rolls everything back", async () => {
    const before = await snapshot();
    const cf = b.containerNs();
    for (const point of ["macvlan.createEndpoint:after-link", "macvlan.join:after-move", "macvlan.join:after-configure", "connect:after-join"]) {
      b.faults.arm(point);
      await expectBerthError(b.ctl.connect({ network: "lan", containerId: "cf", netns: cf }), { kind: "system", code: "injected-fault" });
      expect(await snapshot()).toEqual(before);
      expect(linkNames(cf)).toEqual(["lo"]);
    }
    // (the snapshot includes the address allocations: each one went back to the pool)
    await b.ctl.connect({ network: "lan", containerId: "cf", netns: cf });
    expect(reachable(cf, ip(e1))).toBe(true);
    await b.ctl.disconnect("lan", "cf", cf);
  });

  test("disconnect removes the child and releases the address; leave/delete are idempotent; network rm keeps the parent", async () => {
    const held = async () => (await b.store.allocations.list()).filter((a) => a.networkId === n1.id).map((a) => `${a.containerId}:${a.address}`);
    expect(await held()).toEqual(["c1:10.210.0.2", "c2:10.210.0.3"]);
    await b.ctl.disconnect("lan", "c2", c2);
    expect(await held()).toEqual(["c1:10.210.0.2"]);
    expect(linkNames(c2)).toEqual(["lo"]);
    expect(canPing(c1, ip(e2))).toBe(false);
    // idempotent teardown: a second leave/delete finds nothing and succeeds
    const d = b.ctl.driver("macvlan");
    await d.leave(n1, e2, { containerId: "c2", netns: c2 });
    await d.deleteEndpoint(n1, e2);
    await d.leave(n1, e2, { containerId: "c2", netns: `${c2}-gone` });
    const again = await b.ctl.connect({ network: "lan", containerId: "c2", netns: c2 });
    expect(reachable(c1, ip(again))).toBe(true);
    await b.ctl.disconnect("lan", "c2", c2);
    await b.ctl.disconnect("lan", "c1", c1);
    await b.ctl.deleteNetwork("lan");
    expect(await b.store.networks.find("lan")).toBeUndefined();
    expect(link(b.sb.host, "uplink0")?.flags).toContain("UP");
    expect(linkNames(b.sb.host).filter((n) => n.startsWith("mv"))).toEqual([]);
  });

  test("the Docker API creates macvlan networks (Driver: macvlan) and reports errors with the field", async () => {
    addSegment(b.sb, "uplinka", "10.217.0.1/24");
    const req = (method: string, path: string, body?: unknown) => route(b.ctl, b.rt, { method, path, query: new URLSearchParams(), body });
    const cr = await route(b.ctl, b.rt, {
      method: "POST",
      path: "/networks/create",
      query: new URLSearchParams(),
      body: { Name: "api-mv", Driver: "macvlan", Options: { parent: "uplinka", macvlan_mode: "bridge" }, IPAM: { Config: [{ Subnet: "10.217.0.0/24", Gateway: "10.217.0.1" }] } },
    });
    expect(cr.status).toBe(201);
    const ins = await req("GET", "/networks/api-mv");
    expect(ins.body).toMatchObject({ Driver: "macvlan", Options: { parent: "uplinka", macvlan_mode: "bridge" }, IPAM: { Config: [{ Subnet: "10.217.0.0/24", Gateway: "10.217.0.1" }] } });
    const bad = await req("POST", "/networks/create", { Name: "api-bad", Driver: "macvlan", Options: { parent: "eth9" } });
    expect(bad.status).toBe(404);
    expect(bad.body).toMatchObject({ kind: "not-found", code: "parent-not-found", field: "Options.parent" });
    expect((await req("DELETE", "/networks/api-mv")).status).toBe(204);
  });
});

describe("macvlan through berthd and the berth CLI", () => {
  let sb: Sandbox;
  beforeAll(() => {
    sb = createSandbox("mvcli");
  });
  afterAll(async () => {
    await sb?.cleanup();
  });

  test("berth network create -d macvlan -o parent=uplink0, then a container pings the LAN", async () => {
    const lan = addSegment(sb, "uplink0", "10.218.0.1/24");
    const d = await startDaemon(sb);
    try {
      const cr = d.cli("network", "create", "-d", "macvlan", "-o", "parent=uplink0", "--subnet", "10.218.0.0/24", "mvn");
      expect(cr.err).toBe("");
      expect(cr.code).toBe(0);
      const [n] = JSON.parse(d.cli("network", "inspect", "mvn").out);
      expect(n.Driver).toBe("macvlan");
      expect(n.Options).toEqual({ parent: "uplink0" });
      const r = d.cli("run", "--rm", "--network", "mvn", "--", "sh", "-c", `ip -o -4 addr show eth0; ping -c 1 -W 2 ${lan.ip} >/dev/null && echo reached`);
      expect(r.code).toBe(0);
      expect(r.out).toContain("10.218.0.2/24");
      expect(r.out).toContain("reached");
      const bad = d.cli("network", "create", "-d", "macvlan", "-o", "parent=nosuch0", "--subnet", "10.219.0.0/24", "mvbad");
      expect(bad.code).not.toBe(0);
      expect(bad.err).toContain("nosuch0");
      expect(d.cli("network", "rm", "mvn").code).toBe(0);
    } finally {
      await d.stop();
      new Cgroups({ parent: d.cgroupParent }).removeParent();
    }
  });
});
