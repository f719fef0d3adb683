/**
 * The rtnetlink wire format: nlmsghdr, the fixed family headers (ifinfomsg,
 * ifaddrmsg, rtmsg, ndmsg) and rtattr TLVs, nested ones included. Host byte
 * order (little-endian on every machine Berth runs on) except where the kernel
 * wants network order (ports, addresses). Pure functions over Uint8Array: no I/O.
 */

// ---------- constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, ...) ----------

export const NLMSG_HDRLEN = 16;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** In an NLMSG_ERROR: the original request is not echoed / extended-ack TLVs follow. */
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;
export const NLMSGERR_ATTR_MSG = 1;

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;
export const AF_PACKET = 17;

export const IFF_UP = 0x1;
export const IFF_PROMISC = 0x100;
export const IFF_ALLMULTI = 0x200;
export const ARPHRD_ETHER = 1;

export const NLA_F_NESTED = 0x8000;
export const NLA_TYPE_MASK = 0x3fff;

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_PROTINFO = 12;
export const IFLA_TXQLEN = 13;
export const IFLA_STATS64 = 23;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_NET_NS_PID = 19;
export const IFLA_NET_NS_FD = 28;
export const IFLA_EXT_MASK = 29;
export const IFLA_LINK_NETNSID = 37;
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const VETH_INFO_PEER = 1;
export const IFLA_BR_FORWARD_DELAY = 1;
export const IFLA_BR_STP_STATE = 5;
export const IFLA_BRPORT_MODE = 4;
export const IFLA_BRPORT_ISOLATED = 33;
export const IFLA_MACVLAN_MODE = 1;
export const IFLA_IPVLAN_MODE = 1;
export const IFLA_IPVLAN_FLAGS = 2;
export const IFLA_VLAN_ID = 1;
export const IFLA_VXLAN_ID = 1;
export const IFLA_VXLAN_LINK = 3;
export const IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_LEARNING = 7;
export const IFLA_VXLAN_PROXY = 11;
export const IFLA_VXLAN_PORT = 15;
export const IFLA_VXLAN_LOCAL6 = 17;

export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_BROADCAST = 4;
export const IFA_FLAGS = 8;
export const IFA_F_NODAD = 0x02;

export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_METRICS = 8;
export const RTA_TABLE = 15;
export const RTAX_MTU = 2;
export const RTAX_ADVMSS = 8;
export const RTN_UNICAST = 1;
export const RTPROT_BOOT = 3;
export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_MAIN = 254;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RT_SCOPE_NOWHERE = 255;
export const RTM_F_CLONED = 0x200;

export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NUD_PERMANENT = 0x80;

// ---------- encoding ----------

const enc = new TextEncoder();
const align4 = (n: number): number => (n + 3) & ~3;

/** Builds one netlink message: header, a fixed family header, then attributes (nested via nest/end). */
export class MsgWriter {
  private buf = new Uint8Array(256);
  private dv = new DataView(this.buf.buffer);
  private len = NLMSG_HDRLEN;

  constructor(type: number, flags: number) {
    this.dv.setUint16(4, type, true);
    this.dv.setUint16(6, flags, true);
  }

  private grow(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const b = new Uint8Array(Math.max(this.buf.length * 2, this.len + n + 64));
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
    this.dv = new DataView(b.buffer);
  }

  /** Appends raw bytes (a family header) padded to 4. */
  raw(bytes: Uint8Array): this {
    const n = align4(bytes.length);
    this.grow(n);
    this.buf.set(bytes, this.len);
    this.len += n;
    return this;
  }

  attr(type: number, payload: Uint8Array): this {
    const n = 4 + payload.length;
    this.grow(align4(n));
    this.dv.setUint16(this.len, n, true);
    this.dv.setUint16(this.len + 2, type, true);
    this.buf.set(payload, this.len + 4);
    this.buf.fill(0, this.len + n, this.len + align4(n));
    this.len += align4(n);
    return this;
  }
  u8(type: number, v: number): this {
    return this.attr(type, Uint8Array.of(v & 0xff));
  }
  u16(type: number, v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    return this.attr(type, b);
  }
  /** A 16-bit value in network byte order (UDP ports). */
  be16(type: number, v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, false);
    return this.attr(type, b);
  }
  u32(type: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    return this.attr(type, b);
  }
  /** A NUL-terminated string. */
  str(type: number, s: string): this {
    const e = enc.encode(s);
    const b = new Uint8Array(e.length + 1);
    b.set(e);
    return this.attr(type, b);
  }
  /** A string without the terminating NUL (how iproute2 sends IFLA_INFO_KIND). */
  strRaw(type: number, s: string): this {
    return this.attr(type, enc.encode(s));
  }
  /** Opens a nested attribute; close it with `end(handle)`. */
  nest(type: number): number {
    this.grow(4);
    const at = this.len;
    this.dv.setUint16(at + 2, type, true);
    this.len += 4;
    return at;
  }
  end(at: number): this {
    this.dv.setUint16(at, this.len - at, true);
    return this;
  }

  /** The finished message with its length and sequence number set and `flags` added (NLM_F_REQUEST, NLM_F_ACK, ...). */
  finish(seq: number, flags = 0): Uint8Array {
    this.dv.setUint32(0, this.len, true);
    this.dv.setUint16(6, this.dv.getUint16(6, true) | flags, true);
    this.dv.setUint32(8, seq >>> 0, true);
    this.dv.setUint32(12, 0, true);
    return this.buf.slice(0, this.len);
  }
}

