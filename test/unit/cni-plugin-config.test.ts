/**
 * Pure parts of Berth's CNI plugins: configuration parsing with errors that
 * name the key, the runtime's requests (IPs, MAC), host-local's range handling,
 * resolv.conf, the masquerade table's scripts and bookkeeping, and the batch
 * that configures an interface. No kernel access.
 */
import { describe, expect, test } from "bun:test";
import { IpBatch } from "../../src/dataplane/ipbatch.ts";
import { CniError } from "../../src/cni/errors.ts";
import { addressConflicts, parseBridge } from "../../src/cni/plugins/bridge.ts";
import { configureIface, envArgs, parseRoutes, requestedIPs, requestedMac } from "../../src/cni/plugins/common.ts";
import {
  assignRequested,
  describeSet,
  keyIfname,
  parseHostLocal,
  parseRange,
  parseResolvConf,
  rangeContains,
} from "../../src/cni/plugins/host-local.ts";
import { MASQ_RULES, masqAddScript, masqFastChanges, masqRemoveScript, masqTag, netTag, parseMasqState, subnetsToDrop } from "../../src/cni/plugins/ipmasq.ts";
import { parseIpvlan } from "../../src/cni/plugins/ipvlan.ts";
import { parseMacvlan } from "../../src/cni/plugins/macvlan.ts";
import { parseStatic } from "../../src/cni/plugins/static.ts";
import { checkSysctlKey, parseTuning } from "../../src/cni/plugins/tuning.ts";
import type { CniEnv } from "../../src/cni/skel.ts";
import { type NetConf, parseResult } from "../../src/cni/types.ts";
import { IP, IPNet } from "../../src/net/index.ts";
import { assertRootUntouched } from "../harness/sandbox.ts";

assertRootUntouched();

const env = (args = ""): CniEnv => ({ command: "ADD", containerId: "c1", netns: "/run/netns/x", ifname: "eth0", args, path: [] });
const conf = (o: Record<string, unknown>): NetConf => ({ cniVersion: "1.0.0", name: "n", type: "t", ...o }) as NetConf;

function cniErr(f: () => unknown): CniError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error("expected a CniError");
}

