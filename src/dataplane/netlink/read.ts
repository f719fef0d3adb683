/**
 * Reading links, addresses and routes over rtnetlink dumps, into the same typed
 * values `ip -j` used to give Dataplane (field by field what iproute2 prints:
 * operstate names, scope names, "default" and host routes without /32).
 */
import { IP, IPNet, MAC } from "../../net/index.ts";
import type { AddrInfo, LinkInfo, LinkKindInfo, LinkStats, RouteInfo } from "../dataplane.ts";
import {
  ARPHRD_ETHER,
  attrStr,
  attrU32,
  attrU8,
  IFA_ADDRESS,
  IFA_LOCAL,
  IFF_ALLMULTI,
  IFF_PROMISC,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_IPVLAN_FLAGS,
  IFLA_IPVLAN_MODE,
  IFLA_LINK,
  IFLA_LINK_NETNSID,
  IFLA_MACVLAN_MODE,
  IFLA_STATS64,
  IFLA_VLAN_ID,
  IFLA_LINKINFO,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_OPERSTATE,
  IFLA_TXQLEN,
  type IfInfo,
  type NlMsg,
  parseAttrs,
  parseIfAddr,
  parseIfInfo,
  parseRtMsg,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_TABLE,
  RTM_F_CLONED,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
} from "./codec.ts";
import * as msg from "./messages.ts";
import { NetlinkError, type NetlinkSocket } from "./socket.ts";
import { ENODEV } from "./sys.ts";

const OPERSTATES = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"];
const SCOPES: Record<number, string> = { 0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere" };

/** A link as the kernel reported it, with its master still an index. */
export interface RawLink {
  info: LinkInfo;
  masterIndex: number | undefined;
}

function rawLink(i: IfInfo): RawLink {
  const a = i.attrs;
  const addr = a.get(IFLA_ADDRESS);
  const linkinfo = a.get(IFLA_LINKINFO);
  const kind = linkinfo ? attrStr(parseAttrs(linkinfo).get(IFLA_INFO_KIND)) : undefined;
  const txqlen = attrU32(a.get(IFLA_TXQLEN));
  const master = attrU32(a.get(IFLA_MASTER));
  return {
    info: {
      name: attrStr(a.get(IFLA_IFNAME)) ?? "",
      index: i.index,
      kind,
      mtu: attrU32(a.get(IFLA_MTU)) ?? 0,
      mac: addr && addr.length === 6 && i.type === ARPHRD_ETHER ? MAC.fromBytes(addr) : undefined,
      up: (i.flags & IFF_UP) !== 0,
      operstate: OPERSTATES[attrU8(a.get(IFLA_OPERSTATE)) ?? 0] ?? "UNKNOWN",
      master: undefined,
      promisc: (i.flags & IFF_PROMISC) !== 0,
      allmulti: (i.flags & IFF_ALLMULTI) !== 0,
      ...(txqlen !== undefined ? { txqlen } : {}),
    },
    masterIndex: master || undefined,
  };
}

/** The link of one RTM_NEWLINK / RTM_DELLINK message (a dump's or a notification's), its master still an index. */
export function decodeRawLink(m: NlMsg): RawLink {
  return rawLink(parseIfInfo(m.body));
}

/** Every link of the socket's namespace, in the kernel's (ifindex) order. */
export function readLinks(sock: NetlinkSocket): LinkInfo[] {
  return decodeLinks(sock.dump(msg.dumpLinks()));
}

/** The links of an RTM_GETLINK dump. */
export function decodeLinks(msgs: readonly NlMsg[]): LinkInfo[] {
  const raws = msgs
    .filter((m) => m.type === RTM_NEWLINK)
    .map((m) => rawLink(parseIfInfo(m.body)));
  const byIndex = new Map(raws.map((r) => [r.info.index, r.info.name]));
  return raws.map((r) => ({ ...r.info, master: r.masterIndex !== undefined ? byIndex.get(r.masterIndex) : undefined }));
}

/** One link by name or index, undecoded; undefined when there is none. */
function getIfInfo(sock: NetlinkSocket, by: string | number): IfInfo | undefined {
  let m: NlMsg;
  try {
    m = sock.get(msg.getLink(by));
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENODEV) return undefined;
    throw e;
  }
  return m.type === RTM_NEWLINK ? parseIfInfo(m.body) : undefined;
}

