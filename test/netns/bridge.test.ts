/**
 * The bridge driver with real packets: connectivity inside a network, isolation
 * between networks, gateway/default route, MAC and address on eth0, masquerade
 * towards an external client, MTU and bridge-name options, internal networks,
 * multi-network containers, disconnect and network deletion.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { addExternalClient, assertRootUntouched, canPing, ipJson, startEchoServer, tcpRoundTrip, reachable } from "../harness/sandbox.ts";
import type { EndpointRecord, NetworkRecord } from "../../src/store/types.ts";
import { addrsOf, defaultRoute, link, linkNames, nftElems, seenFrom } from "./util.ts";

assertRootUntouched();

const ip = (e: EndpointRecord, i = 0): string => e.addresses[i]!.ip.toString();
const bridgeOf = (n: NetworkRecord): string => (n.driverState as { bridge: string }).bridge;
const hostIfOf = (e: EndpointRecord): string => (e.driverState as { hostIfname: string }).hostIfname;

describe("bridge networks", () => {
  let b: TestBerth;
  let n1: NetworkRecord;
  let n2: NetworkRecord;
  let c1: string;
  let c2: string;
  let c3: string;
  let e1: EndpointRecord;
  let e2: EndpointRecord;
  let e3: EndpointRecord;
  let ext: { ns: string; hostIP: string; clientIP: string };

  beforeAll(async () => {
    b = await createTestBerth("br");
    n1 = await b.ctl.createNetwork({ name: "n1", ipam: { config: [{ subnet: "10.201.0.0/24" }] } });
    n2 = await b.ctl.createNetwork({ name: "n2", ipam: { config: [{ subnet: "10.202.0.0/24" }] } });
    c1 = b.containerNs();
    c2 = b.containerNs();
    c3 = b.containerNs();
    e1 = await b.ctl.connect({ network: "n1", containerId: "c1", netns: c1 });
    e2 = await b.ctl.connect({ network: "n1", containerId: "c2", netns: c2 });
    e3 = await b.ctl.connect({ network: "n2", containerId: "c3", netns: c3 });
    ext = addExternalClient(b.sb);
  });
  afterAll(async () => {
    await b?.close();
  });

  test("containers on one network ping each other and do a TCP round trip", async () => {
    expect(ip(e1)).toBe("10.201.0.2");
    expect(ip(e2)).toBe("10.201.0.3");
    expect(reachable(c1, ip(e2))).toBe(true);
    expect(reachable(c2, ip(e1))).toBe(true);
    const srv = await startEchoServer(b.sb, c2, "0.0.0.0", 7001);
    try {
      const reply = tcpRoundTrip(c1, ip(e2), 7001, "same-net");
      expect(reply).toBe(`echo:same-net from:${ip(e1)}`);
    } finally {
      await srv.stop();
    }
  });

  test("containers on different networks are isolated (ping and TCP fail)", async () => {
    // sanity: c3's own stack works (its gateway answers), so a failure below is isolation
    expect(reachable(c3, "10.202.0.1")).toBe(true);
    expect(canPing(c1, ip(e3))).toBe(false);
    expect(canPing(c3, ip(e1))).toBe(false);
    const srv1 = await startEchoServer(b.sb, c1, "0.0.0.0", 7002);
    const srv3 = await startEchoServer(b.sb, c3, "0.0.0.0", 7002);
    try {
      expect(tcpRoundTrip(c1, ip(e3), 7002, "x", 700)).toBeUndefined();
      expect(tcpRoundTrip(c3, ip(e1), 7002, "x", 700)).toBeUndefined();
      // and the servers do answer inside their own network / namespace
      expect(tcpRoundTrip(c2, ip(e1), 7002, "ok")).toBe(`echo:ok from:${ip(e2)}`);
      expect(tcpRoundTrip(c3, "127.0.0.1", 7002, "ok")).toBe("echo:ok from:127.0.0.1");
    } finally {
      await srv1.stop();
      await srv3.stop();
    }
  });

  test("the gateway is on the bridge and the container routes by default via it", () => {
    const br = bridgeOf(n1);
    const l = link(b.sb.host, br);
    expect(l?.linkinfo?.info_kind).toBe("bridge");
    expect(l?.flags).toContain("UP");
    expect(n1.ipam.pools[0]!.gateway?.toString()).toBe("10.201.0.1");
    expect(addrsOf(b.sb.host, br)).toContain("10.201.0.1/24");
    const def = defaultRoute(c1);
    expect(def?.gateway).toBe("10.201.0.1");
    expect(def?.dev).toBe("eth0");
    // the host veth end is a port of the bridge
    expect(link(b.sb.host, hostIfOf(e1))?.master).toBe(br);
  });

  test("the container's eth0 has the endpoint's MAC and address", () => {
    const eth0 = link(c1, "eth0");
    expect(eth0).toBeDefined();
    expect(eth0!.address).toBe(e1.mac.toString().toLowerCase());
    // Docker's scheme: the MAC follows the IPv4 address (02:42:<ip>)
    expect(e1.mac.toString().toLowerCase()).toBe("02:42:0a:c9:00:02");
    expect(eth0!.linkinfo?.info_kind).toBe("veth");
    expect(addrsOf(c1, "eth0")).toEqual([e1.addresses[0]!.toString()]);
    expect(e1.addresses[0]!.toString()).toBe("10.201.0.2/24");
  });

  test("IPv6 is off on an IPv4-only network's interface: no link-local address, no multicast flooded to the others", async () => {
    const v6 = (ns: string, dev: string) => ipJson<{ ifname: string; addr_info?: { family: string }[] }[]>(ns, "addr", "show", "dev", dev)[0]?.addr_info?.filter((a) => a.family === "inet6") ?? [];
    const sysctl = (ns: string, key: string) => Bun.spawnSync(["ip", "netns", "exec", ns, "cat", `/proc/sys/net/ipv6/conf/${key}/disable_ipv6`]).stdout.toString().trim();
    expect(sysctl(c1, "eth0")).toBe("1");
    expect(v6(c1, "eth0")).toEqual([]);
    // a container joining sends nothing of IPv6 (DAD, MLD, router solicitation) that the bridge would
    // flood to every port: c1's eth0 receives no new multicast while c4 comes up
    const rxMulticast = () => ipJson<{ ifname: string; stats64?: { rx?: { multicast?: number } } }[]>(c1, "-s", "link", "show", "dev", "eth0")[0]?.stats64?.rx?.multicast ?? -1;
    const before = rxMulticast();
    const c4 = b.containerNs();
    await b.ctl.connect({ network: "n1", containerId: "c4", netns: c4 });
    await Bun.sleep(1500);
    expect(rxMulticast()).toBe(before);
    await b.ctl.disconnect("n1", "c4", c4);
    // a dual-stack network keeps IPv6 on its interface
    await b.ctl.createNetwork({ name: "n6", enableIPv6: true, ipam: { config: [{ subnet: "10.206.0.0/24" }, { subnet: "fd00:206::/64" }] } });
    const c5 = b.containerNs();
    await b.ctl.connect({ network: "n6", containerId: "c5", netns: c5 });
    expect(sysctl(c5, "eth0")).toBe("0");
    expect(v6(c5, "eth0").length).toBeGreaterThan(0);
    await b.ctl.disconnect("n6", "c5", c5);
    await b.ctl.deleteNetwork("n6");
  });

  test("outbound traffic to an external client is masqueraded to the uplink address", async () => {
    const srv = await startEchoServer(b.sb, ext.ns, "0.0.0.0", 7003);
    try {
      const reply = tcpRoundTrip(c1, ext.clientIP, 7003, "out");
      expect(reply).toStartWith("echo:out from:");
      expect(seenFrom(reply)).toBe(ext.hostIP);
      expect(seenFrom(reply)).not.toBe(ip(e1));
      expect(reachable(c2, ext.clientIP)).toBe(true);
    } finally {
      await srv.stop();
    }
    // the network's subnet is in the masquerade set
    expect(nftElems(b.sb.host, "set", "nat4").join(" ")).toContain("10.201.0.0");
  });

  test("a second network gives eth1; reachability follows the networks", async () => {
    const e1b = await b.ctl.connect({ network: "n2", containerId: "c1", netns: c1 });
    expect(e1b.ifname).toBe("eth1");
    expect(addrsOf(c1, "eth1")).toEqual([e1b.addresses[0]!.toString()]);
    expect(e1b.addresses[0]!.toString()).toStartWith("10.202.0.");
    // the default route stays with the first network
    expect(defaultRoute(c1)?.gateway).toBe("10.201.0.1");
    // c1 and c3 share n2 now
    expect(reachable(c1, ip(e3))).toBe(true);
    expect(reachable(c3, ip(e1b))).toBe(true);
    const srv = await startEchoServer(b.sb, c3, "0.0.0.0", 7004);
    try {
      expect(tcpRoundTrip(c1, ip(e3), 7004, "multi")).toBe(`echo:multi from:${ip(e1b)}`);
      // c2 (only on n1) still cannot reach c3
      expect(tcpRoundTrip(c2, ip(e3), 7004, "x", 700)).toBeUndefined();
    } finally {
      await srv.stop();
    }
    expect(reachable(c1, ip(e2))).toBe(true);
    expect(canPing(c2, ip(e3))).toBe(false);
  });

  test("disconnect removes eth1, the host veth and releases the address", async () => {
    const [e1b] = (await b.store.endpoints.listByContainer("c1")).filter((e) => e.networkId === n2.id);
    expect(e1b).toBeDefined();
    const hostIf = hostIfOf(e1b!);
    expect(linkNames(b.sb.host)).toContain(hostIf);
    const usedBefore = (await b.ipam.utilisation(n2.id))[0]!.allocated;
    await b.ctl.disconnect("n2", "c1", c1);
    expect(linkNames(c1)).not.toContain("eth1");
    expect(linkNames(c1)).toContain("eth0");
    expect(linkNames(b.sb.host)).not.toContain(hostIf);
    expect((await b.ipam.utilisation(n2.id))[0]!.allocated).toBe(usedBefore - 1);
    expect((await b.store.allocations.list({ networkId: n2.id })).map((a) => a.address.toString())).not.toContain(ip(e1b!));
    expect(await b.store.endpoints.get(e1b!.id)).toBeUndefined();
    // the freed address can be requested again
    const c4 = b.containerNs();
    const e4 = await b.ctl.connect({ network: "n2", containerId: "c4", netns: c4, ipv4: e1b!.addresses[0]!.ip });
    expect(ip(e4)).toBe(ip(e1b!));
    expect(reachable(c3, ip(e4))).toBe(true);
    await b.ctl.disconnect("n2", "c4", c4);
    // and nothing answers on it any more
    expect(canPing(c3, ip(e1b!))).toBe(false);
  });

  test("MTU option sets the bridge and both veth ends", async () => {
    const n = await b.ctl.createNetwork({ name: "mtu", options: { "com.docker.network.driver.mtu": "1400" } });
    const c = b.containerNs();
    const e = await b.ctl.connect({ network: "mtu", containerId: "cm", netns: c });
    try {
      expect(link(b.sb.host, bridgeOf(n))?.mtu).toBe(1400);
      expect(link(b.sb.host, hostIfOf(e))?.mtu).toBe(1400);
      expect(link(c, "eth0")?.mtu).toBe(1400);
      // a network without the option keeps the default
      expect(link(b.sb.host, bridgeOf(n1))?.mtu).toBe(1500);
      expect(link(c1, "eth0")?.mtu).toBe(1500);
    } finally {
      await b.ctl.disconnect("mtu", "cm", c);
      await b.ctl.deleteNetwork("mtu");
    }
  });

  test("bridge name option names the bridge", async () => {
    const n = await b.ctl.createNetwork({ name: "named", options: { "com.docker.network.bridge.name": "brtest0" } });
    try {
      expect(bridgeOf(n)).toBe("brtest0");
      expect(link(b.sb.host, "brtest0")?.linkinfo?.info_kind).toBe("bridge");
      expect(nftElems(b.sb.host, "set", "bridges").join(" ")).toContain('"brtest0"');
    } finally {
      await b.ctl.deleteNetwork("named");
    }
    expect(link(b.sb.host, "brtest0")).toBeUndefined();
  });

  test("internal network: members reach each other, not the outside; no default route", async () => {
    const n = await b.ctl.createNetwork({ name: "intern", internal: true, ipam: { config: [{ subnet: "10.203.0.0/24" }] } });
    const ca = b.containerNs();
    const cb = b.containerNs();
    const ea = await b.ctl.connect({ network: "intern", containerId: "ia", netns: ca });
    const eb = await b.ctl.connect({ network: "intern", containerId: "ib", netns: cb });
    const srv = await startEchoServer(b.sb, ext.ns, "0.0.0.0", 7005);
    try {
      expect(reachable(ca, ip(eb))).toBe(true);
      expect(reachable(cb, ip(ea))).toBe(true);
      expect(defaultRoute(ca)).toBeUndefined();
      expect(defaultRoute(cb)).toBeUndefined();
      expect(ea.gateways).toEqual([]);
      expect(canPing(ca, ext.clientIP)).toBe(false);
      expect(tcpRoundTrip(ca, ext.clientIP, 7005, "x", 700)).toBeUndefined();
      // control: the external server answers a normal network's container
      expect(seenFrom(tcpRoundTrip(c1, ext.clientIP, 7005, "y"))).toBe(ext.hostIP);
      expect(nftElems(b.sb.host, "set", "internal").join(" ")).toContain(JSON.stringify(bridgeOf(n)));
      // internal subnets are never masqueraded
      expect(nftElems(b.sb.host, "set", "nat4").join(" ")).not.toContain("10.203.0.0");
    } finally {
      await srv.stop();
      await b.ctl.disconnect("intern", "ia", ca);
      await b.ctl.disconnect("intern", "ib", cb);
      await b.ctl.deleteNetwork("intern");
    }
  });

  test("deleteNetwork removes the bridge and its nft set elements", async () => {
    const n = await b.ctl.createNetwork({ name: "gone", ipam: { config: [{ subnet: "10.204.0.0/24" }] } });
    const br = bridgeOf(n);
    const c = b.containerNs();
    await b.ctl.connect({ network: "gone", containerId: "cg", netns: c });
    expect(link(b.sb.host, br)).toBeDefined();
    expect(nftElems(b.sb.host, "set", "bridges").join(" ")).toContain(JSON.stringify(br));
    expect(nftElems(b.sb.host, "set", "bridge_pairs").join(" ")).toContain(JSON.stringify(br));
    expect(nftElems(b.sb.host, "set", "nat4").join(" ")).toContain("10.204.0.0");
    await b.ctl.disconnect("gone", "cg", c);
    await b.ctl.deleteNetwork("gone");
    expect(link(b.sb.host, br)).toBeUndefined();
    expect(nftElems(b.sb.host, "set", "bridges").join(" ")).not.toContain(JSON.stringify(br));
    expect(nftElems(b.sb.host, "set", "bridge_pairs").join(" ")).not.toContain(JSON.stringify(br));
    expect(nftElems(b.sb.host, "set", "nat4").join(" ")).not.toContain("10.204.0.0");
    expect(await b.store.networks.find("gone")).toBeUndefined();
    expect(await b.store.allocations.list({ networkId: n.id })).toEqual([]);
    // the other networks' elements are still there
    expect(nftElems(b.sb.host, "set", "bridges").join(" ")).toContain(JSON.stringify(bridgeOf(n1)));
  });
});
