/**
 * Two nf_tables questions asked over NETLINK_NETFILTER directly, because through
 * libnftables each costs a dump of every set element of the table (its cache):
 * O(containers) for a question about one element or one chain.
 *
 *  - How many rules does a chain hold? (NFT_MSG_GETRULE dump filtered by table and
 *    chain: the kernel sends only that chain's rules.)
 *  - Is this one element in a set, and what is its comment? (NFT_MSG_GETSETELEM for
 *    one key, not a dump: the kernel looks the key up.)
 *  - What are the keys and comments of one plain set? (a GETSETELEM dump of that set
 *    only: still O(elements), but raw bytes, ~30x cheaper than libnftables' JSON of
 *    the whole table.)
 *  - Has anything changed in the namespace's nftables? (NFT_MSG_GETGEN: the ruleset
 *    generation, which every committed transaction of anyone in the namespace
 *    increments by one: O(1) where a listing is O(elements).)
 *
 * And one change: set elements added or deleted in one transaction (an nfnetlink
 * batch), for the CNI plugins' per-container elements. Through libnftables the first
 * command of a process costs ~3.5 ms (loading the library and its dependencies,
 * making the context); this costs one datagram. Everything else still goes through
 * libnftables (nft-ffi.ts), the one parser of nft's language.
 */
import type { IP, Prefix } from "../../net/index.ts";
import { MsgWriter, type NlMsg, parseAttrs } from "./codec.ts";
import { ENOENT } from "./sys.ts";
import { NetlinkError, type NetlinkSocket } from "./socket.ts";

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_GETRULE = 7;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_GETSETELEM = 13;
const NFT_MSG_GETGEN = 16;
const NFTA_GEN_ID = 1;
const NFT_MSG_DELSETELEM = 14;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NFTA_SET_ELEM_FLAGS = 3;
const NFT_SET_ELEM_INTERVAL_END = 1;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_SET_ELEM_USERDATA = 6;
const NFTA_SET_ELEM_KEY_END = 10;
const NFTA_DATA_VALUE = 1;
const NLA_F_NESTED = 0x8000;
/** libnftnl's element user data: TLVs of (u8 type, u8 length, value); the comment is type 0, NUL-terminated. */
const UDATA_SET_ELEM_COMMENT = 0;

const FAMILIES: Record<string, number> = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 };
const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17, sctp: 132 };

/** One field of a set key, as nft types it: an address, a transport protocol, a port. */
export type NftKeyField = { ip: IP } | { proto: "tcp" | "udp" | "sctp" } | { port: number };

/**
 * A key's bytes in the kernel's layout: a concatenation puts each field in its own
 * 32-bit registers (a protocol's one byte and a port's two are padded to four); a
 * single field is its bytes alone.
 */
export function encodeKey(fields: readonly NftKeyField[]): Uint8Array {
  const parts = fields.map((f): Uint8Array => {
    if ("ip" in f) return f.ip.toBytes();
    if ("proto" in f) return Uint8Array.of(PROTOCOLS[f.proto]!);
    return Uint8Array.of((f.port >> 8) & 0xff, f.port & 0xff);
  });
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + Math.ceil(p.length / 4) * 4, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += Math.ceil(p.length / 4) * 4;
  }
  return out;
}

function family(name: string): number {
  const f = FAMILIES[name];
  if (f === undefined) throw new RangeError(`unknown nftables family ${name}`);
  return f;
}

function nfMsg(type: number, fam: string, flags: number): MsgWriter {
  // struct nfgenmsg { u8 nfgen_family; u8 version; __be16 res_id; }
  return new MsgWriter((NFNL_SUBSYS_NFTABLES << 8) | type, flags).raw(Uint8Array.of(family(fam), 0, 0, 0));
}

/** The namespace's nftables ruleset generation (incremented by every committed transaction, whoever makes it). */
export function rulesetGeneration(s: NetlinkSocket): number {
  // the generation is not per family: AF_UNSPEC
  const reply = s.get(new MsgWriter((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, 0).raw(Uint8Array.of(0, 0, 0, 0)));
  const id = parseAttrs(reply.body, 4).get(NFTA_GEN_ID);
  if (!id || id.length < 4) throw new NetlinkError(5, undefined, "nftables generation: no NFTA_GEN_ID in the answer");
  return new DataView(id.buffer, id.byteOffset, 4).getUint32(0, false);
}

/** The number of rules in a chain (0 also when the table or the chain does not exist: the filtered dump is empty). */
export function chainRuleCount(s: NetlinkSocket, fam: string, table: string, chain: string): number {
  const m = nfMsg(NFT_MSG_GETRULE, fam, 0).str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
  try {
    return s.dump(m).length;
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENOENT) return 0;
    throw e;
  }
}

