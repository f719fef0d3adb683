/**
 * Query handling, pure: bytes of one query + the asker's scope in, a decision
 * out (a reply to send, a query to forward, or nothing). No sockets, no clock;
 * the randomness used for answer order is injectable for tests.
 *
 * Untrusted input: anything dns-packet cannot decode gets FORMERR (when there
 * is a header to answer) and never an exception; responses (QR set) are
 * dropped so two resolvers cannot loop. Replies echo the question's bytes as
 * received (never a re-encoding of the decoded name, which differs for labels
 * holding a "." or invalid UTF-8), and such names are never answered locally.
 */
import * as dnsPacket from "dns-packet";
import type { IP } from "../net/index.ts";
import { type NameTable, parseReverseName, type Scope } from "./names.ts";

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = (typeof RCODE)[keyof typeof RCODE];

const QR = 0x8000;
/** Our advertised EDNS UDP payload size (the DNS flag day 2020 value). */
export const EDNS_UDP_SIZE = 1232;
/** TTL of local answers: short, since containers come and go (Docker uses 600, aardvark 0). */
export const LOCAL_TTL = 5;

export interface QueryContext {
  table: NameTable;
  scope: Scope;
  /** May names not answered locally be forwarded upstream? (false: only internal networks attached) */
  forward: boolean;
  /** The query came over TCP (no 512-byte limit). */
  tcp: boolean;
  /** Uniform [0, 1) for answer order; Math.random by default. */
  random?: () => number;
}

export type Decision =
  | { kind: "reply"; packet: Buffer; rcode: number; answers: number }
  | { kind: "forward"; name: string; type: string; questionEnd: number }
  | { kind: "drop"; reason: string };

/** Decides what to do with one query. Never throws. */
export function handleQuery(buf: Uint8Array, ctx: QueryContext): Decision {
  try {
    return decide(buf, ctx);
  } catch {
    // a bug or an input dns-packet decodes but cannot re-encode: answer, never crash
    return buf.length >= 12 ? headerOnly(buf, RCODE.SERVFAIL) : { kind: "drop", reason: "unanswerable" };
  }
}

function decide(buf: Uint8Array, ctx: QueryContext): Decision {
  if (buf.length < 12) return { kind: "drop", reason: "shorter than a DNS header" };
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const flags = b.readUInt16BE(2);
  if (flags & QR) return { kind: "drop", reason: "a response, not a query" };
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return headerOnly(b, RCODE.NOTIMP);
  let q: dnsPacket.DecodedPacket;
  try {
    q = dnsPacket.decode(b);
  } catch {
    return headerOnly(b, RCODE.FORMERR);
  }
  const question = q.questions?.[0];
  if (!question || (q.questions?.length ?? 0) !== 1) return headerOnly(b, RCODE.FORMERR);
  const opt = (q.additionals ?? []).find((a): a is dnsPacket.OptAnswer => a.type === "OPT");
  const maxSize = ctx.tcp ? 65535 : opt ? Math.max(512, Math.min(opt.udpPayloadSize, 4096)) : 512;
  const rawQuestion = b.subarray(12, questionEndOffset(b));
  const reply = (answers: dnsPacket.Answer[], rcode: number) => encodeReply(q, rawQuestion, answers, rcode, ctx, opt !== undefined, maxSize);
  const forward = (): Decision => {
    if (!ctx.forward) return reply([], RCODE.REFUSED);
    return { kind: "forward", name: question.name, type: String(question.type), questionEnd: 12 + rawQuestion.length };
  };
  const cls = question.class ?? "IN";
  if (cls !== "IN" && cls !== "ANY") return forward();
  // a name whose labels do not survive decoding (a "." inside a label, bad UTF-8) is never ours
  if (!sameName(rawQuestion, question.name)) return forward();

  const type = String(question.type);
  if (type === "PTR") {
    const ip = parseReverseName(question.name);
    if (!ip) return forward();
    const names = ctx.table.reverse(ip, ctx.scope);
    if (names) {
      return reply(
        names.map((n) => ({ type: "PTR", name: question.name, ttl: LOCAL_TTL, class: "IN", data: n })),
        RCODE.NOERROR,
      );
    }
    // an address of an attached network without a name: ours to answer, never leaked upstream
    if (ctx.table.inScopeSubnets(ip, ctx.scope)) return reply([], RCODE.NXDOMAIN);
    return forward();
  }
  const v4 = ctx.table.lookup(question.name, 4, ctx.scope);
  const v6 = ctx.table.lookup(question.name, 6, ctx.scope);
  if (v4 === undefined && v6 === undefined) return forward();
  // the name is ours: answer A/AAAA (and ANY); other types exist-but-empty (NODATA)
  const random = ctx.random ?? Math.random;
  const answers: dnsPacket.Answer[] = [];
  const add = (ips: IP[] | undefined, t: "A" | "AAAA") => {
    for (const ip of shuffle([...(ips ?? [])], random)) answers.push({ type: t, name: question.name, ttl: LOCAL_TTL, class: "IN", data: ip.toString() });
  };
  if (type === "A" || type === "ANY") add(v4, "A");
  if (type === "AAAA" || type === "ANY") add(v6, "AAAA");
  return reply(answers, RCODE.NOERROR);
}