function getRaw(sock: NetlinkSocket, by: string | number): RawLink | undefined {
  const i = getIfInfo(sock, by);
  return i ? rawLink(i) : undefined;
}

/** One link by name, or undefined when there is none. */
export function readLink(sock: NetlinkSocket, name: string): LinkInfo | undefined {
  const r = getRaw(sock, name);
  if (!r) return undefined;
  const master = r.masterIndex !== undefined ? getRaw(sock, r.masterIndex)?.info.name : undefined;
  return { ...r.info, master };
}

/** Addresses of every link (or of the link with index `onlyIndex`), grouped per link in `order`, as `ip addr show` lists them. */
export function readAddresses(sock: NetlinkSocket, names: ReadonlyMap<number, string>, onlyIndex?: number): AddrInfo[] {
  // one link's addresses: the kernel filters the dump (strict mode), else every link's would be
  // read and decoded (a host with 500 veths has 500 link-local addresses)
  const msgs = onlyIndex === undefined ? sock.dump(msg.dumpAddrs()) : sock.strictly(() => sock.dump(msg.dumpAddrs(0, onlyIndex)));
  return decodeAddresses(msgs, names, onlyIndex);
}

/** The addresses of an RTM_GETADDR dump, per link in the order of `names` (ifindex -> name). */
export function decodeAddresses(msgs: readonly NlMsg[], names: ReadonlyMap<number, string>, onlyIndex?: number): AddrInfo[] {
  const out: { order: number; a: AddrInfo }[] = [];
  const order = new Map([...names.keys()].map((k, i) => [k, i]));
  for (const m of msgs) {
    if (m.type !== RTM_NEWADDR) continue;
    const a = parseIfAddr(m.body);
    if (onlyIndex !== undefined && a.index !== onlyIndex) continue;
    const raw = a.attrs.get(IFA_LOCAL) ?? a.attrs.get(IFA_ADDRESS);
    const dev = names.get(a.index);
    if (!raw || dev === undefined) continue;
    out.push({ order: order.get(a.index) ?? 0, a: { dev, addr: IPNet.of(IP.fromBytes(raw), a.prefixlen), scope: SCOPES[a.scope] ?? String(a.scope) } });
  }
  // stable: dump order (IPv4 before IPv6) within each link
  return out.sort((x, y) => x.order - y.order).map((x) => x.a);
}

/** Routes of the main table of `family` (what `ip -4|-6 route show` lists). */
export function readRoutes(sock: NetlinkSocket, family: 4 | 6, names: ReadonlyMap<number, string>): RouteInfo[] {
  return decodeRoutes(sock.dump(msg.dumpRoutes(family)), family, names);
}

/** The main-table routes of `family` in an RTM_GETROUTE dump. */
export function decodeRoutes(msgs: readonly NlMsg[], family: 4 | 6, names: ReadonlyMap<number, string>): RouteInfo[] {
  const out: RouteInfo[] = [];
  for (const m of msgs) {
    if (m.type !== RTM_NEWROUTE) continue;
    const r = parseRtMsg(m.body);
    const table = attrU32(r.attrs.get(RTA_TABLE)) ?? r.table;
    if (table !== RT_TABLE_MAIN || r.flags & RTM_F_CLONED) continue;
    if (r.family !== (family === 6 ? 10 : 2)) continue;
    const dstRaw = r.attrs.get(RTA_DST);
    const bits = family === 6 ? 128 : 32;
    let dst = "default";
    if (r.dstLen > 0 && dstRaw) {
      const ip = IP.fromBytes(dstRaw).toString();
      dst = r.dstLen === bits ? ip : `${ip}/${r.dstLen}`;
    }
    const gw = r.attrs.get(RTA_GATEWAY);
    const oif = attrU32(r.attrs.get(RTA_OIF));
    out.push({ dst, gateway: gw ? IP.fromBytes(gw) : undefined, dev: oif !== undefined ? names.get(oif) : undefined, family });
  }
  return out;
}

