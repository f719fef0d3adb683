/**
 * The pure parts of the chained plugins the runtime drives: portmap config and
 * element planning, iptables conditions -> nftables, bandwidth limits, firewall
 * config, owner tags, and reading nft elements back.
 */
import { describe, expect, test } from "bun:test";
import { parseElements } from "../../src/dataplane/nftelem.ts";
import { ownerTag, validTags } from "../../src/cni/chained.ts";
import { CniError } from "../../src/cni/errors.ts";
import { ifbName, parseBandwidth } from "../../src/cni/plugins/bandwidth.ts";
import { parseFirewallConf } from "../../src/cni/plugins/firewall.ts";
import { condChain, loopbackForwards, parsePortmapConf, planElements, translateConditions } from "../../src/cni/plugins/portmap.ts";
import type { NetConf } from "../../src/cni/types.ts";
import { IP } from "../../src/net/index.ts";
import { assertRootUntouched } from "../harness/sandbox.ts";

assertRootUntouched();

const conf = (o: Record<string, unknown>): NetConf => ({ cniVersion: "1.0.0", name: "n1", type: "portmap", ...o }) as NetConf;
const code = (f: () => unknown): number => {
  try {
    f();
  } catch (e) {
    return e instanceof CniError ? e.code : -1;
  }
  return 0;
};

describe("portmap", () => {
  const pm = (mappings: unknown[], extra: Record<string, unknown> = {}) => parsePortmapConf(conf({ runtimeConfig: { portMappings: mappings }, ...extra }));

  test("mappings: defaults, validation, hostIP families", () => {
    const c = pm([{ hostPort: 8080, containerPort: 80 }, { hostPort: 53, containerPort: 53, protocol: "UDP", hostIP: "192.0.2.1" }]);
    expect(c.snat).toBe(true);
    expect(c.markMasqBit).toBe(13);
    expect(c.mappings[0]).toEqual({ hostPort: 8080, containerPort: 80, protocol: "tcp" });
    expect(c.mappings[1]!.protocol).toBe("udp");
    expect(c.mappings[1]!.hostIP?.toString()).toBe("192.0.2.1");
    expect(code(() => pm([{ hostPort: 0, containerPort: 80 }]))).toBe(7);
    expect(code(() => pm([{ hostPort: 1, containerPort: 70000 }]))).toBe(7);
    expect(code(() => pm([{ hostPort: 1, containerPort: 1, protocol: "icmp" }]))).toBe(7);
    expect(code(() => pm([{ hostPort: 1, containerPort: 1, hostIP: "nope" }]))).toBe(7);
  });

  test("what cannot be done is refused with code 2, naming the field", () => {
    expect(code(() => pm([], { externalSetMarkChain: "KUBE-MARK-MASQ" }))).toBe(2);
    expect(code(() => pm([], { conditionsV4: ["-m", "set", "--match-set", "x", "src"] }))).toBe(2);
    expect(code(() => pm([], { externalSetMarkChain: "X", markMasqBit: 13 }))).toBe(7);
    expect(code(() => pm([], { markMasqBit: 32 }))).toBe(7);
    expect(code(() => pm([], { snat: "yes" }))).toBe(7);
  });

  test("[::1] mappings go to the userland forwarder, never into the DNAT maps", () => {
    const c = pm([{ hostPort: 8086, containerPort: 80, hostIP: "::1" }, { hostPort: 8087, containerPort: 81 }]);
    const ips = { v4: IP.parse("10.0.0.2"), v6: IP.parse("fd00::2") };
    expect(loopbackForwards(c, ips)).toEqual([{ protocol: "tcp", hostPort: 8086, target: "fd00::2", targetPort: 80 }]);
    expect(planElements("n1", c, ips).map((e) => `${e.set} ${e.key}`)).toEqual([
      "dnat4 0.0.0.0/0 . tcp . 8087",
      "dnat6 ::/0 . tcp . 8087",
      "hairpin4 10.0.0.2 . 10.0.0.2",
      "local4 10.0.0.2",
      "hairpin6 fd00::2 . fd00::2",
    ]);
    // an IPv4-only container has nothing to forward on [::1]
    expect(loopbackForwards(c, { v4: ips.v4 })).toEqual([]);
  });

  test("iptables conditions translate to nftables expressions", () => {
    expect(translateConditions(["!", "-d", "192.0.2.0/24"], 4)).toBe("ip daddr != 192.0.2.0/24");
    expect(translateConditions(["-s", "10.0.0.1", "-i", "eth+"], 4)).toBe('ip saddr 10.0.0.1 iifname "eth*"');
    expect(translateConditions(["!", "-d", "fc00::/7", "-m", "comment", "--comment", "x"], 6)).toBe("ip6 daddr != fc00::/7");
    expect(() => translateConditions(["-d", "fc00::/7"], 4)).toThrow(/not an IPv4 address/);
    expect(() => translateConditions(["-j", "ACCEPT"], 4)).toThrow(/unsupported/);
  });

  test("one element per mapping and family; hairpin/localhost only with snat; conditions add a verdict element", () => {
    const ips = { v4: IP.parse("10.0.0.2"), v6: IP.parse("fd00::2") };
    const c = pm([{ hostPort: 8080, containerPort: 80 }, { hostPort: 5353, containerPort: 53, protocol: "udp", hostIP: "192.0.2.1" }]);
    expect(planElements("n1", c, ips)).toEqual([
      { set: "dnat4", key: "0.0.0.0/0 . tcp . 8080", value: "10.0.0.2 . 80" },
      { set: "dnat6", key: "::/0 . tcp . 8080", value: "fd00::2 . 80" },
      { set: "dnat4", key: "192.0.2.1 . udp . 5353", value: "10.0.0.2 . 53" },
      { set: "hairpin4", key: "10.0.0.2 . 10.0.0.2" },
      { set: "local4", key: "10.0.0.2" },
      { set: "hairpin6", key: "fd00::2 . fd00::2" },
    ]);
    const nosnat = pm([{ hostPort: 8080, containerPort: 80 }], { snat: false });
    expect(planElements("n1", nosnat, { v4: ips.v4 }).map((e) => e.set)).toEqual(["dnat4"]);
    const cond = pm([{ hostPort: 8080, containerPort: 80 }], { conditionsV4: ["!", "-s", "192.0.2.0/24"] });
    const els = planElements("n1", cond, { v4: ips.v4 });
    expect(els).toContainEqual({ set: "cond4", key: "0.0.0.0/0 . tcp . 8080", value: `goto ${condChain("n1")}` });
    // "0.0.0.0" publishes on every IPv4 address only
    expect(planElements("n1", pm([{ hostPort: 1, containerPort: 2, hostIP: "0.0.0.0" }]), ips).filter((e) => e.set.startsWith("dnat")).map((e) => e.key)).toEqual(["0.0.0.0/0 . tcp . 1"]);
  });
});