describe("host-local config", () => {
  test("range defaults like the reference: start = network+1, end = last usable, gateway = network+1", () => {
    const r = parseRange({ subnet: "10.1.2.0/24" }, "r");
    expect([r.rangeStart.toString(), r.rangeEnd.toString(), r.gateway?.toString()]).toEqual(["10.1.2.1", "10.1.2.254", "10.1.2.1"]);
    const v6 = parseRange({ subnet: "fd00::/120" }, "r");
    expect([v6.rangeStart.toString(), v6.rangeEnd.toString()]).toEqual(["fd00::1", "fd00::ff"]);
  });

  test("range errors name the key", () => {
    expect(cniErr(() => parseRange({}, "ipam.ranges[0][0]")).message).toBe("ipam.ranges[0][0].subnet is required");
    expect(cniErr(() => parseRange({ subnet: "10.1.2.5/24" }, "x")).message).toContain("x.subnet");
    expect(cniErr(() => parseRange({ subnet: "10.1.2.0/24", rangeEnd: "10.1.3.1" }, "x")).message).toContain("x.rangeEnd 10.1.3.1 is not in network 10.1.2.0/24");
    expect(cniErr(() => parseRange({ subnet: "10.1.2.0/24", gateway: "fd00::1" }, "x")).message).toContain("x.gateway");
    expect(cniErr(() => parseRange({ subnet: "10.1.2.0/24", rangeStart: 5 }, "x")).code).toBe(7);
  });

  test("legacy keys, ranges and runtimeConfig.ipRanges are combined in the reference's order", () => {
    const c = parseHostLocal(
      conf({
        runtimeConfig: { ipRanges: [[{ subnet: "10.3.0.0/24" }]] },
        ipam: { type: "host-local", subnet: "10.1.0.0/24", ranges: [[{ subnet: "10.2.0.0/24" }], [{ subnet: "fd02::/64" }]] },
      }),
      env(),
    );
    expect(c.rangeSets.map((s) => s[0]?.subnet.toString())).toEqual(["10.3.0.0/24", "10.1.0.0/24", "10.2.0.0/24", "fd02::/64"]);
    expect(c.dataDir).toBe("/var/lib/cni/networks");
    expect(keyIfname(c, "eth0", 0)).toBe("eth0");
    expect(keyIfname(c, "eth0", 1)).toBe("eth0/1");
    expect(keyIfname(c, "eth0", 3)).toBe("eth0");
  });

  test("overlaps and families are checked", () => {
    const ov = cniErr(() => parseHostLocal(conf({ ipam: { ranges: [[{ subnet: "10.1.0.0/16" }], [{ subnet: "10.1.5.0/24" }]] } }), env()));
    expect(ov.message).toBe("ipam range set 0 overlaps with range set 1");
    const within = cniErr(() =>
      parseHostLocal(conf({ ipam: { ranges: [[{ subnet: "10.1.0.0/24", rangeEnd: "10.1.0.50" }, { subnet: "10.1.0.0/24", rangeStart: "10.1.0.50" }]] } }), env()),
    );
    expect(within.message).toContain("overlap");
    // two ranges of one subnet that do not overlap are fine
    const ok = parseHostLocal(conf({ ipam: { ranges: [[{ subnet: "10.1.0.0/24", rangeEnd: "10.1.0.49" }, { subnet: "10.1.0.0/24", rangeStart: "10.1.0.50" }]] } }), env());
    expect(describeSet(ok.rangeSets[0] ?? [])).toBe("10.1.0.1-10.1.0.49,10.1.0.50-10.1.0.254");
    expect(cniErr(() => parseHostLocal(conf({ ipam: { dataDir: "rel/dir", subnet: "10.0.0.0/24" } }), env())).message).toContain("dataDir");
    expect(cniErr(() => parseHostLocal(conf({ ipam: { subnet: "10.0.0.0/24" } }), env("BOGUS=1"))).code).toBe(4);
  });

  test("requested IPs go to the range set that contains them, or the call fails naming them", () => {
    const c = parseHostLocal(
      conf({
        ipam: { ranges: [[{ subnet: "10.1.0.0/24", rangeStart: "10.1.0.10" }], [{ subnet: "fd01::/64" }]] },
        runtimeConfig: { ips: ["fd01::9/64", "10.1.0.20", "10.1.0.20/24"] },
      }),
      env(),
    );
    expect(assignRequested(c).map(String)).toEqual(["10.1.0.20", "fd01::9"]);
    const out = parseHostLocal(conf({ ipam: { subnet: "10.1.0.0/24", rangeStart: "10.1.0.10" }, runtimeConfig: { ips: ["10.1.0.5"] } }), env());
    expect(cniErr(() => assignRequested(out)).message).toContain("10.1.0.5 not inside any range");
    const r = parseRange({ subnet: "10.1.0.0/24", rangeStart: "10.1.0.10", rangeEnd: "10.1.0.20" }, "x");
    expect([rangeContains(r, IP.parse("10.1.0.9")), rangeContains(r, IP.parse("10.1.0.10")), rangeContains(r, IP.parse("10.1.0.20")), rangeContains(r, IP.parse("fd00::1"))]).toEqual([
      false,
      true,
      true,
      false,
    ]);
  });

  test("resolv.conf parsing", () => {
    expect(parseResolvConf("# c\nnameserver 1.1.1.1\nnameserver 2001:db8::1 # x\nsearch a b\ndomain d\noptions ndots:5 rotate\noptions edns0\n")).toEqual({
      nameservers: ["1.1.1.1", "2001:db8::1"],
      search: ["a", "b"],
      domain: "d",
      options: ["ndots:5", "rotate", "edns0"],
    });
  });
});

