// Query handling: local answers (A/AAAA/PTR/NODATA), forwarding decisions, round-robin order,
// truncation, and hostile input (malformed packets never crash and get FORMERR).
import { describe, expect, test } from "bun:test";
import * as dnsPacket from "dns-packet";
import fc from "fast-check";
import { NameTable } from "../../src/dns/names.ts";
import { type Decision, failureReply, handleQuery, LOCAL_TTL, type QueryContext, questionEndOffset, RCODE, sameQuestion } from "../../src/dns/packet.ts";
import { assertRootUntouched } from "../harness/sandbox.ts";
import { ep, net, query } from "../fixtures/dns-helpers.ts";

assertRootUntouched();

const many = Array.from({ length: 60 }, (_, i) => ep("F", `m${i}`, ["crowd"], [`10.1.1.${i + 1}/16`]));
const table = NameTable.build(
  [net("F", "front", ["10.1.0.0/16", "fd00:1::/64"]), net("B", "back", ["10.2.0.0/24"])],
  [ep("F", "a", ["web"], ["10.1.0.2/16", "fd00:1::2/64"]), ep("F", "b", ["web"], ["10.1.0.3/16"]), ep("B", "c", ["db"], ["10.2.0.4/24"]), ...many],
);
const ctx = (o: Partial<QueryContext> = {}): QueryContext => ({ table, scope: new Set(["F"]), forward: true, tcp: false, ...o });

function decoded(d: Decision): dnsPacket.DecodedPacket & { rcode?: string } {
  if (d.kind !== "reply") throw new Error(`expected a reply, got ${d.kind}`);
  return dnsPacket.decode(d.packet) as dnsPacket.DecodedPacket & { rcode?: string };
}
const data = (p: dnsPacket.Packet) => (p.answers ?? []).map((a) => String((a as { data: unknown }).data));

describe("local answers", () => {
  test("A: authoritative, id and question echoed, TTL", () => {
    const p = decoded(handleQuery(query("WEB", "A", { id: 777 }), ctx({ random: () => 0 })));
    expect(p.id).toBe(777);
    expect(p.type).toBe("response");
    expect(p.flag_aa && p.flag_rd && p.flag_ra).toBe(true);
    expect(p.rcode).toBe("NOERROR");
    expect(p.questions).toEqual([{ name: "WEB", type: "A", class: "IN" }]);
    expect(data(p).sort()).toEqual(["10.1.0.2", "10.1.0.3"]);
    expect((p.answers ?? []).every((a) => (a as { ttl?: number }).ttl === LOCAL_TTL && a.name === "WEB")).toBe(true);
  });

  test("AAAA, ANY, and NODATA for other types of a known name", () => {
    expect(data(decoded(handleQuery(query("web", "AAAA"), ctx())))).toEqual(["fd00:1::2"]);
    expect(data(decoded(handleQuery(query("web", "ANY" as dnsPacket.RecordType), ctx()))).sort()).toEqual(["10.1.0.2", "10.1.0.3", "fd00:1::2"]);
    const mx = decoded(handleQuery(query("web", "MX"), ctx()));
    expect(mx.rcode).toBe("NOERROR");
    expect(mx.answers).toEqual([]);
  });

  test("round robin: every permutation order comes from the random source", () => {
    const seq = (vals: number[]) => {
      let i = 0;
      return () => vals[i++ % vals.length]!;
    };
    const first = data(decoded(handleQuery(query("web"), ctx({ random: seq([0.99]) }))));
    const second = data(decoded(handleQuery(query("web"), ctx({ random: seq([0]) }))));
    expect(first).not.toEqual(second);
    expect([...first].sort()).toEqual([...second].sort());
    // with Math.random, both orders show up
    const orders = new Set<string>();
    for (let i = 0; i < 64; i++) orders.add(data(decoded(handleQuery(query("web"), ctx())))[0]!);
    expect(orders.size).toBe(2);
  });

  test("scope: names of other networks are not answered locally but forwarded", () => {
    const d = handleQuery(query("db"), ctx());
    expect(d.kind).toBe("forward");
    expect(data(decoded(handleQuery(query("db"), ctx({ scope: new Set(["B"]) }))))).toEqual(["10.2.0.4"]);
  });

  test("PTR v4 and v6; unknown address in an attached subnet: NXDOMAIN; elsewhere: forward", () => {
    expect(data(decoded(handleQuery(query("2.0.1.10.in-addr.arpa", "PTR"), ctx())))).toEqual(["web"]);
    const v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa";
    expect(data(decoded(handleQuery(query(v6, "PTR"), ctx())))).toEqual(["web"]);
    const nx = decoded(handleQuery(query("99.0.1.10.in-addr.arpa", "PTR"), ctx()));
    expect(nx.rcode).toBe("NXDOMAIN");
    expect(nx.flag_aa).toBe(true);
    expect(handleQuery(query("4.0.2.10.in-addr.arpa", "PTR"), ctx()).kind).toBe("forward"); // back is not in scope
    expect(handleQuery(query("8.8.8.8.in-addr.arpa", "PTR"), ctx()).kind).toBe("forward");
  });

  test("forward decisions carry the question's end; internal-only scope refuses instead", () => {
    const q = query("www.example.com");
    const d = handleQuery(q, ctx());
    expect(d).toEqual({ kind: "forward", name: "www.example.com", type: "A", questionEnd: q.length });
    const r = decoded(handleQuery(q, ctx({ forward: false })));
    expect(r.rcode).toBe("REFUSED");
    expect(r.flag_ra).toBe(false);
    expect(handleQuery(query("version.bind", "TXT", { cls: "CH" }), ctx()).kind).toBe("forward");
  });

  test("too big for UDP: TC set and no answers; EDNS raises the limit; TCP has none", () => {
    const udp = decoded(handleQuery(query("crowd"), ctx()));
    expect(udp.flag_tc).toBe(true);
    expect(udp.answers).toEqual([]);
    const edns = decoded(handleQuery(query("crowd", "A", { edns: 4096 }), ctx()));
    expect(edns.flag_tc).toBe(false);
    expect(edns.answers?.length).toBe(60);
    expect(edns.additionals?.some((a) => a.type === "OPT")).toBe(true);
    const tcp = decoded(handleQuery(query("crowd"), ctx({ tcp: true })));
    expect(tcp.answers?.length).toBe(60);
  });
});

