/**
 * Traffic-control rtnetlink messages (RTM_*QDISC, RTM_*TFILTER) for the
 * bandwidth shaping in tc.ts, each the message iproute2's `tc` sends for the
 * matching command, and decoders for qdisc and filter dumps as far as tc.ts
 * reads them. Also the tbf arithmetic of iproute2 (tc/q_tbf.c, tc/tc_core.c:
 * psched ticks from /proc/net/psched), so that a tbf made here reads back with
 * exactly the rate, burst and limit a spawned `tc qdisc replace ... tbf` gives.
 *
 * Layouts (linux/rtnetlink.h, linux/pkt_sched.h, linux/pkt_cls.h, linux/tc_act/tc_mirred.h):
 *   struct tcmsg { u8 family, pad[3]; s32 ifindex; u32 handle, parent, info; }
 *   struct tc_ratespec { u8 cell_log, linklayer; u16 overhead; s16 cell_align; u16 mpu; u32 rate; }
 *   struct tc_tbf_qopt { tc_ratespec rate, peakrate; u32 limit, buffer, mtu; }
 *   struct tc_u32_sel { u8 flags, offshift, nkeys; u16 offmask, off; s16 offoff, hoff; u32 hmask; tc_u32_key keys[]; }
 *   struct tc_u32_key { u32 mask, val; s32 off, offmask; }
 *   struct tc_mirred { u32 index, capab; s32 action, refcnt, bindcnt; s32 eaction; u32 ifindex; }
 */
import { readFileSync } from "node:fs";
import type { IP, MAC } from "../../net/index.ts";
import {
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  attrStr,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  ifinfomsg,
  MsgWriter,
  NLA_F_NESTED,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  type NlMsg,
  parseAttrs,
  RTA_DST,
  RTM_GETROUTE,
  RTM_NEWLINK,
  rtmsg,
} from "./codec.ts";

export const RTM_NEWQDISC = 36;
export const RTM_DELQDISC = 37;
export const RTM_GETQDISC = 38;
export const RTM_NEWTFILTER = 44;
export const RTM_DELTFILTER = 45;
export const RTM_GETTFILTER = 46;

export const TCA_KIND = 1;
export const TCA_OPTIONS = 2;

export const TC_H_ROOT = 0xffffffff;
export const TC_H_INGRESS = 0xfffffff1;
/** The ingress qdisc's handle, `ffff:`. */
export const INGRESS_HANDLE = 0xffff0000;
/** `handle 1:` */
export const ROOT_TBF_HANDLE = 0x00010000;

export const TCA_TBF_PARMS = 1;
export const TCA_TBF_RTAB = 2;
export const TCA_TBF_RATE64 = 4;
export const TCA_TBF_BURST = 6;
export const TC_LINKLAYER_ETHERNET = 1;

export const TCA_U32_SEL = 5;
export const TCA_U32_ACT = 7;
export const TC_U32_TERMINAL = 1;
export const TCA_ACT_KIND = 1;
export const TCA_ACT_OPTIONS = 2;
export const TCA_MIRRED_PARMS = 2;
export const TC_ACT_STOLEN = 4;
export const TCA_EGRESS_REDIR = 1;
export const TCA_EGRESS_MIRROR = 2;
export const TCA_INGRESS_REDIR = 3;
export const TCA_INGRESS_MIRROR = 4;
export const ETH_P_ALL = 0x0003;

export const IFLA_IFALIAS = 20;

const TIME_UNITS_PER_SEC = 1_000_000;
const U32_MAX = 0xffffffff;

// ---------- psched ticks (tc/tc_core.c) ----------

let tickInUsec: number | undefined;