/** An element found by its key: its comment ("" without one). */
export interface FoundElement {
  comment: string;
}

/**
 * Looks up one element by key (and, for interval sets, the last key of its
 * range); undefined when the element, the set or the table does not exist.
 */
export function getSetElement(s: NetlinkSocket, fam: string, table: string, set: string, key: Uint8Array, keyEnd?: Uint8Array): FoundElement | undefined {
  const m = nfMsg(NFT_MSG_GETSETELEM, fam, 0).str(NFTA_SET_ELEM_LIST_TABLE, table).str(NFTA_SET_ELEM_LIST_SET, set);
  const list = m.nest(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
  putElement(m, { key, ...(keyEnd ? { keyEnd } : {}) }, false);
  m.end(list);
  let reply: NlMsg;
  try {
    reply = s.get(m);
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENOENT) return undefined;
    throw e;
  }
  return { comment: elementComment(reply) };
}

/** An element of a dump: its key's bytes and its comment ("" without one). */
export interface DumpedElement {
  key: Uint8Array;
  comment: string;
}

/** Every element of one set (a plain set: interval sets hold range ends as elements too); [] when the set does not exist. */
export function dumpSetElements(s: NetlinkSocket, fam: string, table: string, set: string): DumpedElement[] {
  const m = nfMsg(NFT_MSG_GETSETELEM, fam, 0).str(NFTA_SET_ELEM_LIST_TABLE, table).str(NFTA_SET_ELEM_LIST_SET, set);
  let msgs: NlMsg[];
  try {
    msgs = s.dump(m);
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENOENT) return [];
    throw e;
  }
  const out: DumpedElement[] = [];
  for (const msg of msgs) {
    for (const el of listElements(msg)) {
      const key = el.get(NFTA_SET_ELEM_KEY);
      const value = key ? parseAttrs(key).get(NFTA_DATA_VALUE) : undefined;
      if (value) out.push({ key: value.slice(), comment: udataComment(el.get(NFTA_SET_ELEM_USERDATA)) });
    }
  }
  return out;
}

/** The attributes of each element (NFTA_LIST_ELEM) of a NEWSETELEM message. */
function listElements(m: NlMsg): Map<number, Uint8Array>[] {
  // nfgenmsg (4 bytes), then the element list
  const elements = parseAttrs(m.body, 4).get(NFTA_SET_ELEM_LIST_ELEMENTS);
  if (!elements) return [];
  const out: Map<number, Uint8Array>[] = [];
  const dv = new DataView(elements.buffer, elements.byteOffset, elements.byteLength);
  for (let off = 0; off + 4 <= elements.length; ) {
    const len = dv.getUint16(off, true);
    if (len < 4 || off + len > elements.length) break;
    out.push(parseAttrs(elements.subarray(off + 4, off + len)));
    off += (len + 3) & ~3;
  }
  return out;
}

function elementComment(m: NlMsg): string {
  return udataComment(listElements(m)[0]?.get(NFTA_SET_ELEM_USERDATA));
}

function udataComment(udata: Uint8Array | undefined): string {
  for (let off = 0; udata && off + 2 <= udata.length; off += 2 + udata[off + 1]!) {
    if (udata[off] !== UDATA_SET_ELEM_COMMENT) continue;
    const v = udata.subarray(off + 2, off + 2 + udata[off + 1]!);
    const z = v.indexOf(0);
    return new TextDecoder().decode(z < 0 ? v : v.subarray(0, z));
  }
  return "";
}

/** One element to add or delete, in the kernel's layout (see encodeKey). */
export interface ElementBytes {
  key: Uint8Array;
  /** Concatenated interval sets (pipapo): the last key of the range. */
  keyEnd?: Uint8Array;
  /** Maps: the value. */
  data?: Uint8Array;
  comment?: string;
  /** Single-field interval sets (rbtree): this element closes a range (its key is the first key after it). */
  intervalEnd?: boolean;
}

