// The DNS name table: names per network, scoping, qualified names, PTR names for IPv4 and IPv6.
import { describe, expect, test } from "bun:test";
import { NameTable, parseReverseName, reverseName } from "../../src/dns/names.ts";
import { IP } from "../../src/net/index.ts";
import { assertRootUntouched } from "../harness/sandbox.ts";
import { ep, net } from "../fixtures/dns-helpers.ts";

assertRootUntouched();

const CID = (c: string) => c.repeat(64);
const table = NameTable.build(
  [
    net("F", "front", ["10.1.0.0/24", "fd00:1::/64"]),
    net("B", "back", ["10.2.0.0/24"]),
    net("I", "iso", ["10.3.0.0/24"], { internal: true }),
    net("H", "host", [], { driver: "host" }),
  ],
  [
    ep("F", CID("a"), ["web1", "web"], ["10.1.0.2/24", "fd00:1::2/64"]),
    ep("F", CID("b"), ["web2", "web"], ["10.1.0.3/24"]),
    ep("F", CID("c"), ["both"], ["10.1.0.4/24"]),
    ep("B", CID("c"), ["both", "db"], ["10.2.0.4/24"]),
    ep("B", CID("d"), ["Secret"], ["10.2.0.5/24"]),
    ep("I", CID("e"), ["inner"], ["10.3.0.9/24"]),
    ep("H", CID("f"), ["hosty"], []),
  ],
);
const s = (...ids: string[]) => new Set(ids);
const str = (ips: IP[] | undefined) => ips?.map(String).sort();

describe("NameTable", () => {
  test("names resolve within the asker's networks only", () => {
    expect(str(table.lookup("web1", 4, s("F")))).toEqual(["10.1.0.2"]);
    expect(table.lookup("secret", 4, s("F"))).toBeUndefined();
    expect(str(table.lookup("secret", 4, s("B")))).toEqual(["10.2.0.5"]);
    expect(table.lookup("web1", 4, s("B"))).toBeUndefined();
    expect(table.lookup("web1", 4, s())).toBeUndefined();
  });

  test("a name on several networks answers with the addresses of the networks in scope", () => {
    expect(str(table.lookup("both", 4, s("F")))).toEqual(["10.1.0.4"]);
    expect(str(table.lookup("both", 4, s("B")))).toEqual(["10.2.0.4"]);
    expect(str(table.lookup("both", 4, s("F", "B")))).toEqual(["10.1.0.4", "10.2.0.4"]);
  });

  test("a shared alias gives every container's address", () => {
    expect(str(table.lookup("web", 4, s("F")))).toEqual(["10.1.0.2", "10.1.0.3"]);
    expect(str(table.lookup("web", 6, s("F")))).toEqual(["fd00:1::2"]);
  });

  test("exists without an address of the family: empty list, not undefined", () => {
    expect(table.lookup("web2", 6, s("F"))).toEqual([]);
  });

  test("case-insensitive, trailing dot, short container id", () => {
    expect(str(table.lookup("WEB1.", 4, s("F")))).toEqual(["10.1.0.2"]);
    expect(str(table.lookup("SECRET", 4, s("B")))).toEqual(["10.2.0.5"]);
    expect(str(table.lookup("aaaaaaaaaaaa", 4, s("F")))).toEqual(["10.1.0.2"]);
    expect(table.lookup("aaaaaaaaaaa", 4, s("F"))).toBeUndefined();
  });

  test("network-qualified names narrow to that network and need attachment to it", () => {
    expect(str(table.lookup("both.back", 4, s("F", "B")))).toEqual(["10.2.0.4"]);
    expect(str(table.lookup("both.front", 4, s("F", "B")))).toEqual(["10.1.0.4"]);
    expect(table.lookup("db.back", 4, s("F"))).toBeUndefined();
    expect(table.lookup("web1.back", 4, s("F", "B"))).toBeUndefined();
  });

  test("host/null networks have no names; scope and forwarding policy per container", () => {
    expect(table.lookup("hosty", 4, s("H"))).toBeUndefined();
    expect([...table.scopeOf(CID("c"))].sort()).toEqual(["B", "F"]);
    expect([...table.scopeOf(CID("f"))]).toEqual([]);
    expect(table.mayForward(table.scopeOf(CID("a")))).toBe(true);
    expect(table.mayForward(table.scopeOf(CID("e")))).toBe(false);
  });

  test("reverse lookups: primary name, scoped; subnet membership", () => {
    expect(table.reverse(IP.parse("10.1.0.2"), s("F"))).toEqual(["web1"]);
    expect(table.reverse(IP.parse("fd00:1::2"), s("F"))).toEqual(["web1"]);
    expect(table.reverse(IP.parse("10.2.0.5"), s("F"))).toBeUndefined();
    expect(table.reverse(IP.parse("10.2.0.5"), s("B"))).toEqual(["Secret"]);
    expect(table.inScopeSubnets(IP.parse("10.1.0.200"), s("F"))).toBe(true);
    expect(table.inScopeSubnets(IP.parse("10.2.0.200"), s("F"))).toBe(false);
    expect(table.inScopeSubnets(IP.parse("fd00:1::99"), s("F"))).toBe(true);
  });
});

describe("reverse names", () => {
  test("IPv4 in-addr.arpa both ways", () => {
    expect(reverseName(IP.parse("10.1.0.2"))).toBe("2.0.1.10.in-addr.arpa");
    expect(parseReverseName("2.0.1.10.in-addr.arpa")?.toString()).toBe("10.1.0.2");
    expect(parseReverseName("2.0.1.10.IN-ADDR.ARPA.")?.toString()).toBe("10.1.0.2");
  });

  test("IPv6 ip6.arpa nibbles both ways", () => {
    const ip = IP.parse("fd00:1::2");
    const name = reverseName(ip);
    expect(name).toBe("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa");
    expect(parseReverseName(name)?.toString()).toBe("fd00:1::2");
    expect(parseReverseName(name.toUpperCase())?.toString()).toBe("fd00:1::2");
  });

  test("partial, malformed and non-reverse names are not addresses", () => {
    for (const n of ["0.1.10.in-addr.arpa", "256.0.1.10.in-addr.arpa", "01.0.1.10.in-addr.arpa", "a.0.1.10.in-addr.arpa", "1.0.ip6.arpa", "g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa", "example.com", "", "in-addr.arpa"]) {
      expect(parseReverseName(n)).toBeUndefined();
    }
  });
});
