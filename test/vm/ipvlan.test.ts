/**
 * The ipvlan driver with real packets. This machine's kernel has no ipvlan (nor
 * vlan, nor dummy), so this file runs ONLY inside a VM booting Debian's stock
 * kernel: test/netns/ipvlan-vm.test.ts runs
 *   run-in-vm.sh -- bun test test/vm/        (with BERTH_IN_VM=1 exported)
 * once for the whole folder. Without BERTH_IN_VM=1 every test here is skipped, so
 * the normal suite's discovery (`bun test` on the host) never runs it directly.
 *
 * Parents are veth ends in the sandbox host whose peers sit in "external segment"
 * namespaces; ONE parent per mode, because the kernel keeps the ipvlan mode per
 * parent (see /work/shared/reference/kernel-vm.md).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { EndpointRecord, NetworkRecord } from "../../src/store/types.ts";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { assertRootUntouched, canPing, startEchoServer, tcpRoundTrip, reachable } from "../harness/sandbox.ts";
import { addSegment, type Segment } from "../harness/segment.ts";
import { defaultRoute, expectBerthError, link, linkNames, links, nftTableText, seenFrom } from "../netns/util.ts";

const IN_VM = process.env.BERTH_IN_VM === "1";
/** Everything is 20-30x slower under TCG emulation. */
const T = 120_000;

assertRootUntouched();

interface JIpvlan {
  ifname: string;
  address?: string;
  linkinfo?: { info_kind?: string; info_data?: { mode?: string; private?: boolean; vepa?: boolean; id?: number } };
}
const dlink = (ns: string, dev: string): JIpvlan | undefined => links(ns).find((l) => l.ifname === dev) as JIpvlan | undefined;
const ip = (e: EndpointRecord): string => e.addresses[0]!.ip.toString();
const mac = (s: string | undefined): string => (s ?? "").toLowerCase();

/** The tests of this file as one describe inside the VM; on the host a single skipped placeholder. */
function vmOnly(name: string, body: () => void): void {
  if (IN_VM) describe(name, body);
  else test.skip(`${name}: runs only inside the VM (BERTH_IN_VM=1, see test/netns/ipvlan-vm.test.ts)`, () => {});
}

