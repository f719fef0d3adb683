/**
 * src/net: the table of inputs that must be rejected (BerthError kind "invalid",
 * message naming the bad value), field pass-through, and the index re-exports.
 */
import { describe, expect, test } from "bun:test";
import { BerthError } from "../../src/errors.ts";
import * as net from "../../src/net/index.ts";
import { IP, IPNet, MAC, Prefix } from "../../src/net/index.ts";

function caught(f: () => unknown): BerthError {
  try {
    f();
  } catch (e) {
    if (e instanceof BerthError) return e;
    throw new Error(`expected a BerthError, got ${String(e)}`);
  }
  throw new Error("expected a BerthError, but nothing was thrown");
}

type Case = { what: string; input: string; parse: (s: string, field?: string) => unknown; code: string; says?: string };

const cases: Case[] = [
  { what: "IP", input: "999.1.1.1", parse: IP.parse, code: "ip-invalid", says: "octet 999 is out of range 0-255" },
  { what: "IP", input: "1.2.3", parse: IP.parse, code: "ip-invalid", says: "got 3" },
  { what: "IP", input: "1.2.3.4.5", parse: IP.parse, code: "ip-invalid", says: "got 5" },
  { what: "IP", input: "01.2.3.4", parse: IP.parse, code: "ip-invalid", says: "leading zero" },
  { what: "IP", input: " 1.2.3.4", parse: IP.parse, code: "ip-invalid", says: "whitespace" },
  { what: "IP", input: "1.2.3.4 ", parse: IP.parse, code: "ip-invalid", says: "whitespace" },
  { what: "IP", input: "1.2..4", parse: IP.parse, code: "ip-invalid", says: "empty" },
  { what: "IP", input: "1.2.3.-4", parse: IP.parse, code: "ip-invalid", says: "not a decimal number" },
  { what: "IP", input: "1.2.3.0x4", parse: IP.parse, code: "ip-invalid", says: "not a decimal number" },
  { what: "IP", input: "1.2.3.1000", parse: IP.parse, code: "ip-invalid", says: "out of range" },
  { what: "IP", input: "", parse: IP.parse, code: "ip-invalid", says: "empty" },
  { what: "IP", input: "localhost", parse: IP.parse, code: "ip-invalid", says: "not an IPv4 or IPv6 address" },
  { what: "IP", input: "1:2:3:4:5:6:7:8:9", parse: IP.parse, code: "ip-invalid", says: "has 9 groups" },
  { what: "IP", input: "1:2:3:4:5:6:7", parse: IP.parse, code: "ip-invalid", says: "expected 8" },
  { what: "IP", input: "1::2::3", parse: IP.parse, code: "ip-invalid", says: `"::" may appear only once` },
  { what: "IP", input: "1:::2", parse: IP.parse, code: "ip-invalid", says: ":::" },
  { what: "IP", input: "gg::1", parse: IP.parse, code: "ip-invalid", says: `group "gg"` },
  { what: "IP", input: "12345::", parse: IP.parse, code: "ip-invalid", says: `group "12345"` },
  { what: "IP", input: ":1:2:3:4:5:6:7", parse: IP.parse, code: "ip-invalid", says: "empty group" },
  { what: "IP", input: "1:2:3:4:5:6:7:", parse: IP.parse, code: "ip-invalid", says: "empty group" },
  { what: "IP", input: "1:2:3:4:5:6:7:8::", parse: IP.parse, code: "ip-invalid", says: "at most 7" },
  { what: "IP", input: "::1:2:3:4:5:6:7:8", parse: IP.parse, code: "ip-invalid", says: "at most 7" },
  { what: "IP", input: "fe80::1%eth0", parse: IP.parse, code: "ip-invalid", says: "zone" },
  { what: "IP", input: "[::1]", parse: IP.parse, code: "ip-invalid", says: "brackets" },
  { what: "IP", input: "::ffff:1.2.3.256", parse: IP.parse, code: "ip-invalid", says: "octet 256" },
  { what: "IP", input: "::ffff:01.2.3.4", parse: IP.parse, code: "ip-invalid", says: "leading zero" },
  { what: "IP", input: "1.2.3.4::", parse: IP.parse, code: "ip-invalid", says: "must come last" },
  { what: "IP", input: "::1.2.3.4:1", parse: IP.parse, code: "ip-invalid", says: "must come last" },
  { what: "IP", input: "1:2:3:4:5:6:7:1.2.3.4", parse: IP.parse, code: "ip-invalid", says: "has 9 groups" },
  { what: "Prefix", input: "10.0.0.0/33", parse: Prefix.parse, code: "prefix-length", says: "length 33 exceeds 32 for IPv4" },
  { what: "Prefix", input: "fd00::/129", parse: Prefix.parse, code: "prefix-length", says: "length 129 exceeds 128 for IPv6" },
  { what: "Prefix", input: "10.0.0.1/24", parse: Prefix.parse, code: "prefix-host-bits", says: "10.0.0.0/24" },
  { what: "Prefix", input: "fd00::1/64", parse: Prefix.parse, code: "prefix-host-bits", says: "fd00::/64" },
  { what: "Prefix", input: "10.0.0.0", parse: Prefix.parse, code: "prefix-invalid", says: `missing "/length"` },
  { what: "Prefix", input: "10.0.0.0/", parse: Prefix.parse, code: "prefix-length", says: "missing length" },
  { what: "Prefix", input: "10.0.0.0/x", parse: Prefix.parse, code: "prefix-length", says: "not a decimal number" },
  { what: "Prefix", input: "10.0.0.0/-1", parse: Prefix.parse, code: "prefix-length", says: "not a decimal number" },
  { what: "Prefix", input: "10.0.0.0/024", parse: Prefix.parse, code: "prefix-length", says: "leading zero" },
  { what: "Prefix", input: "10.0.0.0/8/8", parse: Prefix.parse, code: "prefix-invalid", says: `more than one "/"` },
  { what: "Prefix", input: "/8", parse: Prefix.parse, code: "prefix-invalid", says: "missing address" },
  { what: "Prefix", input: "10.0.0.256/24", parse: Prefix.parse, code: "prefix-invalid", says: "octet 256" },
  { what: "Prefix", input: "10.0.0.0/33", parse: Prefix.parseLoose, code: "prefix-length", says: "exceeds 32" },
  { what: "IPNet", input: "10.0.0.2", parse: IPNet.parse, code: "ipnet-invalid", says: `missing "/length"` },
  { what: "IPNet", input: "10.0.0.2/33", parse: IPNet.parse, code: "ipnet-length", says: "exceeds 32" },
  { what: "IPNet", input: "fd00::g/64", parse: IPNet.parse, code: "ipnet-invalid", says: `group "g"` },
  { what: "MAC", input: "aa:bb:cc:dd:ee", parse: MAC.parse, code: "mac-invalid", says: "has 5 octets" },
  { what: "MAC", input: "aa:bb:cc:dd:ee:fg", parse: MAC.parse, code: "mac-invalid", says: `octet "fg"` },
  { what: "MAC", input: "aa:bb:cc:dd:ee:ff:00", parse: MAC.parse, code: "mac-invalid", says: "has 7 octets" },
  { what: "MAC", input: "aa:bb:cc:dd:ee:f", parse: MAC.parse, code: "mac-invalid", says: `octet "f"` },
  { what: "MAC", input: "aa:bb:cc-dd:ee:ff", parse: MAC.parse, code: "mac-invalid", says: "mixes" },
  { what: "MAC", input: "aabbccddeeff", parse: MAC.parse, code: "mac-invalid", says: "has 1 octet" },
  { what: "ifname", input: "abcdefghijklmnop", parse: net.validateIfName, code: "ifname-invalid", says: "is 16 characters; Linux allows at most 15" },
  { what: "ifname", input: "veth-0123456789ab", parse: net.validateIfName, code: "ifname-invalid", says: "is 17 characters" },
  { what: "ifname", input: "", parse: net.validateIfName, code: "ifname-invalid", says: "empty" },
  { what: "ifname", input: "..", parse: net.validateIfName, code: "ifname-invalid", says: "reserved" },
  { what: "ifname", input: "eth0:1", parse: net.validateIfName, code: "ifname-invalid", says: `contains ":"` },
  { what: "ifname", input: "a/b", parse: net.validateIfName, code: "ifname-invalid", says: `contains "/"` },
  { what: "ifname", input: "a b", parse: net.validateIfName, code: "ifname-invalid", says: `contains " "` },
  { what: "container id", input: "a/b", parse: net.validateContainerId, code: "container-id-invalid", says: `contains "/" at position 2` },
  { what: "container id", input: "-abc", parse: net.validateContainerId, code: "container-id-invalid", says: "must start with a letter or digit" },
  { what: "container id", input: "", parse: net.validateContainerId, code: "container-id-invalid", says: "empty" },
  { what: "container id", input: "a".repeat(129), parse: net.validateContainerId, code: "container-id-invalid", says: "129 characters" },
  { what: "network name", input: "my net", parse: net.validateNetworkName, code: "network-name-invalid", says: "position 3" },
  { what: "network name", input: ".hidden", parse: net.validateNetworkName, code: "network-name-invalid", says: "must start" },
  { what: "DNS label", input: "-web", parse: net.validateDnsLabel, code: "dns-label-invalid", says: `start with "-"` },
  { what: "DNS label", input: "web-", parse: net.validateDnsLabel, code: "dns-label-invalid", says: `end with "-"` },
  { what: "DNS label", input: "web_1", parse: net.validateDnsLabel, code: "dns-label-invalid", says: `"_"` },
  { what: "DNS label", input: "a".repeat(64), parse: net.validateDnsLabel, code: "dns-label-invalid", says: "64 characters" },
  { what: "port", input: "0", parse: net.parsePort, code: "port-invalid", says: "out of range 1-65535" },
  { what: "port", input: "65536", parse: net.parsePort, code: "port-invalid", says: "out of range 1-65535" },
  { what: "port", input: "x", parse: net.parsePort, code: "port-invalid", says: "not a decimal integer" },
  { what: "port", input: "", parse: net.parsePort, code: "port-invalid", says: "empty" },
  { what: "port", input: "80.5", parse: net.parsePort, code: "port-invalid", says: "not a decimal integer" },
  { what: "port", input: "+80", parse: net.parsePort, code: "port-invalid", says: "not a decimal integer" },
  { what: "port mapping", input: "80", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "a host port is required" },
  { what: "port mapping", input: "80/udp", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "a host port is required" },
  { what: "port mapping", input: "127.0.0.1::80", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "a host port is required" },
  { what: "port mapping", input: "[::1]:80", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "a host port is required" },
  { what: "port mapping", input: "1-3:1-2", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "has 3 ports but container port range \"1-2\" has 2" },
  { what: "port mapping", input: "8080-8081:80", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "same length" },
  { what: "port mapping", input: "3-1:3-1", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "ends before it starts" },
  { what: "port mapping", input: "8080:80/icmp", parse: net.parsePortMappings, code: "port-mapping-invalid", says: `protocol "icmp"` },
  { what: "port mapping", input: "8080:80/", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "missing protocol" },
  { what: "port mapping", input: "0:80", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "host port 0 is out of range" },
  { what: "port mapping", input: "8080:70000", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "container port 70000 is out of range" },
  { what: "port mapping", input: "8080:", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "container port is empty" },
  { what: "port mapping", input: "1.2.3:8080:80", parse: net.parsePortMappings, code: "port-mapping-invalid", says: `host IP "1.2.3"` },
  { what: "port mapping", input: "fe80::1:80", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "brackets" },
  { what: "port mapping", input: "[::1:8080:80", parse: net.parsePortMappings, code: "port-mapping-invalid", says: `missing "]"` },
  { what: "port mapping", input: ":8080:80", parse: net.parsePortMappings, code: "port-mapping-invalid", says: "host IP is empty" },
  { what: "port mapping", input: "8000-8002:9000-9002", parse: net.parsePortMapping, code: "port-mapping-invalid", says: "expected a single port" },
];