const MACVLAN_MODES: Record<number, string> = { 1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source" };
const IPVLAN_MODES: Record<number, string> = { 0: "l2", 1: "l3", 2: "l3s" };
const u16 = (v: Uint8Array | undefined): number | undefined => (v && v.length >= 2 ? new DataView(v.buffer, v.byteOffset, 2).getUint16(0, true) : undefined);

/**
 * Kind, parent and mode of a link (what `ip -j -d link` shows as linkinfo and "link"):
 * the parent is the lower device's name when it is in this namespace ("if<N>" when
 * the index is unknown here), undefined when it is in another one or there is none.
 */
function kindInfo(i: IfInfo, nameOf: (index: number) => string | undefined): LinkKindInfo {
  const a = i.attrs;
  const li = a.get(IFLA_LINKINFO);
  const info = li ? parseAttrs(li) : undefined;
  const kind = attrStr(info?.get(IFLA_INFO_KIND));
  const dataRaw = info?.get(IFLA_INFO_DATA);
  const data = dataRaw ? parseAttrs(dataRaw) : new Map<number, Uint8Array>();
  const iflink = attrU32(a.get(IFLA_LINK));
  const parent = iflink && !a.has(IFLA_LINK_NETNSID) ? (nameOf(iflink) ?? `if${iflink}`) : undefined;
  let mode: string | undefined;
  let flag: string | undefined;
  let vlanId: number | undefined;
  if (kind === "macvlan" || kind === "macvtap") {
    const m = attrU32(data.get(IFLA_MACVLAN_MODE));
    mode = m !== undefined ? (MACVLAN_MODES[m] ?? String(m)) : undefined;
  } else if (kind === "ipvlan" || kind === "ipvtap") {
    const m = u16(data.get(IFLA_IPVLAN_MODE));
    mode = m !== undefined ? (IPVLAN_MODES[m] ?? String(m)) : undefined;
    const f = u16(data.get(IFLA_IPVLAN_FLAGS)) ?? 0;
    flag = f & 1 ? "private" : f & 2 ? "vepa" : "bridge";
  } else if (kind === "vlan") {
    vlanId = u16(data.get(IFLA_VLAN_ID));
  }
  // like the ip backend: a flag only for ipvlan, "bridge" unless private or vepa
  return { name: attrStr(a.get(IFLA_IFNAME)) ?? "", kind, parent, mode, flag: kind === "ipvlan" ? (flag ?? "bridge") : undefined, vlanId };
}

/** Kind, parent and mode of every link. */
export function readLinkKinds(sock: NetlinkSocket): LinkKindInfo[] {
  const infos = sock
    .dump(msg.dumpLinks())
    .filter((m) => m.type === RTM_NEWLINK)
    .map((m) => parseIfInfo(m.body));
  const names = new Map(infos.map((i) => [i.index, attrStr(i.attrs.get(IFLA_IFNAME)) ?? ""]));
  return infos.map((i) => kindInfo(i, (x) => names.get(x)));
}

/** Kind, parent and mode of one link, or undefined when there is none. */
export function readLinkKind(sock: NetlinkSocket, name: string): LinkKindInfo | undefined {
  const i = getIfInfo(sock, name);
  return i ? kindInfo(i, (x) => getRaw(sock, x)?.info.name) : undefined;
}

/** Traffic counters of every link (struct rtnl_link_stats64, as `ip -s -j link` prints them). */
export function readLinkStats(sock: NetlinkSocket): LinkStats[] {
  const out: LinkStats[] = [];
  for (const m of sock.dump(msg.dumpLinks(false))) {
    if (m.type !== RTM_NEWLINK) continue;
    const i = parseIfInfo(m.body);
    const st = i.attrs.get(IFLA_STATS64);
    const c = (n: number): number => (st && st.length >= (n + 1) * 8 ? Number(new DataView(st.buffer, st.byteOffset, st.byteLength).getBigUint64(n * 8, true)) : 0);
    // rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped
    out.push({
      name: attrStr(i.attrs.get(IFLA_IFNAME)) ?? "",
      rxBytes: c(2),
      rxPackets: c(0),
      rxDropped: c(6),
      rxErrors: c(4),
      txBytes: c(3),
      txPackets: c(1),
      txDropped: c(7),
      txErrors: c(5),
    });
  }
  return out;
}

/** ifindex -> name of every link. */
export function linkNames(sock: NetlinkSocket): Map<number, string> {
  return new Map(readLinks(sock).map((l) => [l.index, l.name]));
}