/** Ticks per microsecond of the kernel's packet scheduler clock, as tc_core_init derives it from /proc/net/psched. */
export function psched(): number {
  if (tickInUsec !== undefined) return tickInUsec;
  let t2us = 1000;
  let us2t = 64;
  let clockRes = 1_000_000;
  try {
    const f = readFileSync("/proc/net/psched", "utf8").trim().split(/\s+/);
    if (f.length >= 3) {
      t2us = Number.parseInt(f[0] ?? "", 16);
      us2t = Number.parseInt(f[1] ?? "", 16);
      clockRes = Number.parseInt(f[2] ?? "", 16);
    }
  } catch {
    // no procfs: the values every kernel since 2.6.x reports (1 tick = 1/64 µs * 1000)
  }
  // tc's compatibility rule: with a nanosecond clock the advertised multiplier of 1000 means 1
  if (clockRes === 1_000_000_000) t2us = us2t;
  tickInUsec = (t2us / us2t) * (clockRes / TIME_UNITS_PER_SEC);
  return tickInUsec;
}

/** tc_calc_xmittime: ticks to send `size` bytes at `rate` bytes/s (the time truncated to whole µs first, as tc does). */
export function xmitTime(rateBytes: number, size: number): number {
  const us = Math.trunc((TIME_UNITS_PER_SEC * size) / rateBytes);
  return Math.min(U32_MAX, Math.trunc(us * psched()));
}

/** tc_calc_xmitsize: bytes sent at `rate` bytes/s in `ticks` (how `tc qdisc show` derives a tbf's burst). */
export function xmitSize(rateBytes: number, ticks: number): number {
  return Math.trunc((rateBytes * Math.trunc(ticks / psched())) / TIME_UNITS_PER_SEC); // tc_core_tick2time: whole µs
}

// ---------- messages ----------

export interface TcMsg {
  ifindex: number;
  handle?: number;
  parent?: number;
  info?: number;
}

export function tcmsg(m: TcMsg): Uint8Array {
  const b = new Uint8Array(20);
  const dv = new DataView(b.buffer);
  b[0] = AF_UNSPEC;
  dv.setInt32(4, m.ifindex, true);
  dv.setUint32(8, (m.handle ?? 0) >>> 0, true);
  dv.setUint32(12, (m.parent ?? 0) >>> 0, true);
  dv.setUint32(16, (m.info ?? 0) >>> 0, true);
  return b;
}

/** The token bucket as tc's argv gives it: `rate <bits>bit burst <bytes>b latency <ms>ms`. */
export interface TbfArgs {
  rateBits: number;
  burstBytes: number;
  latencyMs: number;
}

/** What tc puts into struct tc_tbf_qopt and the attributes around it for `tbf rate R burst B latency L`. */
export function tbfParams(a: TbfArgs): { rate64: number; limit: number; buffer: number; burst: number } {
  const rate64 = Math.trunc(Math.round(a.rateBits) / 8); // get_rate64: bits/s -> bytes/s, truncated
  const burst = Math.round(a.burstBytes);
  const latencyUs = Math.trunc(a.latencyMs * 1000); // get_time: ms -> µs
  if (!(rate64 > 0) || !(burst > 0) || burst > U32_MAX) throw new RangeError("tbf rate and burst must be positive (burst at most 4 GiB)");
  const limit = Math.trunc((rate64 * latencyUs) / TIME_UNITS_PER_SEC + burst);
  if (limit > U32_MAX) throw new RangeError(`tbf limit ${limit} bytes (rate x latency + burst) is too large`);
  const rate32 = Math.min(rate64, U32_MAX);
  return { rate64, limit, buffer: xmitTime(rate32, burst), burst };
}

