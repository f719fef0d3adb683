// The nf_tables questions asked over netlink directly (src/dataplane/netlink/nftables.ts), against
// the kernel: rule counts, one element looked up by key (plain, concatenated and interval keys, with
// and without a comment), a set's elements dumped; each answer checked against `nft -j` of the same
// table, and the lookups act in the namespace they are given.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { elementBytes, rangeElements } from "../../src/dataplane/netlink/nftables.ts";
import { IP, Prefix } from "../../src/net/index.ts";
import { assertRootUntouched, createSandbox, nftJson, type Sandbox } from "../harness/sandbox.ts";

assertRootUntouched();

const dp = new Dataplane();
const T = "zznl";
const TABLE = `table inet ${T} {
  set users { type ipv4_addr; elements = { 10.5.0.2 comment "net|c1|eth0", 10.5.0.3 } }
  set users6 { type ipv6_addr; elements = { fd00::2 comment "six" } }
  set ports { type inet_proto . inet_service; elements = { tcp . 8080, udp . 53 } }
  set subnets { type ipv4_addr; flags interval; }
  set pairs { type ipv4_addr . ipv4_addr; flags interval; }
  map dnat4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags interval;
    elements = { 0.0.0.0/0 . tcp . 8080 comment "owner-a" : 10.5.0.2 . 80, 192.0.2.7 . udp . 53 comment "owner-b" : 10.5.0.3 . 53 } }
  chain a { ip saddr @users accept; ip daddr 10.5.0.9 drop; }
  chain empty { }
}`;