export interface IfInfoMsg {
  family?: number;
  type?: number;
  index?: number;
  flags?: number;
  change?: number;
}
export function ifinfomsg(m: IfInfoMsg = {}): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint8(0, m.family ?? AF_UNSPEC);
  dv.setUint16(2, m.type ?? 0, true);
  dv.setInt32(4, m.index ?? 0, true);
  dv.setUint32(8, m.flags ?? 0, true);
  dv.setUint32(12, m.change ?? 0, true);
  return b;
}

export interface IfAddrMsg {
  family: number;
  prefixlen: number;
  flags?: number;
  scope?: number;
  index: number;
}
export function ifaddrmsg(m: IfAddrMsg): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint8(0, m.family);
  dv.setUint8(1, m.prefixlen);
  dv.setUint8(2, m.flags ?? 0);
  dv.setUint8(3, m.scope ?? 0);
  dv.setUint32(4, m.index, true);
  return b;
}

export interface RtMsg {
  family: number;
  dstLen?: number;
  srcLen?: number;
  tos?: number;
  table?: number;
  protocol?: number;
  scope?: number;
  type?: number;
  flags?: number;
}
export function rtmsg(m: RtMsg): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  b[0] = m.family;
  b[1] = m.dstLen ?? 0;
  b[2] = m.srcLen ?? 0;
  b[3] = m.tos ?? 0;
  b[4] = m.table ?? 0;
  b[5] = m.protocol ?? 0;
  b[6] = m.scope ?? 0;
  b[7] = m.type ?? 0;
  dv.setUint32(8, m.flags ?? 0, true);
  return b;
}

export interface NdMsg {
  family: number;
  index: number;
  state?: number;
  flags?: number;
  type?: number;
}
export function ndmsg(m: NdMsg): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  b[0] = m.family;
  dv.setInt32(4, m.index, true);
  dv.setUint16(8, m.state ?? 0, true);
  b[10] = m.flags ?? 0;
  b[11] = m.type ?? 0;
  return b;
}

// ---------- decoding ----------

export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** The payload after the 16-byte header. */
  body: Uint8Array;
}

/** Splits a datagram into its netlink messages. */
export function splitMessages(buf: Uint8Array): NlMsg[] {
  const out: NlMsg[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = dv.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    out.push({
      type: dv.getUint16(off + 4, true),
      flags: dv.getUint16(off + 6, true),
      seq: dv.getUint32(off + 8, true),
      pid: dv.getUint32(off + 12, true),
      body: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** The attributes in `buf` from `offset` on, by type (flags masked off; the first of a repeated type wins). */
export function parseAttrs(buf: Uint8Array, offset = 0): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = offset;
  while (off + 4 <= buf.length) {
    const len = dv.getUint16(off, true);
    if (len < 4 || off + len > buf.length) break;
    const type = dv.getUint16(off + 2, true) & NLA_TYPE_MASK;
    if (!out.has(type)) out.set(type, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

const dec = new TextDecoder();
export function attrStr(v: Uint8Array | undefined): string | undefined {
  if (!v) return undefined;
  const z = v.indexOf(0);
  return dec.decode(z < 0 ? v : v.subarray(0, z));
}
export function attrU32(v: Uint8Array | undefined): number | undefined {
  if (!v || v.length < 4) return undefined;
  return new DataView(v.buffer, v.byteOffset, 4).getUint32(0, true);
}
export function attrU8(v: Uint8Array | undefined): number | undefined {
  return v && v.length >= 1 ? v[0] : undefined;
}

export interface IfInfo {
  family: number;
  type: number;
  index: number;
  flags: number;
  attrs: Map<number, Uint8Array>;
}
export function parseIfInfo(body: Uint8Array): IfInfo {
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return { family: body[0] ?? 0, type: dv.getUint16(2, true), index: dv.getInt32(4, true), flags: dv.getUint32(8, true), attrs: parseAttrs(body, 16) };
}

export interface IfAddr {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
  attrs: Map<number, Uint8Array>;
}
export function parseIfAddr(body: Uint8Array): IfAddr {
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return { family: body[0] ?? 0, prefixlen: body[1] ?? 0, flags: body[2] ?? 0, scope: body[3] ?? 0, index: dv.getUint32(4, true), attrs: parseAttrs(body, 8) };
}

export interface RtInfo {
  family: number;
  dstLen: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
  attrs: Map<number, Uint8Array>;
}
export function parseRtMsg(body: Uint8Array): RtInfo {
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return {
    family: body[0] ?? 0,
    dstLen: body[1] ?? 0,
    table: body[4] ?? 0,
    protocol: body[5] ?? 0,
    scope: body[6] ?? 0,
    type: body[7] ?? 0,
    flags: dv.getUint32(8, true),
    attrs: parseAttrs(body, 12),
  };
}

/** An NLMSG_ERROR payload: the (positive) errno, 0 for an ack, and the kernel's extended-ack message. */
export function parseError(m: NlMsg): { errno: number; extack: string | undefined } {
  const dv = new DataView(m.body.buffer, m.body.byteOffset, m.body.byteLength);
  const errno = -dv.getInt32(0, true);
  let extack: string | undefined;
  if (m.flags & NLM_F_ACK_TLVS) {
    // after the error code comes the original request: its header only when capped
    const origLen = m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : m.body.length >= 20 ? dv.getUint32(4, true) : NLMSG_HDRLEN;
    const start = 4 + align4(origLen);
    if (start <= m.body.length) extack = attrStr(parseAttrs(m.body, start).get(NLMSGERR_ATTR_MSG));
  }
  return { errno, extack: extack || undefined };
}