/** What to do with some elements of one set: `create` fails on an element that exists, `add` does not. */
export interface ElementChange {
  op: "add" | "create" | "delete";
  set: string;
  elements: readonly ElementBytes[];
}

const enc = new TextEncoder();

function putElement(m: MsgWriter, e: ElementBytes, withComment: boolean): void {
  const el = m.nest(NFTA_LIST_ELEM | NLA_F_NESTED);
  const k = m.nest(NFTA_SET_ELEM_KEY | NLA_F_NESTED);
  m.attr(NFTA_DATA_VALUE, e.key).end(k);
  if (e.keyEnd) {
    const ke = m.nest(NFTA_SET_ELEM_KEY_END | NLA_F_NESTED);
    m.attr(NFTA_DATA_VALUE, e.keyEnd).end(ke);
  }
  if (e.intervalEnd) {
    const f = new Uint8Array(4);
    new DataView(f.buffer).setUint32(0, NFT_SET_ELEM_INTERVAL_END, false);
    m.attr(NFTA_SET_ELEM_FLAGS, f);
  }
  if (e.data) {
    const d = m.nest(NFTA_SET_ELEM_DATA | NLA_F_NESTED);
    m.attr(NFTA_DATA_VALUE, e.data).end(d);
  }
  if (withComment && e.comment !== undefined) {
    const c = enc.encode(e.comment);
    if (c.length + 1 > 255) throw new RangeError(`nft comment too long: ${e.comment}`);
    const u = new Uint8Array(2 + c.length + 1);
    u[0] = UDATA_SET_ELEM_COMMENT;
    u[1] = c.length + 1;
    u.set(c, 2);
    m.attr(NFTA_SET_ELEM_USERDATA, u);
  }
  m.end(el);
}

/**
 * Adds, creates and deletes set elements in one nf_tables transaction: all of it
 * happens or nothing does. A refusal throws NetlinkError (EEXIST: an element to
 * create exists or overlaps; ENOENT: no such table, set or element to delete).
 */
export function changeSetElements(s: NetlinkSocket, fam: string, table: string, changes: readonly ElementChange[]): void {
  const batchMsg = (type: number) => new MsgWriter(type, 0).raw(Uint8Array.of(0, 0, 0, NFNL_SUBSYS_NFTABLES));
  const parts: { msg: MsgWriter; flags: number; ack: boolean }[] = [{ msg: batchMsg(NFNL_MSG_BATCH_BEGIN), flags: 0, ack: false }];
  for (const c of changes) {
    if (c.elements.length === 0) continue;
    const del = c.op === "delete";
    const m = nfMsg(del ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM, fam, 0).str(NFTA_SET_ELEM_LIST_TABLE, table).str(NFTA_SET_ELEM_LIST_SET, c.set);
    const list = m.nest(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
    for (const e of c.elements) putElement(m, e, !del);
    m.end(list);
    parts.push({ msg: m, flags: del ? 0 : NLM_F_CREATE | (c.op === "create" ? NLM_F_EXCL : 0), ack: true });
  }
  if (parts.length === 1) return;
  parts.push({ msg: batchMsg(NFNL_MSG_BATCH_END), flags: 0, ack: false });
  s.batch(parts);
}

/** An element as typed fields (encoded with encodeKey). */
export interface TypedElement {
  key: readonly NftKeyField[];
  keyEnd?: readonly NftKeyField[];
  data?: readonly NftKeyField[];
  comment?: string;
}

export function elementBytes(e: TypedElement): ElementBytes {
  return {
    key: encodeKey(e.key),
    ...(e.keyEnd ? { keyEnd: encodeKey(e.keyEnd) } : {}),
    ...(e.data ? { data: encodeKey(e.data) } : {}),
    ...(e.comment !== undefined ? { comment: e.comment } : {}),
  };
}

/**
 * A prefix in a single-field interval set (the kernel's rbtree): an element opening
 * the range at its first address and one closing it at the address after its last.
 * undefined for a prefix reaching the end of the address space (no address after it).
 */
export function rangeElements(p: Prefix, comment?: string): ElementBytes[] | undefined {
  const last = p.last();
  const allOnes = last.toBytes().every((b) => b === 0xff);
  if (allOnes) return undefined;
  return [
    { key: encodeKey([{ ip: p.ip }]), ...(comment !== undefined ? { comment } : {}) },
    { key: encodeKey([{ ip: last.add(1) }]), intervalEnd: true },
  ];
}
