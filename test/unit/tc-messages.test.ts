/**
 * Traffic-control messages (src/dataplane/netlink/tc-messages.ts) against the
 * bytes iproute2 6.1's `tc` sent for the same commands (captured with
 * `strace -f -e trace=sendmsg -xx tc ...` in a throwaway namespace where the
 * veth d0 had ifindex 3 and the ifb ifb0 ifindex 4), and the tbf arithmetic
 * against what `tc -j qdisc show` printed.
 */
import { describe, expect, test } from "bun:test";
import { NLM_F_ACK, NLM_F_REQUEST, type NlMsg, parseAttrs } from "../../src/dataplane/netlink/codec.ts";
import * as tcm from "../../src/dataplane/netlink/tc-messages.ts";

/** The message after the 16-byte nlmsghdr, and the header's type and flags. */
function body(m: ReturnType<typeof tcm.addIngressQdisc>): { type: number; flags: number; hex: string } {
  const b = Buffer.from(m.finish(1, NLM_F_REQUEST | NLM_F_ACK));
  expect(b.readUInt32LE(0)).toBe(b.length);
  return { type: b.readUInt16LE(4), flags: b.readUInt16LE(6), hex: b.subarray(16).toString("hex") };
}
const tcmsgHex = (ifindex: number, handle: number, parent: number, info: number): string => {
  const b = Buffer.alloc(20);
  b.writeInt32LE(ifindex, 4);
  b.writeUInt32LE(handle, 8);
  b.writeUInt32LE(parent, 12);
  b.writeUInt32LE(info, 16);
  return b.toString("hex");
};
const x = (s: string): string => s.replaceAll(/\\x/g, "");

describe("messages as tc sends them", () => {
  test("qdisc replace dev d0 root handle 1: tbf rate 1000000bit burst 12500b latency 25ms (without the rate table)", () => {
    const m = body(tcm.replaceRootTbf(3, { rateBits: 1_000_000, burstBytes: 12_500, latencyMs: 25 }));
    expect(m.type).toBe(tcm.RTM_NEWQDISC);
    expect(m.flags).toBe(NLM_F_REQUEST | NLM_F_ACK | 0x100 | 0x400); // REPLACE | CREATE
    const parms = x(
      "\\x28\\x00\\x01\\x00\\x03\\x01\\x00\\x00\\xff\\xff\\x00\\x00\\x48\\xe8\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x09\\x3d\\x00\\x00\\x84\\xd7\\x17\\x00\\x00\\x00\\x00\\x00",
    );
    const burst = x("\\x08\\x00\\x06\\x00\\xd4\\x30\\x00\\x00");
    expect(m.hex).toBe(`${tcmsgHex(3, 0x10000, 0xffffffff, 0)}08000100${Buffer.from("tbf\0").toString("hex")}34000200${parms}${burst}`);
  });

  test("tbf above 2^32 bytes/s: rate capped in the struct, TCA_TBF_RATE64 after the burst (rate 40gbit burst 1000000b)", () => {
    const hex = body(tcm.replaceRootTbf(3, { rateBits: 40e9, burstBytes: 1_000_000, latencyMs: 25 })).hex;
    // PARMS: rate 0xffffffff, limit 126000000, buffer 3625 ticks (tc computes it from the capped rate)
    expect(hex).toContain(x("\\x28\\x00\\x01\\x00\\x03\\x01\\x00\\x00\\xff\\xff\\x00\\x00\\xff\\xff\\xff\\xff"));
    expect(hex).toContain(x("\\x80\\x9b\\x82\\x07\\x29\\x0e\\x00\\x00\\x00\\x00\\x00\\x00\\x08\\x00\\x06\\x00\\x40\\x42\\x0f\\x00\\x0c\\x00\\x04\\x00\\x00\\xf2\\x05\\x2a\\x01\\x00\\x00\\x00"));
  });

  test("qdisc add dev d0 handle ffff: ingress", () => {
    const m = body(tcm.addIngressQdisc(3));
    expect(m.flags).toBe(NLM_F_REQUEST | NLM_F_ACK | 0x200 | 0x400); // EXCL | CREATE
    expect(m.hex).toBe(`${tcmsgHex(3, 0xffff0000, 0xfffffff1, 0)}0c000100${Buffer.from("ingress\0").toString("hex")}`);
  });

  test("filter add dev d0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ifb0", () => {
    const m = body(tcm.addIngressRedirect(3, 4));
    expect(m.type).toBe(tcm.RTM_NEWTFILTER);
    expect(m.flags).toBe(NLM_F_REQUEST | NLM_F_ACK | 0x200 | 0x400);
    const opts = x(
      "\\x38\\x00\\x07\\x00\\x34\\x00\\x01\\x00\\x0b\\x00\\x01\\x00\\x6d\\x69\\x72\\x72\\x65\\x64\\x00\\x00\\x24\\x00\\x02\\x80\\x20\\x00\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x04\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x04\\x00\\x00\\x00\\x24\\x00\\x05\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00",
    );
    expect(m.hex).toBe(`${tcmsgHex(3, 0, 0xffff0000, 66304)}08000100${Buffer.from("u32\0").toString("hex")}60000200${opts}`);
  });
});

describe("tbf arithmetic (iproute2's, with this kernel's psched clock)", () => {
  test("limit and buffer as tc computes them", () => {
    expect(tcm.psched()).toBe(15.625);
    expect(tcm.tbfParams({ rateBits: 1_000_000, burstBytes: 12_500, latencyMs: 25 })).toEqual({ rate64: 125_000, limit: 15_625, buffer: 1_562_500, burst: 12_500 });
    expect(tcm.tbfParams({ rateBits: 40e9, burstBytes: 1_000_000, latencyMs: 25 })).toEqual({ rate64: 5e9, limit: 126_000_000, buffer: 3625, burst: 1_000_000 });
    expect(() => tcm.tbfParams({ rateBits: 0, burstBytes: 1, latencyMs: 25 })).toThrow(RangeError);
  });

  test("a dumped tbf decodes to the rate and burst tc -j prints (kernel buffer 3124 ticks at 5 GB/s: burst 995000)", () => {
    const q = Buffer.alloc(36);
    q.writeUInt32LE(0xffffffff, 8);
    q.writeUInt32LE(3124, 28);
    const r64 = Buffer.alloc(8);
    r64.writeBigUInt64LE(5_000_000_000n, 0);
    const opts = Buffer.concat([Buffer.from([40, 0, 1, 0]), q, Buffer.from([12, 0, 4, 0]), r64]);
    expect(tcm.decodeTbf(new Uint8Array(opts))).toEqual({ rateBytes: 5e9, burstBytes: 995_000 });
  });

  test("the mirred target of a dumped u32 filter", () => {
    const m = tcm.addIngressRedirect(3, 7).finish(1);
    const nlmsg: NlMsg = { type: tcm.RTM_NEWTFILTER, flags: 0, seq: 1, pid: 0, body: m.subarray(16) };
    const f = tcm.parseTcMsg(nlmsg);
    expect(f).toMatchObject({ ifindex: 3, parent: 0xffff0000, kind: "u32" });
    expect(parseAttrs(f.options!).has(tcm.TCA_U32_SEL)).toBe(true);
    expect(tcm.redirectTargets(f)).toEqual([7]);
    expect(tcm.qdiscHandle(0xffff0000)).toBe("ffff:");
    expect(tcm.qdiscHandle(0x10000)).toBe("1:");
  });
});