describe("bad inputs are rejected with a clear BerthError", () => {
  for (const c of cases) {
    test(`${c.what} ${JSON.stringify(c.input)}`, () => {
      const e = caught(() => c.parse(c.input, "the-field"));
      expect(e.kind).toBe("invalid");
      expect(e.code).toBe(c.code);
      expect(e.field).toBe("the-field");
      expect(e.message).toContain(c.input.length > 200 ? c.input.slice(0, 200) : c.input);
      if (c.says !== undefined) expect(e.message).toContain(c.says);
    });
  }
});

test("exact messages from the spec", () => {
  expect(caught(() => IP.parse("999.1.1.1")).message).toBe(`invalid IPv4 address "999.1.1.1": octet 999 is out of range 0-255`);
  expect(caught(() => Prefix.parse("10.0.0.0/33")).message).toBe(`invalid prefix "10.0.0.0/33": length 33 exceeds 32 for IPv4`);
  expect(caught(() => net.validateIfName("abcdefghijklmnop")).message).toBe(
    `interface name "abcdefghijklmnop" is 16 characters; Linux allows at most 15`,
  );
});

test("field defaults: undefined for IP/Prefix/port, named for the name validators", () => {
  expect(caught(() => IP.parse("x")).field).toBeUndefined();
  expect(caught(() => Prefix.parse("x")).field).toBeUndefined();
  expect(caught(() => net.parsePort("x")).field).toBeUndefined();
  expect(caught(() => net.validateIfName("a/b")).field).toBe("ifname");
  expect(caught(() => net.validateContainerId("a/b")).field).toBe("containerId");
  expect(caught(() => net.validateNetworkName("a/b")).field).toBe("name");
  expect(caught(() => net.validateDnsLabel("a/b")).field).toBeUndefined();
  expect(caught(() => net.parsePortMappings("80")).field).toBe("publish");
  expect(caught(() => IP.parse("x", "gateway")).toJSON()).toEqual({
    kind: "invalid",
    code: "ip-invalid",
    message: `invalid IP address "x": not an IPv4 or IPv6 address`,
    field: "gateway",
  });
});