/** `tc qdisc replace dev <ifindex> root handle 1: tbf rate R burst B latency L`, without the rate table (see below). */
export function replaceRootTbf(ifindex: number, a: TbfArgs): MsgWriter {
  const p = tbfParams(a);
  const m = new MsgWriter(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE).raw(tcmsg({ ifindex, handle: ROOT_TBF_HANDLE, parent: TC_H_ROOT }));
  m.str(TCA_KIND, "tbf");
  const opts = m.nest(TCA_OPTIONS);
  const q = new Uint8Array(36);
  const dv = new DataView(q.buffer);
  // rate: cell_log 3 (2047-byte mtu / 256 cells), link layer ethernet, cell_align -1, as tc_calc_rtable sets them.
  // With a known link layer the kernel's tbf does not need the rate table (it only reads it to guess the link
  // layer when TC_LINKLAYER_UNAWARE), so TCA_TBF_RTAB is not sent: 1 KiB less per message.
  q[0] = 3;
  q[1] = TC_LINKLAYER_ETHERNET;
  dv.setInt16(4, -1, true);
  dv.setUint32(8, Math.min(p.rate64, U32_MAX), true);
  // peakrate (12 bytes at 12) stays zero
  dv.setUint32(24, p.limit, true);
  dv.setUint32(28, p.buffer, true);
  m.attr(TCA_TBF_PARMS, q);
  m.u32(TCA_TBF_BURST, p.burst);
  if (p.rate64 > U32_MAX) {
    const r = new Uint8Array(8);
    new DataView(r.buffer).setBigUint64(0, BigInt(p.rate64), true);
    m.attr(TCA_TBF_RATE64, r);
  }
  return m.end(opts);
}

/** `tc qdisc add dev <ifindex> handle ffff: ingress` */
export function addIngressQdisc(ifindex: number): MsgWriter {
  return new MsgWriter(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL).raw(tcmsg({ ifindex, handle: INGRESS_HANDLE, parent: TC_H_INGRESS })).str(TCA_KIND, "ingress");
}

/** `tc qdisc del dev <ifindex> root` (parent TC_H_ROOT) or `... ingress` (parent TC_H_INGRESS, handle ffff:). */
export function delQdisc(ifindex: number, which: "root" | "ingress"): MsgWriter {
  return new MsgWriter(RTM_DELQDISC, 0).raw(
    which === "root" ? tcmsg({ ifindex, parent: TC_H_ROOT }) : tcmsg({ ifindex, handle: INGRESS_HANDLE, parent: TC_H_INGRESS }),
  );
}

/**
 * `tc filter add dev <ifindex> parent ffff: protocol all prio 1 u32 match u32 0 0
 *  action mirred egress redirect dev <target>`: a match-all u32 key whose action
 * steals every packet and sends it out of `target`.
 */
export function addIngressRedirect(ifindex: number, target: number): MsgWriter {
  const info = ((1 << 16) | ((ETH_P_ALL >> 8) & 0xff) | ((ETH_P_ALL & 0xff) << 8)) >>> 0; // prio 1, htons(ETH_P_ALL)
  const m = new MsgWriter(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL).raw(tcmsg({ ifindex, parent: INGRESS_HANDLE, info }));
  m.str(TCA_KIND, "u32");
  const opts = m.nest(TCA_OPTIONS);
  const acts = m.nest(TCA_U32_ACT);
  const act = m.nest(1); // the first action (order 1)
  m.str(TCA_ACT_KIND, "mirred");
  const aopts = m.nest(TCA_ACT_OPTIONS | NLA_F_NESTED);
  const p = new Uint8Array(28);
  const pv = new DataView(p.buffer);
  pv.setInt32(8, TC_ACT_STOLEN, true);
  pv.setInt32(20, TCA_EGRESS_REDIR, true);
  pv.setUint32(24, target, true);
  m.attr(TCA_MIRRED_PARMS, p);
  m.end(aopts);
  m.end(act);
  m.end(acts);
  const sel = new Uint8Array(32); // one key: mask 0, val 0, off 0
  sel[0] = TC_U32_TERMINAL;
  sel[2] = 1;
  m.attr(TCA_U32_SEL, sel);
  return m.end(opts);
}

export function dumpQdiscs(): MsgWriter {
  return new MsgWriter(RTM_GETQDISC, 0).raw(tcmsg({ ifindex: 0 }));
}

export function dumpFilters(ifindex: number, parent: number): MsgWriter {
  return new MsgWriter(RTM_GETTFILTER, 0).raw(tcmsg({ ifindex, parent }));
}

