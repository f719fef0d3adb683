/**
 * The rtnetlink dataplane (src/dataplane/netlink/) against the real kernel: every
 * IpBatch operation executed over netlink and read back with `ip -j`, a bridge
 * built purely over netlink carrying pings, iproute2-shaped errors, and the
 * netlink reads equal to the `ip -j` reads (BERTH_DATAPLANE=ip backend).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { IP, IPNet, MAC, Prefix } from "../../src/net/index.ts";
import { assertRootUntouched, createSandbox, ipJson, type Sandbox, reachable } from "../harness/sandbox.ts";

assertRootUntouched();

interface DLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  txqlen?: number;
  address?: string;
  master?: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string; info_slave_data?: Record<string, unknown> };
}
interface DAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number; broadcast?: string; scope: string; tentative?: boolean; nodad?: boolean }[];
}
interface DRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
  scope?: string;
  metrics?: Record<string, number>[];
}
interface DNeigh {
  dst: string;
  dev: string;
  lladdr?: string;
  state?: string[];
}

const dlink = (ns: string, dev: string): DLink | undefined => ipJson<DLink[]>(ns, "-d", "link", "show").find((l) => l.ifname === dev);
const addrs = (ns: string, dev: string): DAddr["addr_info"] => ipJson<DAddr[]>(ns, "addr", "show").find((l) => l.ifname === dev)?.addr_info ?? [];

const nl = new Dataplane({ linkBackend: "netlink" });
const ipdp = new Dataplane({ linkBackend: "ip" });
let sb: Sandbox;
let host: string;
let c1: string;
let c2: string;
let c3: string;
const MACVLAN_OK = await new Dataplane().linkKindSupported("macvlan");
const VLAN_OK = await new Dataplane().linkKindSupported("vlan");
const IPVLAN_OK = await new Dataplane().linkKindSupported("ipvlan");

beforeAll(() => {
  sb = createSandbox("nl");
  host = sb.host;
  c1 = sb.netns("c");
  c2 = sb.netns("c");
  c3 = sb.netns("c");
});
afterAll(async () => {
  await sb.cleanup();
});

describe("rtnetlink dataplane", () => {
  test("a bridge with two containers made purely over netlink carries pings (v4 and v6)", async () => {
    await nl.apply(
      nl
        .batch(host)
        .addBridge("nlbr0", { mtu: 1450, mac: MAC.parse("02:42:0a:4d:00:01") })
        .addAddress("nlbr0", IPNet.parse("10.77.0.1/24"), { broadcast: true })
        .addAddress("nlbr0", IPNet.parse("fd77::1/64"), { noDad: true })
        .setUp("nlbr0")
        .addVeth("nlv1", "eth0", { mtu: 1450, mac: MAC.parse("02:00:00:00:01:01"), peerMac: MAC.parse("02:00:00:00:01:02"), peerNetns: c1 })
        .addVeth("nlv2", "eth0", { mtu: 1450, peerNetns: `/run/netns/${c2}` })
        .setMaster("nlv1", "nlbr0")
        .setMaster("nlv2", "nlbr0")
        .setHairpin("nlv1", true)
        .setIsolated("nlv2", false)
        .setUp("nlv1")
        .setUp("nlv2"),
    );
    for (const [ns, ip] of [
      [c1, "2"],
      [c2, "3"],
    ] as const) {
      await nl.apply(
        nl
          .batch(ns)
          .addAddress("eth0", IPNet.parse(`10.77.0.${ip}/24`), { broadcast: true })
          .addAddress("eth0", IPNet.parse(`fd77::${ip}/64`), { noDad: true })
          .setUp("eth0")
          .addRoute({ via: IP.parse("10.77.0.1") })
          .addRoute({ dst: Prefix.parse("10.88.0.0/16"), via: IP.parse("10.77.0.1"), metric: 7, mtu: 1400, advmss: 1360 })
          .addRoute({ family: 6, via: IP.parse("fd77::1"), dev: "eth0" }),
      );
    }

    const br = dlink(host, "nlbr0");
    expect(br?.linkinfo?.info_kind).toBe("bridge");
    expect(br?.linkinfo?.info_data?.stp_state).toBe(0);
    expect(br?.linkinfo?.info_data?.forward_delay).toBe(0);
    expect(br?.flags).toContain("UP");
    const v1 = dlink(host, "nlv1");
    expect(v1?.master).toBe("nlbr0");
    expect(v1?.mtu).toBe(1450);
    expect(v1?.address).toBe("02:00:00:00:01:01");
    expect(v1?.linkinfo?.info_slave_data?.hairpin).toBe(true);
    expect(dlink(host, "nlv2")?.linkinfo?.info_slave_data?.isolated).toBe(false);
    const e1 = dlink(c1, "eth0");
    expect(e1?.address).toBe("02:00:00:00:01:02");
    expect(e1?.mtu).toBe(1450);
    expect(dlink(c2, "eth0")?.linkinfo?.info_kind).toBe("veth");

    const a = addrs(c1, "eth0");
    expect(a.find((x) => x.local === "10.77.0.2")).toMatchObject({ prefixlen: 24, broadcast: "10.77.0.255", scope: "global" });
    const v6 = a.find((x) => x.local === "fd77::2");
    expect(v6?.nodad).toBe(true);
    expect(v6?.tentative).toBeUndefined();
    const r = ipJson<DRoute[]>(c1, "route", "show");
    expect(r.find((x) => x.dst === "default")).toMatchObject({ gateway: "10.77.0.1", dev: "eth0" });
    expect(r.find((x) => x.dst === "10.88.0.0/16")).toMatchObject({ gateway: "10.77.0.1", metric: 7, metrics: [{ mtu: 1400, advmss: 1360 }] });
    expect(ipJson<DRoute[]>(c1, "-6", "route", "show").find((x) => x.dst === "default")).toMatchObject({ gateway: "fd77::1", dev: "eth0" });

    expect(reachable(c1, "10.77.0.3")).toBe(true);
    expect(reachable(c2, "10.77.0.1")).toBe(true);
    expect(reachable(c1, "fd77::3")).toBe(true);
  });

  test("netlink reads equal the ip -j reads", async () => {
    for (const ns of [host, c1]) {
      expect(JSON.stringify(await nl.links(ns))).toBe(JSON.stringify(await ipdp.links(ns)));
      expect(JSON.stringify(await nl.addresses(ns))).toBe(JSON.stringify(await ipdp.addresses(ns)));
      for (const f of [4, 6] as const) expect(JSON.stringify(await nl.routes(ns, f))).toBe(JSON.stringify(await ipdp.routes(ns, f)));
    }
    expect(JSON.stringify(await nl.addresses(c1, "eth0"))).toBe(JSON.stringify(await ipdp.addresses(c1, "eth0")));
    expect(JSON.stringify(await nl.link(host, "nlv1"))).toBe(JSON.stringify(await ipdp.link(host, "nlv1")));
    expect(await nl.link(host, "nope0")).toBeUndefined();
    expect(JSON.stringify(await nl.linkWithAddresses(c1, "eth0"))).toBe(JSON.stringify(await ipdp.linkWithAddresses(c1, "eth0")));
    expect(await nl.linkWithAddresses(c1, "nope0")).toBeUndefined();
    for (const f of [4, 6] as const) {
      expect(await nl.linkAndDefaultRoute(c1, "eth0", f)).toEqual(await ipdp.linkAndDefaultRoute(c1, "eth0", f));
      expect(await nl.linkAndDefaultRoute(host, "nope0", f)).toEqual(await ipdp.linkAndDefaultRoute(host, "nope0", f));
    }
    expect((await nl.link(host, "nlv1"))?.master).toBe("nlbr0");
    for (const ns of [host, c1]) {
      expect(await nl.linkKinds(ns)).toEqual(await ipdp.linkKinds(ns));
      const before = await ipdp.linkStats(ns);
      const after = await nl.linkStats(ns);
      expect(after.map((l) => l.name)).toEqual(before.map((l) => l.name));
      for (const [i, l] of after.entries()) {
        const b = before[i];
        if (!b) throw new Error("missing");
        for (const k of ["rxBytes", "rxPackets", "rxDropped", "rxErrors", "txBytes", "txPackets", "txDropped", "txErrors"] as const) expect(l[k]).toBeGreaterThanOrEqual(b[k]);
      }
      expect(after.find((l) => l.name === (ns === host ? "nlv1" : "eth0"))?.rxPackets).toBeGreaterThan(0);
    }
    expect(await nl.linkKind(host, "nlv1")).toEqual(await ipdp.linkKind(host, "nlv1"));
    expect(await nl.linkKind(host, "nope0")).toBeUndefined();
  });

  test("link set: promisc, allmulticast, txqueuelen, mtu, address, rename, down, nomaster, netns (name, path)", async () => {
    await nl.apply(nl.batch(host).addVeth("nlx0", "nlx1").addVeth("nly0", "nly1").setMaster("nlx0", "nlbr0"));
    await nl.apply(
      nl
        .batch(host)
        .setPromisc("nlx0", true)
        .setAllmulticast("nlx0", true)
        .setTxQueueLen("nlx0", 321)
        .setMtu("nlx0", 1280)
        .setMac("nlx0", MAC.parse("02:aa:bb:cc:dd:ee"))
        .setUp("nlx0")
        .setNoMaster("nlx0")
        .rename("nlx0", "nlrenamed")
        .setUp("nlrenamed")
        .setDown("nlrenamed")
        .moveToNetns("nlx1", c3)
        .moveToNetns("nly1", `/run/netns/${c3}`),
    );
    const l = dlink(host, "nlrenamed");
    expect(l?.flags).toContain("PROMISC");
    expect(l?.flags).toContain("ALLMULTI");
    expect(l?.flags).not.toContain("UP");
    expect(l?.txqlen).toBe(321);
    expect(l?.mtu).toBe(1280);
    expect(l?.address).toBe("02:aa:bb:cc:dd:ee");
    expect(l?.master).toBeUndefined();
    expect(dlink(host, "nlx0")).toBeUndefined();
    expect(dlink(c3, "nlx1")).toBeDefined();
    expect(dlink(c3, "nly1")).toBeDefined();
    const got = await nl.link(host, "nlrenamed");
    expect(got).toMatchObject({ promisc: true, allmulti: true, txqlen: 321, mtu: 1280, up: false });
    expect(got?.mac?.toString()).toBe("02:aa:bb:cc:dd:ee");
  });

  test("address replace/delete, route replace/delete, neighbour replace/delete", async () => {
    const b = nl.batch(c3).setUp("nlx1");
    b.replaceAddress("nlx1", IPNet.parse("10.66.0.2/24")).replaceAddress("nlx1", IPNet.parse("10.66.0.2/24"));
    b.addAddress("nlx1", IPNet.parse("10.66.0.9/24")).deleteAddress("nlx1", IPNet.parse("10.66.0.9/24"));
    b.replaceRoute({ dst: Prefix.parse("10.67.0.0/24"), dev: "nlx1", scope: "link" }).replaceRoute({ dst: Prefix.parse("10.67.0.0/24"), via: IP.parse("10.66.0.1") });
    b.addRoute({ dst: Prefix.parse("10.69.0.0/24"), via: IP.parse("10.66.0.1"), metric: 5 });
    b.addRoute({ dst: Prefix.parse("10.68.0.0/24"), dev: "nlx1", src: IP.parse("10.66.0.2") }).deleteRoute({ dst: Prefix.parse("10.68.0.0/24") });
    b.replaceNeighbour("nlx1", IP.parse("10.66.0.7"), MAC.parse("02:00:00:00:07:07")).replaceNeighbour("nlx1", IP.parse("10.66.0.8"), MAC.parse("02:00:00:00:08:08"));
    b.deleteNeighbour("nlx1", IP.parse("10.66.0.8"));
    await nl.apply(b);
    expect(addrs(c3, "nlx1").filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`)).toEqual(["10.66.0.2/24"]);
    expect(addrs(c3, "nlx1").some((a) => a.local === "10.66.0.9")).toBe(false);
    const r = ipJson<DRoute[]>(c3, "route", "show");
    expect(r.filter((x) => x.dst === "10.67.0.0/24")).toEqual([expect.objectContaining({ gateway: "10.66.0.1" })]);
    expect(r.find((x) => x.dst === "10.69.0.0/24")).toMatchObject({ gateway: "10.66.0.1", metric: 5 });
    expect(r.some((x) => x.dst === "10.68.0.0/24")).toBe(false);
    const n = ipJson<DNeigh[]>(c3, "neigh", "show");
    expect(n.find((x) => x.dst === "10.66.0.7")).toMatchObject({ lladdr: "02:00:00:00:07:07", dev: "nlx1", state: ["PERMANENT"] });
    expect(n.some((x) => x.dst === "10.66.0.8")).toBe(false);
  });

  test.skipIf(!MACVLAN_OK)("macvlan created straight into another namespace", async () => {
    await nl.apply(nl.batch(host).addVeth("nlp0", "nlp1").setUp("nlp0").addMacvlan("nlmv0", "nlp0", "bridge", { mtu: 1400, mac: MAC.parse("02:00:00:00:0a:01"), netns: c3 }));
    const m = dlink(c3, "nlmv0");
    expect(m?.linkinfo?.info_kind).toBe("macvlan");
    expect(m?.linkinfo?.info_data?.mode).toBe("bridge");
    expect(m?.address).toBe("02:00:00:00:0a:01");
    expect(m?.mtu).toBe(1400);
    await nl.apply(nl.batch(host).addMacvlan("nlmv1", "nlp0", "private"));
    expect((await ipdp.linkKind(host, "nlmv1"))?.mode).toBe("private");
    expect(await nl.linkKind(host, "nlmv1")).toEqual(await ipdp.linkKind(host, "nlmv1"));
    expect(await nl.linkKinds(c3)).toEqual(await ipdp.linkKinds(c3));
  });

  test.skipIf(!VLAN_OK)("vlan sub-interface", async () => {
    await nl.apply(nl.batch(host).addVeth("nlq0", "nlq1").addVlan("nlq0.42", "nlq0", 42));
    const k = await ipdp.linkKind(host, "nlq0.42");
    expect(k).toMatchObject({ kind: "vlan", vlanId: 42, parent: "nlq0" });
    expect(await nl.linkKind(host, "nlq0.42")).toEqual(k);
  });

  test.skipIf(!IPVLAN_OK)("ipvlan child with mode and flag", async () => {
    await nl.apply(nl.batch(host).addVeth("nli0", "nli1").addIpvlan("nliv0", "nli0", "l3", "private"));
    expect(await ipdp.linkKind(host, "nliv0")).toMatchObject({ kind: "ipvlan", mode: "l3", flag: "private" });
    expect(await nl.linkKind(host, "nliv0")).toEqual(await ipdp.linkKind(host, "nliv0"));
  });

  test("vxlan device (no learning, proxy, local address, underlay device, port)", async () => {
    let ok = true;
    try {
      await nl.apply(nl.batch(host).addVxlan("nlvx0", { vni: 4242, local: IP.parse("10.77.0.1"), dev: "nlbr0", dstport: 4789, mtu: 1400, proxy: true }));
    } catch (e) {
      // a kernel without vxlan says so the way iproute2 reports it
      expect((e as Error).message).toMatch(/Unknown device type/);
      ok = false;
    }
    if (!ok) return;
    const d = dlink(host, "nlvx0")?.linkinfo?.info_data ?? {};
    expect(d).toMatchObject({ id: 4242, local: "10.77.0.1", link: "nlbr0", port: 4789, learning: false, proxy: true });
    expect(dlink(host, "nlvx0")?.mtu).toBe(1400);
  });

  test("errors read like iproute2's and stop the batch at the failing line", async () => {
    const fail = async (f: () => Promise<void>): Promise<string> => {
      try {
        await f();
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error("did not fail");
    };
    const exists = await fail(() => nl.apply(nl.batch(host).addBridge("nlbr0").setUp("nlbr9")));
    expect(exists).toBe(`ip link add name nlbr0 type bridge stp_state 0 forward_delay 0 (netns ${host}): RTNETLINK answers: File exists`);
    const missing = await fail(() => nl.apply(nl.batch(host).addBridge("nlbr8").setUp("nope0").addBridge("nlbr7")));
    expect(missing).toBe(`ip link set dev nope0 up (netns ${host}): Cannot find device "nope0"`);
    expect(dlink(host, "nlbr8")).toBeDefined();
    expect(dlink(host, "nlbr7")).toBeUndefined();
    expect(await fail(() => nl.apply(nl.batch(host).setMaster("nlbr8", "nope0")))).toMatch(/Device does not exist/);
    expect(await fail(() => nl.apply(nl.batch(host).addAddress("nlbr0", IPNet.parse("10.77.0.1/24"))))).toMatch(/Address already assigned/);
    expect(await fail(() => nl.apply(nl.batch(host).deleteRoute({ dst: Prefix.parse("10.99.0.0/24") })))).toMatch(/No such process/);
    expect(await fail(() => nl.apply(nl.batch(host).moveToNetns("nlbr8", "no-such-ns-zz")))).toMatch(/Invalid "netns" value/);
    expect(await fail(() => nl.apply(nl.batch("no-such-ns-zz").setUp("lo")))).toMatch(/Cannot open network namespace/);
    // the ip backend words the same failures the same way
    expect(await fail(() => ipdp.apply(ipdp.batch(host).addBridge("nlbr0").setUp("nlbr9")))).toBe(exists);
    expect(await fail(() => ipdp.apply(ipdp.batch(host).setUp("nope0")))).toBe(`ip link set dev nope0 up (netns ${host}): Cannot find device "nope0"`);
  });

  test("deleteLinks: removes links, a missing one is success; link del in a batch", async () => {
    await nl.apply(nl.batch(host).addBridge("nld0").addBridge("nld1").addBridge("nld2"));
    expect(await nl.deleteLinks(host, ["nld0", "nope0", "nld1"])).toEqual([]);
    expect(dlink(host, "nld0")).toBeUndefined();
    expect(dlink(host, "nld1")).toBeUndefined();
    await nl.apply(nl.batch(host).deleteLink("nld2"));
    expect(dlink(host, "nld2")).toBeUndefined();
    // the veth's peer in c1 goes with it
    expect(await nl.deleteLinks(host, ["nlv1"])).toEqual([]);
    expect(dlink(c1, "eth0")).toBeUndefined();
  });

  test("BERTH_DATAPLANE=ip selects the iproute2 backend", () => {
    const r = Bun.spawnSync([process.execPath, "-e", 'import { Dataplane } from "./src/dataplane/dataplane.ts"; console.log(new Dataplane().linkBackend)'], {
      cwd: `${import.meta.dir}/../..`,
      env: { ...process.env, BERTH_DATAPLANE: "ip" },
    });
    expect(r.stdout.toString().trim()).toBe("ip");
    expect(new Dataplane().linkBackend).toBe(process.env.BERTH_DATAPLANE === "ip" ? "ip" : "netlink");
  });
});
