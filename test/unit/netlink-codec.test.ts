/**
 * The rtnetlink codec against bytes iproute2 sent (captured with
 * `strace -e trace=sendmsg -xx ip ...`) and a real kernel dump
 * (test/fixtures/netlink-dump.json, with `ip -j` of the same moment).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MsgWriter, NLM_F_ACK, NLM_F_REQUEST, type NlMsg, parseAttrs, parseError, splitMessages } from "../../src/dataplane/netlink/codec.ts";
import * as msg from "../../src/dataplane/netlink/messages.ts";
import { decodeAddresses, decodeLinks, decodeRoutes } from "../../src/dataplane/netlink/read.ts";
import { IP, IPNet, MAC, Prefix } from "../../src/net/index.ts";

const SEQ = 1795469492;
/** The bytes of `m` as sent with NLM_F_REQUEST|NLM_F_ACK. */
const wire = (m: MsgWriter, seq = SEQ): string => Buffer.from(m.finish(seq, NLM_F_REQUEST | NLM_F_ACK)).toString("hex");
/** nlmsghdr + payload, from strace's decoding of one sendmsg. */
function captured(len: number, type: number, flags: number, seq: number, payload: string): string {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(len, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  const p = Buffer.from(payload.replaceAll("\\x", ""), "hex");
  expect(16 + p.length).toBe(len);
  return Buffer.concat([h, p]).toString("hex");
}

describe("netlink requests are byte-identical to iproute2's", () => {
  test("ip link add name br1 type bridge stp_state 0 forward_delay 0", () => {
    expect(wire(msg.newBridge("br1", {}))).toBe(
      captured(
        76,
        0x10,
        0x605,
        SEQ,
        "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x08\\x00\\x03\\x00\\x62\\x72\\x31\\x00\\x24\\x00\\x12\\x00\\x0a\\x00\\x01\\x00\\x62\\x72\\x69\\x64\\x67\\x65\\x00\\x00\\x14\\x00\\x02\\x00\\x08\\x00\\x05\\x00\\x00\\x00\\x00\\x00\\x08\\x00\\x01\\x00\\x00\\x00\\x00\\x00",
      ),
    );
  });

  test("ip address add 10.9.0.1/24 brd + dev br0 (ifindex 2)", () => {
    expect(wire(msg.address("add", 2, IPNet.parse("10.9.0.1/24"), { broadcast: true }))).toBe(
      captured(48, 0x14, 0x605, SEQ, "\\x02\\x18\\x00\\x00\\x02\\x00\\x00\\x00\\x08\\x00\\x02\\x00\\x0a\\x09\\x00\\x01\\x08\\x00\\x01\\x00\\x0a\\x09\\x00\\x01\\x08\\x00\\x04\\x00\\x0a\\x09\\x00\\xff"),
    );
  });

  test("ip route add 10.50.0.0/16 dev br0 mtu 1300 advmss 1200 metric 50", () => {
    const m = msg.route("add", { dst: Prefix.parse("10.50.0.0/16"), dev: "br0", mtu: 1300, advmss: 1200, metric: 50 }, 2);
    expect(wire(m, SEQ + 4)).toBe(
      captured(
        72,
        0x18,
        0x605,
        SEQ + 4,
        "\\x02\\x10\\x00\\x00\\xfe\\x03\\xfd\\x01\\x00\\x00\\x00\\x00\\x08\\x00\\x01\\x00\\x0a\\x32\\x00\\x00\\x08\\x00\\x06\\x00\\x32\\x00\\x00\\x00\\x08\\x00\\x04\\x00\\x02\\x00\\x00\\x00\\x14\\x00\\x08\\x00\\x08\\x00\\x02\\x00\\x14\\x05\\x00\\x00\\x08\\x00\\x08\\x00\\xb0\\x04\\x00\\x00",
      ),
    );
  });

  test("bridge link set dev v0 hairpin on (ifindex 5)", () => {
    expect(wire(msg.setBridgePort(5, { hairpin: true }), SEQ + 5)).toBe(
      captured(44, 0x13, 0x5, SEQ + 5, "\\x07\\x00\\x00\\x00\\x05\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x0c\\x00\\x0c\\x80\\x05\\x00\\x04\\x00\\x01\\x00\\x00\\x00"),
    );
  });

  test("ip link set dev v0 up (ifindex 5)", () => {
    expect(wire(msg.setLink(5, { up: true }, {}), SEQ + 4)).toBe(
      captured(32, 0x10, 0x5, SEQ + 4, "\\x00\\x00\\x00\\x00\\x05\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x01\\x00\\x00\\x00"),
    );
  });

  test("veth with the peer in another namespace nests the peer's ifinfomsg and attributes", () => {
    const bytes = msg.newVeth("ve0", "eth0", { mtu: 1400, mac: MAC.parse("02:00:00:00:00:01"), peerMac: MAC.parse("02:00:00:00:00:02"), peerNs: { pid: 4242 } }).finish(1);
    const attrs = parseAttrs(bytes.subarray(16), 16);
    const info = parseAttrs(attrs.get(18) ?? new Uint8Array());
    expect(Buffer.from(info.get(1) ?? []).toString()).toBe("veth");
    const peer = parseAttrs(parseAttrs(info.get(2) ?? new Uint8Array()).get(1) ?? new Uint8Array(), 16);
    expect(Buffer.from(peer.get(3) ?? []).toString()).toBe("eth0\0");
    expect(Buffer.from(peer.get(4) ?? []).readUInt32LE(0)).toBe(1400);
    expect(MAC.fromBytes(peer.get(1) ?? new Uint8Array()).toString()).toBe("02:00:00:00:00:02");
    expect(Buffer.from(peer.get(19) ?? []).readUInt32LE(0)).toBe(4242);
  });

  test("IPv6 address with nodad carries IFA_F_NODAD in the header and IFA_FLAGS", () => {
    const b = msg.address("add", 3, IPNet.parse("fd00::2/64"), { noDad: true }).finish(1);
    expect(b[16]).toBe(10);
    expect(b[17]).toBe(64);
    expect(b[18]).toBe(0x02);
    const attrs = parseAttrs(b.subarray(16), 8);
    expect(IP.fromBytes(attrs.get(1) ?? new Uint8Array()).toString()).toBe("fd00::2");
    expect(Buffer.from(attrs.get(8) ?? []).readUInt32LE(0)).toBe(0x02);
  });

  test("nested attributes get their length when closed; an odd payload is padded", () => {
    const m = new MsgWriter(16, 0);
    const n = m.nest(18);
    m.str(1, "ab");
    m.end(n);
    expect(Buffer.from(m.finish(7)).toString("hex")).toBe("1c000000100000000700000000000000" + "0c001200" + "07000100616200" + "00");
  });
});

describe("decoding", () => {
  test("an NLMSG_ERROR with extended ack gives errno and the kernel's message", () => {
    // error -17, capped original header, NLMSGERR_ATTR_MSG "exists"
    const body = Buffer.alloc(4 + 16 + 12);
    body.writeInt32LE(-17, 0);
    body.writeUInt32LE(16, 4);
    body.writeUInt16LE(11, 20);
    body.writeUInt16LE(1, 22);
    body.write("exists\0", 24);
    const m: NlMsg = { type: 2, flags: 0x300, seq: 1, pid: 0, body: new Uint8Array(body) };
    expect(parseError(m)).toEqual({ errno: 17, extack: "exists" });
  });

  const fx = JSON.parse(readFileSync(join(import.meta.dir, "..", "fixtures", "netlink-dump.json"), "utf8")) as {
    links: string[];
    addrs: string[];
    routes4: string[];
    routes6: string[];
    ipLinks: { ifname: string; ifindex: number; mtu: number; txqlen?: number; address?: string; link_type?: string; flags: string[]; operstate: string; master?: string; linkinfo?: { info_kind?: string } }[];
    ipAddrs: { ifname: string; addr_info: { local: string; prefixlen: number; scope: string }[] }[];
    ipRoutes4: { dst: string; gateway?: string; dev?: string }[];
    ipRoutes6: { dst: string; gateway?: string; dev?: string }[];
  };
  const msgs = (hex: string[]): NlMsg[] => hex.flatMap((h) => splitMessages(new Uint8Array(Buffer.from(h, "hex"))));

  test("a real link dump decodes to what ip -j -d link show printed", () => {
    const links = decodeLinks(msgs(fx.links));
    expect(links.map((l) => l.name)).toEqual(fx.ipLinks.map((l) => l.ifname));
    for (const [i, l] of links.entries()) {
      const j = fx.ipLinks[i];
      if (!j) throw new Error("missing");
      expect(l.index).toBe(j.ifindex);
      expect(l.mtu).toBe(j.mtu);
      expect(l.kind).toBe(j.linkinfo?.info_kind);
      expect(l.up).toBe(j.flags.includes("UP"));
      expect(l.operstate).toBe(j.operstate);
      expect(l.master).toBe(j.master);
      expect(l.mac?.toString()).toBe(j.link_type === "ether" ? j.address : undefined);
      expect(l.txqlen).toBe(j.txqlen);
    }
    expect(links.find((l) => l.name === "v0")?.master).toBe("br0");
  });

  test("a real address dump decodes to what ip -j addr show printed, in the same order", () => {
    const links = decodeLinks(msgs(fx.links));
    const names = new Map(links.map((l) => [l.index, l.name]));
    const want = fx.ipAddrs.flatMap((l) => l.addr_info.map((a) => ({ dev: l.ifname, addr: `${a.local}/${a.prefixlen}`, scope: a.scope })));
    expect(decodeAddresses(msgs(fx.addrs), names).map((a) => ({ dev: a.dev, addr: a.addr.toString(), scope: a.scope }))).toEqual(want);
    expect(decodeAddresses(msgs(fx.addrs), names, links.find((l) => l.name === "br0")?.index).map((a) => a.addr.toString())).toContain("10.9.0.1/24");
  });

  test("a real route dump decodes to what ip -j route show printed (main table only)", () => {
    const names = new Map(decodeLinks(msgs(fx.links)).map((l) => [l.index, l.name]));
    for (const [fam, hex, want] of [
      [4, fx.routes4, fx.ipRoutes4],
      [6, fx.routes6, fx.ipRoutes6],
    ] as const) {
      const got = decodeRoutes(msgs(hex), fam, names).map((r) => ({ dst: r.dst, gateway: r.gateway?.toString(), dev: r.dev }));
      expect(got).toEqual(want.map((r) => ({ dst: r.dst, gateway: r.gateway, dev: r.dev })));
    }
    expect(decodeRoutes(msgs(fx.routes4), 4, names).some((r) => r.dst === "default" && r.gateway?.toString() === "10.9.0.254")).toBe(true);
  });
});