/** True when `name` encodes back to exactly the raw question name (letters compared case-insensitively). */
function sameName(rawQuestion: Uint8Array, name: string): boolean {
  // how dns-packet writes a name: strip one leading/trailing dot, split on ".", UTF-8 labels
  const n = name.replace(/^\.|\.$/g, "");
  const bytes: number[] = [];
  if (n.length > 0) {
    for (const label of n.split(".")) {
      const l = Buffer.from(label, "utf8");
      bytes.push(l.length, ...l);
    }
  }
  bytes.push(0);
  const enc = bytes;
  if (rawQuestion.length !== enc.length + 4) return false;
  for (let i = 0; i < enc.length; i++) {
    let a = rawQuestion[i]!;
    let c = enc[i]!;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (a !== c) return false;
  }
  return true;
}

/**
 * Header and records encoded by dns-packet, with the question section spliced
 * in as received (dns-packet never compresses names, so nothing points into it).
 */
function encodeReply(
  q: dnsPacket.DecodedPacket,
  rawQuestion: Uint8Array,
  answers: dnsPacket.Answer[],
  rcode: number,
  ctx: QueryContext,
  edns: boolean,
  maxSize: number,
): Decision {
  let flags = dnsPacket.AUTHORITATIVE_ANSWER | rcode;
  if (q.flag_rd) flags |= dnsPacket.RECURSION_DESIRED;
  if (ctx.forward) flags |= dnsPacket.RECURSION_AVAILABLE;
  if (q.flag_cd) flags |= dnsPacket.CHECKING_DISABLED;
  const additionals: dnsPacket.Answer[] = edns
    ? [{ type: "OPT", name: ".", udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }]
    : [];
  const p: dnsPacket.Packet = { type: "response", id: q.id ?? 0, flags, questions: [], answers, authorities: [], additionals };
  const build = (pk: dnsPacket.Packet): Buffer => {
    const body = dnsPacket.encode(pk);
    const out = Buffer.concat([body.subarray(0, 12), rawQuestion, body.subarray(12)]);
    out.writeUInt16BE(1, 4);
    return out;
  };
  const packet = build(p);
  if (packet.length > maxSize) {
    // too big for UDP: say so, the client retries over TCP
    return { kind: "reply", packet: build({ ...p, flags: flags | dnsPacket.TRUNCATED_RESPONSE, answers: [] }), rcode, answers: 0 };
  }
  return { kind: "reply", packet, rcode, answers: answers.length };
}

/** A reply of just a header (id, opcode, RD copied), for queries we cannot or will not parse. */
export function headerOnly(query: Uint8Array, rcode: number): Decision {
  const out = Buffer.alloc(12);
  out[0] = query[0] ?? 0;
  out[1] = query[1] ?? 0;
  const qflags = ((query[2] ?? 0) << 8) | (query[3] ?? 0);
  // QR, opcode and RD from the query, our rcode
  out.writeUInt16BE(QR | (qflags & 0x7800) | (qflags & 0x0100) | rcode, 2);
  return { kind: "reply", packet: out, rcode, answers: 0 };
}

/** A SERVFAIL (or other rcode) reply echoing the query's question: used when forwarding failed. */
export function failureReply(query: Uint8Array, rcode: number, questionEnd: number): Buffer {
  const out = Buffer.from(query.subarray(0, questionEnd));
  const qflags = out.readUInt16BE(2);
  out.writeUInt16BE(QR | (qflags & 0x7800) | (qflags & 0x0100) | dnsPacket.RECURSION_AVAILABLE | rcode, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(0, 10);
  return out;
}

/**
 * Offset just past the first question (header + name + type + class), for a
 * query dns-packet has already decoded. A compression pointer in the question
 * (legal but unusual) ends the name too.
 */
export function questionEndOffset(b: Uint8Array): number {
  let off = 12;
  for (;;) {
    const len = b[off] ?? 0;
    if (len === 0) {
      off += 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      off += 2;
      break;
    }
    off += 1 + len;
  }
  return Math.min(off + 4, b.length);
}

/** True when `resp` answers the question of `query` (same question bytes, case-insensitive). */
export function sameQuestion(query: Uint8Array, resp: Uint8Array, questionEnd: number): boolean {
  if (resp.length < questionEnd || resp.length < 12) return false;
  if (((resp[4] ?? 0) << 8) + (resp[5] ?? 0) !== 1) return false;
  for (let i = 12; i < questionEnd; i++) {
    let a = query[i]!;
    let c = resp[i]!;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (a !== c) return false;
  }
  return true;
}

function shuffle<T>(a: T[], random: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