vmOnly("ipvlan networks (Debian kernel in a VM)", () => {
  let b: TestBerth;
  let seg0: Segment;
  let l2: NetworkRecord;
  let c1: string;
  let c2: string;
  let e1: EndpointRecord;
  let e2: EndpointRecord;

  const snapshot = async () => ({
    networks: (await b.store.networks.list()).map((n) => n.name).sort(),
    addresses: (await b.store.allocations.list()).map((a) => `${a.containerId}:${a.address}`).sort(),
    hostLinks: linkNames(b.sb.host),
    nft: nftTableText(b.sb.host),
  });
  const subnet = (s: string) => ({ config: [{ subnet: s }] });

  beforeAll(async () => {
    b = await createTestBerth("iv");
    seg0 = addSegment(b.sb, "uplink0", "10.220.0.1/24");
    l2 = await b.ctl.createNetwork({ name: "l2net", driver: "ipvlan", options: { parent: "uplink0" }, ipam: subnet("10.220.0.0/24") });
    c1 = b.containerNs();
    c2 = b.containerNs();
    e1 = await b.ctl.connect({ network: "l2net", containerId: "c1", netns: c1 });
    e2 = await b.ctl.connect({ network: "l2net", containerId: "c2", netns: c2 });
  }, T);
  afterAll(async () => {
    await b?.close();
  }, T);

  test(
    "l2 (the default): containers ping each other and the segment; mode read back with ip -d; MAC is the parent's",
    async () => {
      expect(l2.driverState).toEqual({ parent: "uplink0", mode: "l2", flag: "bridge" });
      expect(reachable(c1, ip(e2))).toBe(true);
      expect(reachable(c2, ip(e1))).toBe(true);
      expect(reachable(c1, seg0.ip)).toBe(true);
      const srv = await startEchoServer(b.sb, seg0.ns, "0.0.0.0", 7201);
      try {
        expect(seenFrom(tcpRoundTrip(c2, seg0.ip, 7201, "l2", 5000))).toBe(ip(e2));
      } finally {
        await srv.stop();
      }
      const eth0 = dlink(c1, "eth0");
      expect(eth0?.linkinfo?.info_kind).toBe("ipvlan");
      expect(eth0?.linkinfo?.info_data?.mode).toBe("l2");
      expect(eth0?.linkinfo?.info_data?.private).toBeUndefined();
      // ipvlan children share the parent's MAC, and the endpoint record says so
      const parentMac = mac(link(b.sb.host, "uplink0")?.address);
      expect(mac(eth0?.address)).toBe(parentMac);
      expect(mac(e1.mac.toString())).toBe(parentMac);
      expect(defaultRoute(c1)).toMatchObject({ gateway: "10.220.0.1", dev: "eth0" });
      expect(linkNames(b.sb.host).filter((n) => n.startsWith("iv"))).toEqual([]);
    },
    T,
  );

  test(
    "l3: containers ping each other, also across subnets on one parent; default route through the device, no gateway",
    async () => {
      addSegment(b.sb, "uplink1", "10.221.0.254/24");
      const a = await b.ctl.createNetwork({ name: "l3a", driver: "ipvlan", options: { parent: "uplink1", ipvlan_mode: "l3" }, ipam: subnet("10.221.0.0/24") });
      await b.ctl.createNetwork({ name: "l3b", driver: "ipvlan", options: { parent: "uplink1", ipvlan_mode: "l3" }, ipam: subnet("10.222.0.0/24") });
      expect(a.driverState).toMatchObject({ parent: "uplink1", mode: "l3" });
      const [c3, c4, c5] = [b.containerNs(), b.containerNs(), b.containerNs()];
      const e3 = await b.ctl.connect({ network: "l3a", containerId: "c3", netns: c3 });
      const e4 = await b.ctl.connect({ network: "l3a", containerId: "c4", netns: c4 });
      const e5 = await b.ctl.connect({ network: "l3b", containerId: "c5", netns: c5 });
      expect(dlink(c3, "eth0")?.linkinfo?.info_data?.mode).toBe("l3");
      expect(dlink(c5, "eth0")?.linkinfo?.info_data?.mode).toBe("l3");
      expect(reachable(c3, ip(e4))).toBe(true);
      expect(reachable(c4, ip(e3))).toBe(true);
      // the parent routes between its children: another subnet is reachable without a router
      expect(reachable(c5, ip(e3))).toBe(true);
      expect(reachable(c3, ip(e5))).toBe(true);
      const def = defaultRoute(c3);
      expect(def?.dev).toBe("eth0");
      expect(def?.gateway).toBeUndefined();
    },
    T,
  );

  test(
    "l3s: containers ping each other; the flag private keeps l2 children apart while both still reach the segment",
    async () => {
      addSegment(b.sb, "uplink2", "10.223.0.254/24");
      await b.ctl.createNetwork({ name: "l3s", driver: "ipvlan", options: { parent: "uplink2", ipvlan_mode: "l3s" }, ipam: subnet("10.223.0.0/24") });
      const [c6, c7] = [b.containerNs(), b.containerNs()];
      const e6 = await b.ctl.connect({ network: "l3s", containerId: "c6", netns: c6 });
      const e7 = await b.ctl.connect({ network: "l3s", containerId: "c7", netns: c7 });
      expect(dlink(c6, "eth0")?.linkinfo?.info_data?.mode).toBe("l3s");
      expect(reachable(c6, ip(e7))).toBe(true);
      expect(reachable(c7, ip(e6))).toBe(true);

      const seg = addSegment(b.sb, "uplink3", "10.224.0.1/24");
      await b.ctl.createNetwork({ name: "priv", driver: "ipvlan", options: { parent: "uplink3", ipvlan_flag: "private" }, ipam: subnet("10.224.0.0/24") });
      const [c8, c9] = [b.containerNs(), b.containerNs()];
      const e8 = await b.ctl.connect({ network: "priv", containerId: "c8", netns: c8 });
      const e9 = await b.ctl.connect({ network: "priv", containerId: "c9", netns: c9 });
      expect(dlink(c8, "eth0")?.linkinfo?.info_data).toMatchObject({ mode: "l2", private: true });
      expect(reachable(c8, seg.ip)).toBe(true);
      expect(reachable(c9, seg.ip)).toBe(true);
      expect(canPing(c8, ip(e9))).toBe(false);
      expect(canPing(c9, ip(e8))).toBe(false);
    },
    T,
  );

  test(
    "a second mode (or flag) on one parent is refused: nothing changes and the existing children keep their mode",
    async () => {
      const before = await snapshot();
      await expectBerthError(
        b.ctl.createNetwork({ name: "l3clash", driver: "ipvlan", options: { parent: "uplink0", ipvlan_mode: "l3" }, ipam: subnet("10.230.0.0/24") }),
        { kind: "conflict", code: "ipvlan-mode-conflict", field: "Options.ipvlan_mode", message: "l2net in ipvlan mode l2" },
      );
      await expectBerthError(
        b.ctl.createNetwork({ name: "flagclash", driver: "ipvlan", options: { parent: "uplink0", ipvlan_flag: "vepa" }, ipam: subnet("10.230.0.0/24") }),
        { kind: "conflict", code: "ipvlan-mode-conflict", field: "Options.ipvlan_flag" },
      );
      await expectBerthError(
        b.ctl.createNetwork({ name: "mvclash", driver: "macvlan", options: { parent: "uplink0" }, ipam: subnet("10.230.0.0/24") }),
        { kind: "conflict", code: "parent-in-use", field: "Options.parent" },
      );
      expect(await snapshot()).toEqual(before);
      expect(dlink(c1, "eth0")?.linkinfo?.info_data?.mode).toBe("l2");
      expect(dlink(c2, "eth0")?.linkinfo?.info_data?.mode).toBe("l2");
      expect(reachable(c1, ip(e2))).toBe(true);

      // an ipvlan link that is not Berth's counts too (the kernel would switch it)
      addSegment(b.sb, "uplink4", "10.231.0.254/24");
      const r = Bun.spawnSync(["ip", "-n", b.sb.host, "link", "add", "link", "uplink4", "name", "foreign0", "type", "ipvlan", "mode", "l3"]);
      expect(r.exitCode).toBe(0);
      await expectBerthError(b.ctl.createNetwork({ name: "fclash", driver: "ipvlan", options: { parent: "uplink4" }, ipam: subnet("10.231.0.0/24") }), {
        kind: "conflict",
        code: "ipvlan-mode-conflict",
        message: "foreign0",
      });
      expect(dlink(b.sb.host, "foreign0")?.linkinfo?.info_data?.mode).toBe("l3");
      // the same mode on the same parent is fine
      await b.ctl.createNetwork({ name: "l2more", driver: "ipvlan", options: { parent: "uplink0", ipvlan_mode: "l2" }, ipam: subnet("10.232.0.0/24") });
      await b.ctl.deleteNetwork("l2more");
      expect(link(b.sb.host, "uplink0")).toBeDefined();
    },
    T,
  );

  test(
    "parent eth.N creates an 802.1Q sub-interface (shared by networks on it, deleted with the last); no parent creates a dummy",
    async () => {
      const seg = addSegment(b.sb, "uplink5", "10.225.0.1/24", { vlan: 30 });
      const v1 = await b.ctl.createNetwork({ name: "vl1", driver: "ipvlan", options: { parent: "uplink5.30" }, ipam: subnet("10.225.0.0/24") });
      expect(v1.driverState).toMatchObject({ parent: "uplink5.30", createdParent: "vlan" });
      const sub = dlink(b.sb.host, "uplink5.30");
      expect(sub?.linkinfo?.info_kind).toBe("vlan");
      expect(sub?.linkinfo?.info_data?.id).toBe(30);
      const cv = b.containerNs();
      await b.ctl.connect({ network: "vl1", containerId: "cv", netns: cv });
      expect(reachable(cv, seg.ip)).toBe(true); // tagged frames reach the VLAN 30 interface on the other side
      const v2 = await b.ctl.createNetwork({ name: "vl2", driver: "ipvlan", options: { parent: "uplink5.30" }, ipam: subnet("10.226.0.0/24") });
      expect(v2.driverState).toMatchObject({ parent: "uplink5.30", createdParent: "vlan" });
      await b.ctl.disconnect("vl1", "cv", cv);
      await b.ctl.deleteNetwork("vl1");
      expect(link(b.sb.host, "uplink5.30")).toBeDefined();
      await b.ctl.deleteNetwork("vl2");
      expect(link(b.sb.host, "uplink5.30")).toBeUndefined();
      expect(link(b.sb.host, "uplink5")).toBeDefined();

      const iso = await b.ctl.createNetwork({ name: "iso", driver: "ipvlan", ipam: subnet("10.227.0.0/24") });
      const dm = `dm-${iso.id.slice(0, 12)}`;
      expect(iso.driverState).toMatchObject({ parent: dm, createdParent: "dummy" });
      expect(dlink(b.sb.host, dm)?.linkinfo?.info_kind).toBe("dummy");
      const [d1, d2] = [b.containerNs(), b.containerNs()];
      const ed1 = await b.ctl.connect({ network: "iso", containerId: "d1", netns: d1 });
      await b.ctl.connect({ network: "iso", containerId: "d2", netns: d2 });
      expect(reachable(d2, ip(ed1))).toBe(true);
      await b.ctl.disconnect("iso", "d1", d1);
      await b.ctl.disconnect("iso", "d2", d2);
      await b.ctl.deleteNetwork("iso");
      expect(link(b.sb.host, dm)).toBeUndefined();

      // a failure after the sub-interface was made takes it away again
      const before = await snapshot();
      b.faults.arm("createNetwork:after-driver");
      await expectBerthError(b.ctl.createNetwork({ name: "vl3", driver: "ipvlan", options: { parent: "uplink5.31" }, ipam: subnet("10.228.0.0/24") }), {
        kind: "system",
        code: "injected-fault",
      });
      expect(await snapshot()).toEqual(before);

      await expectBerthError(b.ctl.createNetwork({ name: "badvlan", driver: "ipvlan", options: { parent: "uplink5.5000" }, ipam: subnet("10.228.0.0/24") }), {
        kind: "invalid",
        code: "bad-vlan-id",
        field: "Options.parent",
      });
    },
    T,
  );

  test(
    "bad input is refused with the field named; disconnect and network rm clean up and keep the parent",
    async () => {
      const before = await snapshot();
      await expectBerthError(b.ctl.createNetwork({ name: "bad", driver: "ipvlan", options: { parent: "nosuch0" }, ipam: subnet("10.229.0.0/24") }), {
        kind: "not-found",
        code: "parent-not-found",
        field: "Options.parent",
      });
      await expectBerthError(b.ctl.createNetwork({ name: "bad", driver: "ipvlan", options: { parent: "uplink0", ipvlan_mode: "l4" } }), {
        kind: "invalid",
        field: "Options.ipvlan_mode",
      });
      await expectBerthError(b.ctl.createNetwork({ name: "bad", driver: "ipvlan", options: { parent: "uplink0", macvlan_mode: "bridge" } }), {
        kind: "invalid",
        code: "unknown-option",
        field: "Options.macvlan_mode",
      });
      expect(await snapshot()).toEqual(before);

      await b.ctl.disconnect("l2net", "c2", c2);
      expect(linkNames(c2)).toEqual(["lo"]);
      expect(canPing(c1, ip(e2))).toBe(false);
      const d = b.ctl.driver("ipvlan");
      await d.leave(l2, e2, { containerId: "c2", netns: c2 });
      await d.deleteEndpoint(l2, e2);
      await b.ctl.disconnect("l2net", "c1", c1);
      await b.ctl.deleteNetwork("l2net");
      expect(link(b.sb.host, "uplink0")?.flags).toContain("UP");
      expect(linkNames(b.sb.host).filter((n) => n.startsWith("iv"))).toEqual([]);
    },
    T,
  );
});