describe("nftables over netlink", () => {
  let sb: Sandbox;
  let ns: string;
  let other: string;
  beforeAll(() => {
    sb = createSandbox("nnl");
    ns = sb.host;
    other = sb.netns("nnlo");
    const r = Bun.spawnSync(["ip", "netns", "exec", ns, "nft", "-f", "-"], { stdin: new TextEncoder().encode(TABLE), stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  test("rule counts equal nft's listing; a missing chain or table counts 0", async () => {
    const listed = nftJson(ns, "list", "table", "inet", T).nftables.filter((o) => o.rule && (o.rule as { chain: string }).chain === "a").length;
    expect(await dp.nftChainRuleCount(ns, "inet", T, "a")).toBe(listed);
    expect(listed).toBe(2);
    expect(await dp.nftChainRuleCount(ns, "inet", T, "empty")).toBe(0);
    expect(await dp.nftChainRuleCount(ns, "inet", T, "nochain")).toBe(0);
    expect(await dp.nftChainRuleCount(ns, "inet", "notable", "a")).toBe(0);
    // the question goes to the namespace given: the other one has no such table
    expect(await dp.nftChainRuleCount(other, "inet", T, "a")).toBe(0);
  });

  test("an element by key: found with its comment, or not found", async () => {
    const ip = (s: string) => ({ ip: IP.parse(s) });
    expect(await dp.nftGetElement(ns, "inet", T, "users", [ip("10.5.0.2")])).toEqual({ comment: "net|c1|eth0" });
    expect(await dp.nftGetElement(ns, "inet", T, "users", [ip("10.5.0.3")])).toEqual({ comment: "" });
    expect(await dp.nftGetElement(ns, "inet", T, "users", [ip("10.5.0.4")])).toBeUndefined();
    expect(await dp.nftGetElement(ns, "inet", T, "users6", [ip("fd00::2")])).toEqual({ comment: "six" });
    expect(await dp.nftGetElement(ns, "inet", T, "ports", [{ proto: "tcp" }, { port: 8080 }])).toEqual({ comment: "" });
    expect(await dp.nftGetElement(ns, "inet", T, "ports", [{ proto: "udp" }, { port: 8080 }])).toBeUndefined();
    expect(await dp.nftGetElement(ns, "inet", T, "nosuchset", [ip("10.5.0.2")])).toBeUndefined();
    expect(await dp.nftGetElement(other, "inet", T, "users", [ip("10.5.0.2")])).toBeUndefined();
  });

  test("an interval element by its range: the every-address range and a single address", async () => {
    const k = (host: string, proto: "tcp" | "udp", port: number) => [{ ip: IP.parse(host) }, { proto }, { port }];
    expect(await dp.nftGetElement(ns, "inet", T, "dnat4", k("0.0.0.0", "tcp", 8080), k("255.255.255.255", "tcp", 8080))).toEqual({ comment: "owner-a" });
    expect(await dp.nftGetElement(ns, "inet", T, "dnat4", k("192.0.2.7", "udp", 53), k("192.0.2.7", "udp", 53))).toEqual({ comment: "owner-b" });
    expect(await dp.nftGetElement(ns, "inet", T, "dnat4", k("0.0.0.0", "tcp", 9090), k("255.255.255.255", "tcp", 9090))).toBeUndefined();
  });

  test("a set's elements dumped: the same keys and comments as nft's listing", async () => {
    const dumped = (await dp.nftSetElements(ns, "inet", T, "users")).map((e) => `${IP.fromBytes(e.key)} ${e.comment}`).sort();
    expect(dumped).toEqual(["10.5.0.2 net|c1|eth0", "10.5.0.3 "]);
    const six = await dp.nftSetElements(ns, "inet", T, "users6");
    expect(six.map((e) => `${IP.fromBytes(e.key)} ${e.comment}`)).toEqual(["fd00::2 six"]);
    expect(await dp.nftSetElements(ns, "inet", T, "nosuchset")).toEqual([]);
    expect(await dp.nftSetElements(other, "inet", T, "users")).toEqual([]);
  });

  test("a large set dumps whole (several netlink messages)", async () => {
    const elems = Array.from({ length: 3000 }, (_, i) => `10.6.${i >> 8}.${i & 255} comment "c${i}"`).join(", ");
    const script = `add set inet ${T} big { type ipv4_addr; }\nadd element inet ${T} big { ${elems} }\n`;
    const r = Bun.spawnSync(["ip", "netns", "exec", ns, "nft", "-f", "-"], { stdin: new TextEncoder().encode(script), stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    const got = await dp.nftSetElements(ns, "inet", T, "big");
    expect(got.length).toBe(3000);
    expect(new Set(got.map((e) => e.comment)).size).toBe(3000);
    expect(got.find((e) => e.comment === "c2999") && IP.fromBytes(got.find((e) => e.comment === "c2999")!.key).toString()).toBe("10.6.11.183");
  });
  test("element changes in one transaction: what nft lists afterwards; a refused batch changes nothing", async () => {
    const ip = (s: string) => ({ ip: IP.parse(s) });
    const list = (set: string) => JSON.stringify(nftJson(ns, "list", "table", "inet", T).nftables.filter((o) => ((o.set ?? o.map) as { name?: string } | undefined)?.name === set));
    const p = Prefix.parse("10.7.0.0/16");
    await dp.nftChangeElements(ns, "inet", T, [
      { op: "create", set: "users", elements: [elementBytes({ key: [ip("10.5.0.9")], comment: "n|c9|eth0" })] },
      { op: "add", set: "subnets", elements: rangeElements(p)! },
      { op: "add", set: "pairs", elements: [elementBytes({ key: [ip("10.7.0.0"), ip("10.7.0.0")], keyEnd: [ip("10.7.255.255"), ip("10.7.255.255")] })] },
      { op: "create", set: "dnat4", elements: [elementBytes({ key: [ip("0.0.0.0"), { proto: "tcp" }, { port: 9443 }], keyEnd: [ip("255.255.255.255"), { proto: "tcp" }, { port: 9443 }], data: [ip("10.5.0.9"), { port: 443 }], comment: "owner-c" })] },
    ]);
    expect(list("users")).toContain('{"elem":{"val":"10.5.0.9","comment":"n|c9|eth0"}}');
    expect(list("subnets")).toContain('{"prefix":{"addr":"10.7.0.0","len":16}}');
    expect(list("pairs")).toContain('{"concat":[{"prefix":{"addr":"10.7.0.0","len":16}},{"prefix":{"addr":"10.7.0.0","len":16}}]}');
    const dnat = list("dnat4");
    expect(dnat).toContain('"comment":"owner-c"');
    expect(dnat).toContain('{"concat":["10.5.0.9",443]}');
    expect(await dp.nftGetElement(ns, "inet", T, "dnat4", [ip("0.0.0.0"), { proto: "tcp" }, { port: 9443 }], [ip("255.255.255.255"), { proto: "tcp" }, { port: 9443 }])).toEqual({ comment: "owner-c" });
    // adding what is there is fine, creating it is refused; the refused batch's other changes do not happen
    await dp.nftChangeElements(ns, "inet", T, [{ op: "add", set: "subnets", elements: rangeElements(p)! }]);
    const refused = dp.nftChangeElements(ns, "inet", T, [
      { op: "create", set: "users", elements: [elementBytes({ key: [ip("10.5.0.10")] })] },
      { op: "create", set: "users", elements: [elementBytes({ key: [ip("10.5.0.9")] })] },
    ]);
    await expect(refused).rejects.toThrow(/File exists/);
    expect(list("users")).not.toContain("10.5.0.10");
    // a specific address under an every-address range: the kernel's overlap refusal
    await expect(
      dp.nftChangeElements(ns, "inet", T, [{ op: "create", set: "dnat4", elements: [elementBytes({ key: [ip("192.0.2.1"), { proto: "tcp" }, { port: 9443 }], keyEnd: [ip("192.0.2.1"), { proto: "tcp" }, { port: 9443 }], data: [ip("10.5.0.3"), { port: 1 }] })] }]),
    ).rejects.toThrow(/File exists/);
    // deletes; deleting what is not there is refused (ENOENT) and changes nothing
    await dp.nftChangeElements(ns, "inet", T, [
      { op: "delete", set: "users", elements: [elementBytes({ key: [ip("10.5.0.9")] })] },
      { op: "delete", set: "subnets", elements: rangeElements(p)! },
      { op: "delete", set: "pairs", elements: [elementBytes({ key: [ip("10.7.0.0"), ip("10.7.0.0")], keyEnd: [ip("10.7.255.255"), ip("10.7.255.255")] })] },
    ]);
    expect(list("users")).not.toContain("10.5.0.9");
    expect(list("subnets")).not.toContain("10.7.0.0");
    expect(list("pairs")).not.toContain("10.7.0.0");
    await expect(dp.nftChangeElements(ns, "inet", T, [{ op: "delete", set: "users", elements: [elementBytes({ key: [ip("10.5.0.99")] })] }])).rejects.toThrow(/No such file/);
    await expect(dp.nftChangeElements(other, "inet", T, [{ op: "add", set: "users", elements: [elementBytes({ key: [ip("10.5.0.99")] })] }])).rejects.toThrow(/No such file/);
  });
});