test("non-string input from JSON is rejected as invalid, not a crash", () => {
  const bogus = [undefined, null, 42, {}, ["1.2.3.4"]] as unknown as string[];
  for (const v of bogus) {
    for (const f of [IP.parse, Prefix.parse, Prefix.parseLoose, IPNet.parse, MAC.parse, net.validateIfName, net.validateContainerId, net.validateNetworkName, net.validateDnsLabel, net.parsePortMappings]) {
      const e = caught(() => f(v, "f"));
      expect(e.kind).toBe("invalid");
      expect(e.field).toBe("f");
    }
    expect(IP.tryParse(v)).toBeUndefined();
  }
  expect(caught(() => net.parsePort(null as unknown as string)).kind).toBe("invalid");
});

test("huge inputs produce bounded messages", () => {
  const e = caught(() => IP.parse("1".repeat(100_000)));
  expect(e.message.length).toBeLessThan(400);
});

test("index re-exports the whole API", () => {
  for (const name of [
    "IP",
    "Prefix",
    "IPNet",
    "MAC",
    "validateIfName",
    "validateContainerId",
    "validateNetworkName",
    "validateDnsLabel",
    "parsePort",
    "parsePortMapping",
    "parsePortMappings",
    "formatPortMapping",
    "PROTOCOLS",
  ]) {
    expect(net).toHaveProperty(name);
  }
});

test("values serialise as their canonical strings in JSON", () => {
  const doc = {
    ip: IP.parse("2001:DB8::0001"),
    subnet: Prefix.parse("10.1.0.0/16"),
    addr: IPNet.parse("10.1.2.3/16"),
    mac: MAC.parse("02-42-AC-11-00-02"),
  };
  expect(JSON.parse(JSON.stringify(doc))).toEqual({
    ip: "2001:db8::1",
    subnet: "10.1.0.0/16",
    addr: "10.1.2.3/16",
    mac: "02:42:ac:11:00:02",
  });
});

test("values are frozen", () => {
  const ip = IP.parse("10.0.0.1");
  expect(Object.isFrozen(ip)).toBe(true);
  expect(Object.isFrozen(Prefix.parse("10.0.0.0/8"))).toBe(true);
  expect(Object.isFrozen(IPNet.parse("10.0.0.1/8"))).toBe(true);
  const mac = MAC.parse("02:42:ac:11:00:02");
  const bytes = mac.bytes;
  bytes[0] = 0xff;
  expect(mac.toString()).toBe("02:42:ac:11:00:02");
});