describe("runtime requests", () => {
  test("IPs from runtimeConfig, args.cni and CNI_ARGS, merged", () => {
    const ips = requestedIPs(conf({ runtimeConfig: { ips: ["10.0.0.1/24", "10.0.0.1"] }, args: { cni: { ips: ["10.0.0.2"] } } }), env("IP=10.0.0.3,10.0.0.1;IgnoreUnknown=1"));
    expect(ips.map(String)).toEqual(["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    expect(cniErr(() => requestedIPs(conf({ runtimeConfig: { ips: ["10.0.0.300"] } }), env())).message).toContain("runtimeConfig.ips[0]");
  });

  test("MAC: runtimeConfig wins over args.cni and CNI_ARGS", () => {
    expect(requestedMac(conf({ runtimeConfig: { mac: "02:00:00:00:00:01" }, args: { cni: { mac: "02:00:00:00:00:02" } } }), env("MAC=02:00:00:00:00:03"))?.toString()).toBe("02:00:00:00:00:01");
    expect(requestedMac(conf({}), env("MAC=02:00:00:00:00:03"))?.toString()).toBe("02:00:00:00:00:03");
    expect(requestedMac(conf({}), env())).toBeUndefined();
    expect(cniErr(() => requestedMac(conf({ runtimeConfig: { mac: "nope" } }), env())).message).toContain("runtimeConfig.mac");
  });

  test("CNI_ARGS pairs", () => {
    expect([...envArgs("A=1;B=x=y;;")]).toEqual([
      ["A", "1"],
      ["B", "x=y"],
    ]);
    expect(cniErr(() => envArgs("novalue")).code).toBe(4);
  });

  test("routes name the bad key", () => {
    expect(parseRoutes([{ dst: "0.0.0.0/0" }, { dst: "10.0.0.0/8", gw: "10.1.1.1", priority: 5 }], "r").map((x) => `${x.dst} ${x.gw ?? ""} ${x.priority ?? ""}`)).toEqual([
      "0.0.0.0/0  ",
      "10.0.0.0/8 10.1.1.1 5",
    ]);
    expect(cniErr(() => parseRoutes([{ dst: "10.0.0.0/8", gw: "fd00::1" }], "ipam.routes")).message).toContain("ipam.routes[0].gw");
    expect(cniErr(() => parseRoutes([{}], "ipam.routes")).message).toBe("ipam.routes[0].dst is required");
    expect(cniErr(() => parseRoutes([{ dst: "x" }], "ipam.routes")).message).toContain("ipam.routes[0].dst");
  });
});

describe("static", () => {
  test("precedence: config < CNI_ARGS IP (added) < args.cni.ips < runtimeConfig.ips (replace); GATEWAY applies", () => {
    const base = { ipam: { type: "static", addresses: [{ address: "10.0.0.5/24", gateway: "10.0.0.1" }] } };
    expect(parseStatic(conf(base), env()).addresses.map((a) => a.address.toString())).toEqual(["10.0.0.5/24"]);
    const withArgs = parseStatic(conf(base), env("IP=10.0.1.5/24;GATEWAY=10.0.1.1"));
    expect(withArgs.addresses.map((a) => `${a.address} ${a.gateway}`)).toEqual(["10.0.0.5/24 10.0.1.1", "10.0.1.5/24 10.0.1.1"]);
    expect(parseStatic(conf({ ...base, args: { cni: { ips: ["10.0.2.5/24"] } } }), env()).addresses.map(String).length).toBe(1);
    const rc = parseStatic(conf({ ...base, runtimeConfig: { ips: ["10.0.3.5/24", "10.0.3.5/24"] } }), env());
    expect(rc.addresses.map((a) => a.address.toString())).toEqual(["10.0.3.5/24"]);
  });

  test("errors", () => {
    expect(cniErr(() => parseStatic(conf({ ipam: { addresses: [{ address: "10.0.0.5" }] } }), env())).message).toContain("CIDR");
    expect(cniErr(() => parseStatic(conf({ ipam: { addresses: [] } }), env())).message).toContain("no addresses");
    expect(cniErr(() => parseStatic(conf({ ipam: { addresses: [{ address: "10.0.0.5/24", gateway: "x" }] } }), env())).message).toContain("ipam.addresses[0].gateway");
  });
});

describe("bridge / macvlan / ipvlan / tuning config", () => {
  test("bridge defaults and implied isGateway", () => {
    const c = parseBridge(conf({ isDefaultGateway: true }), env());
    expect(c).toMatchObject({ bridge: "cni0", isGateway: true, isDefaultGateway: true, ipMasq: false, enableDad: false });
  });

  test("bridge refuses what it does not implement with code 2, naming the key", () => {
    for (const [k, v] of [
      ["vlan", 10],
      ["vlanTrunk", [{ id: 5 }]],
      ["macspoofchk", true],
    ] as const) {
      const e = cniErr(() => parseBridge(conf({ [k]: v }), env()));
      expect(e.code).toBe(2);
      expect(e.message).toContain(k);
    }
    // neutral values are fine
    parseBridge(conf({ vlan: 0, vlanTrunk: [], macspoofchk: false }), env());
    expect(cniErr(() => parseBridge(conf({ bridge: "a-name-that-is-too-long" }), env())).message).toContain("bridge");
    expect(cniErr(() => parseBridge(conf({ mtu: 65536 }), env())).message).toContain("mtu");
  });

  test("bridge address conflicts: IPv4 replaced only with forceAddress; IPv6 only when the subnets overlap", () => {
    const n = (s: string) => IPNet.parse(s);
    expect(addressConflicts([n("10.0.0.1/24")], [n("10.0.0.1/24")], false, "br")).toEqual([]);
    expect(cniErr(() => addressConflicts([n("10.9.0.1/24")], [n("10.0.0.1/24")], false, "br")).message).toContain("10.9.0.1/24");
    expect(addressConflicts([n("10.9.0.1/24")], [n("10.0.0.1/24")], true, "br").map(String)).toEqual(["10.9.0.1/24"]);
    expect(addressConflicts([n("fd01::1/64"), n("fe80::1/64")], [n("fd02::1/64")], false, "br")).toEqual([]);
    expect(cniErr(() => addressConflicts([n("fd01::1/64")], [n("fd01::2/64")], false, "br")).code).toBe(100);
  });

  test("macvlan and ipvlan modes, ipvlan refuses a MAC", () => {
    expect(parseMacvlan(conf({}), env()).mode).toBe("bridge");
    expect(cniErr(() => parseMacvlan(conf({ mode: "source" }), env())).message).toContain("source");
    expect(parseIpvlan(conf({ mode: "l3s" }), env()).mode).toBe("l3s");
    expect(cniErr(() => parseIpvlan(conf({}), env("MAC=02:00:00:00:00:01"))).code).toBe(2);
  });

  test("tuning: only net.* sysctls, no path tricks", () => {
    checkSysctlKey("net.ipv4.conf.eth0.arp_notify");
    checkSysctlKey("net/ipv4/conf/eth0.100/rp_filter");
    for (const k of ["kernel.hostname", "net", "net/../kernel/x", "net..ipv4", "net.ipv4 x", "vm.swappiness"]) expect(() => checkSysctlKey(k)).toThrow();
    const t = parseTuning(conf({ sysctl: { "net.core.somaxconn": 500 }, mac: "02:00:00:00:00:09", promisc: "true" }), env());
    expect(t).toMatchObject({ sysctl: { "net.core.somaxconn": "500" }, promisc: true, dataDir: "/run/cni/tuning" });
    expect(t.mac?.toString()).toBe("02:00:00:00:00:09");
  });
});

describe("masquerade table", () => {
  test("fast ADD: netlink changes creating the user and adding the subnet as a range and a pair", () => {
    const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString("hex") : undefined);
    const ch = masqFastChanges([IPNet.parse("10.0.0.5/24")], "n|c|eth0")!;
    expect(ch.map((c) => `${c.op} ${c.set}`)).toEqual(["create masq4-users", "add masq4", "add masq4-local"]);
    expect(ch[0]!.elements.map((e) => [hex(e.key), e.comment])).toEqual([["0a000005", "n|c|eth0"]]);
    // the subnet as the kernel's rbtree holds it: its first address, and the address after its last closing it
    expect(ch[1]!.elements.map((e) => [hex(e.key), e.intervalEnd ?? false])).toEqual([
      ["0a000000", false],
      ["0a000100", true],
    ]);
    expect(ch[2]!.elements.map((e) => [hex(e.key), hex(e.keyEnd)])).toEqual([["0a0000000a000000", "0a0000ff0a0000ff"]]);
    // a subnet reaching the end of the address space has no closing element: the nft script handles it
    expect(masqFastChanges([IPNet.parse("255.255.255.5/24")], "t")).toBeUndefined();
    expect(masqAddScript([IPNet.parse("10.0.0.5/24")], "n|c|eth0").match(/^add rule /gm)?.length).toBe(MASQ_RULES);
  });
  test("tags are safe, bounded and carry the network for GC", () => {
    expect(masqTag("net1", "abc", "eth0")).toBe("net1|abc|eth0");
    const long = masqTag("n".repeat(60), "c".repeat(120), "eth0");
    expect(long.length).toBeLessThanOrEqual(127);
    expect(long.startsWith(`${netTag("n".repeat(60))}|`)).toBe(true);
    expect(masqTag("net1", 'a"b', "eth0")).toMatch(/^net1\|h[0-9a-f]+$/);
  });

  test("ADD script: table, sets and rules made idempotently; one subnet element; the user element replaced", () => {
    const s = masqAddScript([IPNet.parse("10.0.0.5/24")], "n|c|eth0");
    expect(s).toContain("add table inet berth-cni");
    expect(s).toContain("flush chain inet berth-cni postrouting");
    expect(s).toContain("add rule inet berth-cni postrouting ip saddr @masq4 ip daddr != 224.0.0.0/4 masquerade");
    expect(s).toContain("add element inet berth-cni masq4 { 10.0.0.0/24 }");
    expect(s).toContain("add element inet berth-cni masq4-local { 10.0.0.0/24 . 10.0.0.0/24 }");
    expect(s).toContain('add element inet berth-cni masq4-users { 10.0.0.5 comment "n|c|eth0" }');
    expect(s).not.toContain("inet berth ");
  });

  test("state parsing and which subnets lose their last user", () => {
    const st = parseMasqState({
      nftables: [
        { set: { name: "masq4", elem: [{ prefix: { addr: "10.0.0.0", len: 24 } }, { prefix: { addr: "10.1.0.0", len: 24 } }] } },
        {
          set: {
            name: "masq4-users",
            elem: [{ elem: { val: "10.0.0.5", comment: "a|1|eth0" } }, { elem: { val: "10.0.0.6", comment: "a|2|eth0" } }, { elem: { val: "10.1.0.5", comment: "b|3|eth0" } }],
          },
        },
        { set: { name: "masq6", elem: [{ elem: { val: { prefix: { addr: "fd00::", len: 64 } } } }] } },
      ],
    });
    expect(st.subnets.map(String)).toEqual(["10.0.0.0/24", "10.1.0.0/24", "fd00::/64"]);
    expect(st.users.map((u) => u.tag)).toEqual(["a|1|eth0", "a|2|eth0", "b|3|eth0"]);
    const one = st.users.filter((u) => u.tag === "a|1|eth0");
    expect(subnetsToDrop(st, one)).toEqual([]);
    const b = st.users.filter((u) => u.tag.startsWith("b|"));
    expect(subnetsToDrop(st, b).map(String)).toEqual(["10.1.0.0/24"]);
    expect(masqRemoveScript(b, subnetsToDrop(st, b))).toBe(
      "delete element inet berth-cni masq4-users { 10.1.0.5 }\ndelete element inet berth-cni masq4 { 10.1.0.0/24 }\ndelete element inet berth-cni masq4-local { 10.1.0.0/24 . 10.1.0.0/24 }\n",
    );
    expect(parseMasqState(undefined)).toEqual({ users: [], subnets: [] });
  });
});

describe("configureIface", () => {
  test("link up, addresses with broadcast, routes via the gateway of their family, duplicates once", () => {
    const r = parseResult(
      {
        ips: [
          { address: "10.0.0.2/24", gateway: "10.0.0.1", interface: 0 },
          { address: "fd00::2/64", gateway: "fd00::1", interface: 0 },
          { address: "10.9.9.9/24", interface: 1 },
        ],
        routes: [{ dst: "0.0.0.0/0" }, { dst: "0.0.0.0/0" }, { dst: "::/0" }, { dst: "192.168.0.0/16", gw: "10.0.0.254", priority: 7 }],
      },
      "1.0.0",
    );
    const b = new IpBatch("x");
    configureIface(b, "eth0", r, 0, { noDad: true });
    expect(b.lines).toEqual([
      "link set dev eth0 up",
      "address add 10.0.0.2/24 brd + dev eth0",
      "address add fd00::2/64 nodad dev eth0",
      "route add 0.0.0.0/0 via 10.0.0.1 dev eth0",
      "route add ::/0 via fd00::1 dev eth0",
      "route add 192.168.0.0/16 via 10.0.0.254 dev eth0 metric 7",
    ]);
  });
});
