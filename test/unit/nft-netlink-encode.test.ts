// Set keys in the kernel's layout (src/dataplane/netlink/nftables.ts) and portmap's keys in nft
// syntax turned into typed fields (src/cni/plugins/portmap-fast.ts).
import { describe, expect, test } from "bun:test";
import { encodeKey } from "../../src/dataplane/netlink/nftables.ts";
import { fastAddChanges, keyFields, keyPort } from "../../src/cni/plugins/portmap-fast.ts";
import { IP } from "../../src/net/index.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("nftables set keys", () => {
  test("a single field is its bytes; a concatenation pads each field to 32 bits", () => {
    expect(hex(encodeKey([{ ip: IP.parse("10.5.0.2") }]))).toBe("0a050002");
    expect(hex(encodeKey([{ ip: IP.parse("fd00::2") }]))).toBe("fd000000000000000000000000000002");
    expect(hex(encodeKey([{ proto: "tcp" }, { port: 8080 }]))).toBe("060000001f900000");
    expect(hex(encodeKey([{ ip: IP.parse("192.0.2.7") }, { proto: "udp" }, { port: 53 }]))).toBe("c000020711000000" + "00350000");
    expect(hex(encodeKey([{ ip: IP.parse("10.0.0.1") }, { ip: IP.parse("10.0.0.1") }]))).toBe("0a0000010a000001");
  });

  test("portmap keys: a prefix is a range, an address a single key", () => {
    const any = keyFields("0.0.0.0/0 . tcp . 8080");
    expect(hex(encodeKey(any.first))).toBe(hex(encodeKey([{ ip: IP.parse("0.0.0.0") }, { proto: "tcp" }, { port: 8080 }])));
    expect(hex(encodeKey(any.last))).toBe(hex(encodeKey([{ ip: IP.parse("255.255.255.255") }, { proto: "tcp" }, { port: 8080 }])));
    const one = keyFields("fd00::7 . sctp . 9");
    expect(one.first).toEqual(one.last);
    expect(keyPort("0.0.0.0/0 . tcp . 8080")).toEqual({ port: "tcp . 8080", everyAddress: true });
    expect(keyPort("::/0 . udp . 53")).toEqual({ port: "udp . 53", everyAddress: true });
    expect(keyPort("192.0.2.7 . udp . 53")).toEqual({ port: "udp . 53", everyAddress: false });
  });

  test("fast ADD changes: index only specific-address ports, create every element with its owner", () => {
    const ch = fastAddChanges(
      [
        { set: "dnat4", key: "0.0.0.0/0 . tcp . 80", value: "10.0.0.2 . 80" },
        { set: "dnat4", key: "192.0.2.7 . udp . 53", value: "10.0.0.2 . 53" },
        { set: "local4", key: "10.0.0.2" },
      ],
      "n/c/eth0",
    )!;
    expect(ch.map((c) => `${c.op} ${c.set}`)).toEqual(["add hostports4", "create dnat4", "create dnat4", "create local4"]);
    expect(hex(ch[0]!.elements[0]!.key)).toBe("1100000000350000");
    const any = ch[1]!.elements[0]!;
    expect([hex(any.key), hex(any.keyEnd!), hex(any.data!), any.comment]).toEqual(["00000000" + "06000000" + "00500000", "ffffffff" + "06000000" + "00500000", "0a000002" + "00500000", "n/c/eth0"]);
    expect(ch[3]!.elements[0]!.keyEnd).toBeUndefined();
    // a verdict (conditions) is left to the nft path
    expect(fastAddChanges([{ set: "cond4", key: "0.0.0.0/0 . tcp . 80", value: "goto cond_x" }], "t")).toBeUndefined();
  });
});
