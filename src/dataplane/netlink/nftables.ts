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
 *
 * Changes still go through libnftables (nft-ffi.ts): it is the one parser of nft's
 * language, and element additions do not make it dump anything.
 */
import type { IP } from "../../net/index.ts";
import { MsgWriter, type NlMsg, parseAttrs } from "./codec.ts";
import { ENOENT } from "./sys.ts";
import { NetlinkError, type NetlinkSocket } from "./socket.ts";

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_GETRULE = 7;
const NFT_MSG_GETSETELEM = 13;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
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
  const el = m.nest(NFTA_LIST_ELEM | NLA_F_NESTED);
  const k = m.nest(NFTA_SET_ELEM_KEY | NLA_F_NESTED);
  m.attr(NFTA_DATA_VALUE, key).end(k);
  if (keyEnd) {
    const ke = m.nest(NFTA_SET_ELEM_KEY_END | NLA_F_NESTED);
    m.attr(NFTA_DATA_VALUE, keyEnd).end(ke);
  }
  m.end(el).end(list);
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