/** A reply must decode, be a response with the query's id and, when the query had a question, echo its bytes. */
function expectSaneReply(query: Uint8Array, d: Decision): void {
  if (d.kind !== "reply") return;
  expect(d.packet[0]).toBe(query[0]);
  expect(d.packet[1]).toBe(query[1]);
  const p = dnsPacket.decode(d.packet);
  expect(p.type).toBe("response");
  expect(d.packet.length).toBeLessThanOrEqual(4096);
  if ((p.questions ?? []).length === 1) {
    const end = questionEndOffset(query);
    expect(Buffer.from(d.packet.subarray(12, end)).equals(Buffer.from(query.subarray(12, end)))).toBe(true);
  }
}

describe("hostile and odd input", () => {
  test("shorter than a header, or a response: dropped", () => {
    expect(handleQuery(new Uint8Array(0), ctx()).kind).toBe("drop");
    expect(handleQuery(new Uint8Array(11), ctx()).kind).toBe("drop");
    const resp = Buffer.from(query("web"));
    resp[2]! |= 0x80;
    expect(handleQuery(resp, ctx()).kind).toBe("drop");
  });

  test("truncated or garbage after the header: FORMERR with the query's id", () => {
    const q = query("web", "A", { id: 0xbeef });
    for (const bad of [q.subarray(0, 14), q.subarray(0, q.length - 1), Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0xff, 0, 1, 0, 1])])]) {
      const d = handleQuery(bad, ctx());
      expect(d.kind).toBe("reply");
      const p = decoded(d);
      expect(p.id).toBe(0xbeef);
      expect(p.rcode).toBe("FORMERR");
    }
  });

  test("no question or several questions: FORMERR; other opcodes: NOTIMP", () => {
    const none = Buffer.from(query("web"));
    none.writeUInt16BE(0, 4);
    expect(decoded(handleQuery(none.subarray(0, 12), ctx())).rcode).toBe("FORMERR");
    const two = dnsPacket.encode({ type: "query", id: 1, questions: [{ type: "A", name: "web" }, { type: "A", name: "db" }] });
    expect(decoded(handleQuery(two, ctx())).rcode).toBe("FORMERR");
    const notify = Buffer.from(query("web"));
    notify[2] = (notify[2]! & 0x87) | (4 << 3); // opcode NOTIFY
    expect(decoded(handleQuery(notify, ctx())).rcode).toBe("NOTIMP");
  });

  test("a compression loop in the question does not hang", () => {
    const loop = Buffer.concat([query("x").subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
    expect(decoded(handleQuery(loop, ctx())).rcode).toBe("FORMERR");
  });

  test("property: any bytes give a reply or a drop, never an exception; replies keep the id", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (bytes) => {
        expectSaneReply(bytes, handleQuery(bytes, ctx()));
        return true;
      }),
      { numRuns: 3000 },
    );
  });

  test("property: valid queries with a mutated byte never throw", () => {
    const base = query("web.front", "AAAA", { edns: 1232 });
    fc.assert(
      fc.property(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }), (i, v) => {
        const b = Buffer.from(base);
        b[i] = v;
        expectSaneReply(b, handleQuery(b, ctx()));
        expectSaneReply(b, handleQuery(b, ctx({ forward: false })));
        return true;
      }),
      { numRuns: 3000 },
    );
  });

  test("a label holding a dot (or bad UTF-8) is never answered locally, and the reply echoes the question bytes", () => {
    // "web.front" as ONE label must not match the qualified name web.front, and must survive the reply
    const q = Buffer.concat([query("x").subarray(0, 12), Buffer.from([9, ...Buffer.from("web.front"), 0, 0, 1, 0, 1])]);
    expect(handleQuery(q, ctx()).kind).toBe("forward");
    const refused = handleQuery(q, ctx({ forward: false }));
    expectSaneReply(q, refused);
    expect(decoded(refused).rcode).toBe("REFUSED");
    const bad = Buffer.concat([query("x").subarray(0, 12), Buffer.from([3, 0x77, 0xff, 0x62, 0, 0, 1, 0, 1])]);
    expect(handleQuery(bad, ctx()).kind).toBe("forward");
    expectSaneReply(bad, handleQuery(bad, ctx({ forward: false })));
  });
});

describe("helpers for forwarding", () => {
  test("questionEndOffset, sameQuestion and failureReply", () => {
    const q = query("Www.Example.com");
    const end = questionEndOffset(q);
    expect(end).toBe(q.length);
    const lower = Buffer.from(query("www.example.com"));
    expect(sameQuestion(q, lower, end)).toBe(true);
    expect(sameQuestion(q, query("www.example.org"), end)).toBe(false);
    const f = dnsPacket.decode(failureReply(q, RCODE.SERVFAIL, end)) as dnsPacket.DecodedPacket & { rcode?: string };
    expect(f.rcode).toBe("SERVFAIL");
    expect(f.id).toBe(4242);
    expect(f.questions?.[0]?.name).toBe("Www.Example.com");
  });
});