/** `ip link add name <name> [address <mac>] [mtu <mtu>] type ifb`, created up. */
export function newIfb(name: string, o: { mac?: MAC | undefined; mtu?: number | undefined }): MsgWriter {
  const m = new MsgWriter(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL).raw(ifinfomsg({ flags: IFF_UP, change: IFF_UP }));
  m.str(IFLA_IFNAME, name);
  if (o.mtu) m.u32(IFLA_MTU, o.mtu);
  if (o.mac) m.attr(IFLA_ADDRESS, o.mac.bytes);
  const li = m.nest(IFLA_LINKINFO);
  m.strRaw(IFLA_INFO_KIND, "ifb");
  m.end(li);
  return m;
}

/** `ip link set dev <index> alias <alias> up` */
export function setAliasUp(index: number, alias: string): MsgWriter {
  return new MsgWriter(RTM_NEWLINK, 0).raw(ifinfomsg({ index, flags: IFF_UP, change: IFF_UP })).str(IFLA_IFALIAS, alias);
}

/** `ip route get <ip>`: the kernel's route lookup (answered with one RTM_NEWROUTE carrying RTA_OIF). */
export function getRoute(ip: IP): MsgWriter {
  const m = new MsgWriter(RTM_GETROUTE, 0).raw(rtmsg({ family: ip.family === 6 ? AF_INET6 : AF_INET, dstLen: ip.family === 6 ? 128 : 32 }));
  return m.attr(RTA_DST, ip.toBytes());
}

// ---------- decoding ----------

export interface TcObject {
  ifindex: number;
  handle: number;
  parent: number;
  info: number;
  kind: string;
  options: Uint8Array | undefined;
}

export function parseTcMsg(m: NlMsg): TcObject {
  const b = m.body;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const a = parseAttrs(b, 20);
  return {
    ifindex: dv.getInt32(4, true),
    handle: dv.getUint32(8, true),
    parent: dv.getUint32(12, true),
    info: dv.getUint32(16, true),
    kind: attrStr(a.get(TCA_KIND)) ?? "",
    options: a.get(TCA_OPTIONS),
  };
}

/** A tbf's rate (bytes/s) and burst (bytes) the way `tc -j qdisc show` prints them. */
export function decodeTbf(options: Uint8Array | undefined): { rateBytes: number; burstBytes: number } | undefined {
  if (!options) return undefined;
  const a = parseAttrs(options);
  const q = a.get(TCA_TBF_PARMS);
  if (!q || q.length < 36) return undefined;
  const dv = new DataView(q.buffer, q.byteOffset, q.byteLength);
  let rate = dv.getUint32(8, true);
  const r64 = a.get(TCA_TBF_RATE64);
  if (r64 && r64.length >= 8) rate = Number(new DataView(r64.buffer, r64.byteOffset, 8).getBigUint64(0, true));
  return { rateBytes: rate, burstBytes: xmitSize(rate, dv.getUint32(28, true)) };
}

/** tc's `%x:` for a qdisc handle. */
export function qdiscHandle(handle: number): string {
  return `${(handle >>> 16).toString(16)}:`;
}

/** The ifindexes the mirred redirect actions of a u32 filter send packets to. */
export function redirectTargets(f: TcObject): number[] {
  if (f.kind !== "u32" || !f.options) return [];
  const acts = parseAttrs(f.options).get(TCA_U32_ACT);
  if (!acts) return [];
  const out: number[] = [];
  for (const act of allAttrs(acts)) {
    const a = parseAttrs(act);
    if (attrStr(a.get(TCA_ACT_KIND)) !== "mirred") continue;
    const opts = a.get(TCA_ACT_OPTIONS);
    const p = opts ? parseAttrs(opts).get(TCA_MIRRED_PARMS) : undefined;
    if (!p || p.length < 28) continue;
    const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const eaction = dv.getInt32(20, true);
    if (eaction === TCA_EGRESS_REDIR || eaction === TCA_INGRESS_REDIR) out.push(dv.getUint32(24, true));
  }
  return out;
}

/** Every attribute payload in order (repeated types kept, unlike parseAttrs). */
function allAttrs(buf: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = dv.getUint16(off, true);
    if (len < 4 || off + len > buf.length) break;
    out.push(buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}