describe("bandwidth", () => {
  test("config keys, overridden as a whole by the capability; rate and burst in pairs", () => {
    expect(parseBandwidth(conf({ ingressRate: 1000, ingressBurst: 800 }))).toEqual({ ingressRate: 1000, ingressBurst: 800, egressRate: 0, egressBurst: 0 });
    expect(parseBandwidth(conf({ ingressRate: 1000, ingressBurst: 800, runtimeConfig: { bandwidth: { egressRate: 5, egressBurst: 80 } } }))).toEqual({
      ingressRate: 0,
      ingressBurst: 0,
      egressRate: 5,
      egressBurst: 80,
    });
    expect(() => parseBandwidth(conf({ ingressRate: 1000 }))).toThrow(/ingressBurst must also be set/);
    expect(() => parseBandwidth(conf({ egressBurst: 1000 }))).toThrow(/egressRate must also be set/);
    expect(() => parseBandwidth(conf({ egressRate: -1, egressBurst: 8 }))).toThrow(/non-negative integer/);
    expect(code(() => parseBandwidth(conf({ shapedSubnets: ["10.0.0.0/8"] })))).toBe(2);
  });

  test("ifb names are 15 characters and differ per attachment", () => {
    const a = ifbName(ownerTag("n", "c1", "eth0"));
    expect(a).toMatch(/^bwp[0-9a-f]{12}$/);
    expect(ifbName(ownerTag("n", "c1", "eth1"))).not.toBe(a);
  });
});

describe("firewall and owner tags", () => {
  test("backends and ingress policies", () => {
    for (const backend of ["iptables", "firewalld", "nftables", ""]) expect(parseFirewallConf(conf({ backend })).ingressPolicy).toBe("open");
    expect(parseFirewallConf(conf({ ingressPolicy: "same-bridge" })).ingressPolicy).toBe("same-bridge");
    expect(() => parseFirewallConf(conf({ backend: "pf" }))).toThrow(/unknown backend/);
    expect(() => parseFirewallConf(conf({ ingressPolicy: "closed" }))).toThrow(/unknown ingressPolicy/);
  });

  test("owner tags fit nft comments and GC's valid list becomes tags of this network", () => {
    const long = ownerTag("n".repeat(100), "c".repeat(128), "e\"th0");
    expect(long.length).toBeLessThan(128);
    expect(long).not.toContain('"');
    expect(ownerTag("net", "abc", "eth0")).toBe("net/abc/eth0");
    expect([...validTags(conf({ name: "net", "cni.dev/valid-attachments": [{ containerID: "abc", ifname: "eth0" }] }))]).toEqual(["net/abc/eth0"]);
    expect(() => validTags(conf({ "cni.dev/valid-attachments": [{ containerID: "x" }] }))).toThrow(/containerID and ifname/);
  });

  test("nft JSON elements are rendered back as nft syntax (keys, values, comments)", () => {
    const map = {
      type: ["ipv4_addr", "inet_proto", "inet_service"],
      map: ["ipv4_addr", "inet_service"],
      elem: [
        [{ elem: { val: { concat: [{ prefix: { addr: "0.0.0.0", len: 0 } }, "tcp", 8080] }, comment: "n/c/eth0" } }, { concat: ["10.0.0.2", 80] }],
        [{ concat: ["192.0.2.1", "udp", 53] }, { concat: ["10.0.0.3", 53] }],
      ],
    };
    expect(parseElements(map)).toEqual([
      { key: "0.0.0.0/0 . tcp . 8080", value: "10.0.0.2 . 80", comment: "n/c/eth0" },
      { key: "192.0.2.1 . udp . 53", value: "10.0.0.3 . 53" },
    ]);
    expect(parseElements({ type: ["ifname", "ifname"], elem: [{ elem: { val: { concat: ["br0", "m1"] }, comment: "x" } }] })).toEqual([{ key: '"br0" . "m1"', comment: "x" }]);
    expect(parseElements({ type: "ipv4_addr", map: "verdict", elem: [["10.0.0.1", { goto: { target: "c1" } }]] })).toEqual([{ key: "10.0.0.1", value: "goto c1" }]);
  });
});
