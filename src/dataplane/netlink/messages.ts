/**
 * The rtnetlink requests Berth sends, one builder per operation, each the same
 * message iproute2 sends for the matching `ip` command (flags, header fields,
 * attributes). Device names are already resolved to ifindexes by the caller;
 * namespaces are given as an open fd or a pid.
 */
import type { IP, IPNet, MAC } from "../../net/index.ts";
import type { AddressOptions, IpvlanFlag, IpvlanMode, LinkChange, MacvlanMode, RouteSpec } from "../ipbatch.ts";
import {
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  IFA_ADDRESS,
  IFA_BROADCAST,
  IFA_F_NODAD,
  IFA_FLAGS,
  IFA_LOCAL,
  IFF_ALLMULTI,
  IFF_PROMISC,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_BR_FORWARD_DELAY,
  IFLA_BR_STP_STATE,
  IFLA_BRPORT_ISOLATED,
  IFLA_BRPORT_MODE,
  IFLA_EXT_MASK,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_IPVLAN_FLAGS,
  IFLA_IPVLAN_MODE,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_MACVLAN_MODE,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_NET_NS_PID,
  IFLA_PROTINFO,
  IFLA_TXQLEN,
  IFLA_VLAN_ID,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_LOCAL6,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_PROXY,
  ifaddrmsg,
  ifinfomsg,
  MsgWriter,
  NDA_DST,
  NDA_LLADDR,
  NLA_F_NESTED,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NUD_PERMANENT,
  ndmsg,
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RT_TABLE_UNSPEC,
  RTA_DST,
  RTA_GATEWAY,
  RTA_METRICS,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTAX_ADVMSS,
  RTAX_MTU,
  RTEXT_FILTER_SKIP_STATS,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTM_SETLINK,
  RTN_UNICAST,
  RTPROT_BOOT,
  rtmsg,
} from "./codec.ts";

/** A namespace for IFLA_NET_NS_*: an open fd of its nsfs file, or a pid inside it. */
export type NsRef = { fd: number } | { pid: number };

const af = (f: 4 | 6): number => (f === 6 ? AF_INET6 : AF_INET);

function nsAttr(m: MsgWriter, ns: NsRef): void {
  if ("fd" in ns) m.u32(IFLA_NET_NS_FD, ns.fd);
  else m.u32(IFLA_NET_NS_PID, ns.pid);
}

const CREATE = NLM_F_CREATE | NLM_F_EXCL;

/** Common head of `link add`: name, mtu, mac, parent, target namespace; the caller adds IFLA_LINKINFO. */
function linkAdd(name: string, o: { mtu?: number | undefined; mac?: MAC | undefined; parent?: number | undefined; ns?: NsRef | undefined }): MsgWriter {
  const m = new MsgWriter(RTM_NEWLINK, CREATE).raw(ifinfomsg());
  m.str(IFLA_IFNAME, name);
  if (o.mtu) m.u32(IFLA_MTU, o.mtu);
  if (o.mac) m.attr(IFLA_ADDRESS, o.mac.bytes);
  if (o.parent !== undefined) m.u32(IFLA_LINK, o.parent);
  if (o.ns) nsAttr(m, o.ns);
  return m;
}

function withKind(m: MsgWriter, kind: string, data?: (m: MsgWriter) => void): MsgWriter {
  const li = m.nest(IFLA_LINKINFO);
  m.strRaw(IFLA_INFO_KIND, kind);
  if (data) {
    const d = m.nest(IFLA_INFO_DATA);
    data(m);
    m.end(d);
  }
  return m.end(li);
}

export function newBridge(name: string, o: { mtu?: number | undefined; mac?: MAC | undefined }): MsgWriter {
  return withKind(linkAdd(name, o), "bridge", (m) => {
    m.u32(IFLA_BR_STP_STATE, 0);
    m.u32(IFLA_BR_FORWARD_DELAY, 0);
  });
}

export function newVeth(name: string, peer: string, o: { mtu?: number | undefined; mac?: MAC | undefined; peerMac?: MAC | undefined; peerNs?: NsRef | undefined }): MsgWriter {
  return withKind(linkAdd(name, o), "veth", (m) => {
    const p = m.nest(1 /* VETH_INFO_PEER */);
    m.raw(ifinfomsg());
    m.str(IFLA_IFNAME, peer);
    if (o.mtu) m.u32(IFLA_MTU, o.mtu);
    if (o.peerMac) m.attr(IFLA_ADDRESS, o.peerMac.bytes);
    if (o.peerNs) nsAttr(m, o.peerNs);
    m.end(p);
  });
}

const MACVLAN_MODE: Record<MacvlanMode, number> = { private: 1, vepa: 2, bridge: 4, passthru: 8 };
export function newMacvlan(name: string, parent: number, mode: MacvlanMode, o: { mtu?: number | undefined; mac?: MAC | undefined; ns?: NsRef | undefined }): MsgWriter {
  return withKind(linkAdd(name, { ...o, parent }), "macvlan", (m) => m.u32(IFLA_MACVLAN_MODE, MACVLAN_MODE[mode]));
}

const IPVLAN_MODE: Record<IpvlanMode, number> = { l2: 0, l3: 1, l3s: 2 };
const IPVLAN_FLAG: Record<IpvlanFlag, number> = { bridge: 0, private: 1, vepa: 2 };
export function newIpvlan(name: string, parent: number, mode: IpvlanMode, flag: IpvlanFlag, o: { mtu?: number | undefined; ns?: NsRef | undefined }): MsgWriter {
  return withKind(linkAdd(name, { ...o, parent }), "ipvlan", (m) => {
    m.u16(IFLA_IPVLAN_MODE, IPVLAN_MODE[mode]);
    m.u16(IFLA_IPVLAN_FLAGS, IPVLAN_FLAG[flag]);
  });
}

export function newVlan(name: string, parent: number, id: number): MsgWriter {
  return withKind(linkAdd(name, { parent }), "vlan", (m) => m.u16(IFLA_VLAN_ID, id));
}

export function newVxlan(name: string, o: { vni: number; local: IP; dev: number; dstport: number; mtu?: number | undefined; proxy?: boolean | undefined }): MsgWriter {
  return withKind(linkAdd(name, { mtu: o.mtu }), "vxlan", (m) => {
    m.u32(IFLA_VXLAN_ID, o.vni);
    if (o.local.family === 4) m.attr(IFLA_VXLAN_LOCAL, o.local.toBytes());
    else m.attr(IFLA_VXLAN_LOCAL6, o.local.toBytes());
    m.u32(IFLA_VXLAN_LINK, o.dev);
    m.be16(IFLA_VXLAN_PORT, o.dstport);
    m.u8(IFLA_VXLAN_LEARNING, 0);
    if (o.proxy) m.u8(IFLA_VXLAN_PROXY, 1);
  });
}

export function newDummy(name: string): MsgWriter {
  return withKind(linkAdd(name, {}), "dummy");
}

/**
 * `ip link set dev X ...`: one RTM_NEWLINK on the index. `master` and `ns` are
 * resolved by the caller (master ifindex, 0 = nomaster).
 */
export function setLink(index: number, c: LinkChange, resolved: { master?: number | undefined; ns?: NsRef | undefined }): MsgWriter {
  let flags = 0;
  let change = 0;
  const flag = (bit: number, on: boolean | undefined) => {
    if (on === undefined) return;
    change |= bit;
    if (on) flags |= bit;
  };
  flag(IFF_UP, c.up);
  flag(IFF_PROMISC, c.promisc);
  flag(IFF_ALLMULTI, c.allmulti);
  const m = new MsgWriter(RTM_NEWLINK, 0).raw(ifinfomsg({ index, flags, change }));
  if (c.mtu !== undefined) m.u32(IFLA_MTU, c.mtu);
  if (c.txqlen !== undefined) m.u32(IFLA_TXQLEN, c.txqlen);
  if (c.mac) m.attr(IFLA_ADDRESS, c.mac.bytes);
  if (c.name !== undefined) m.str(IFLA_IFNAME, c.name);
  if (resolved.master !== undefined) m.u32(IFLA_MASTER, resolved.master);
  if (resolved.ns) nsAttr(m, resolved.ns);
  return m;
}

/** Bridge port flags, as `bridge link set dev X hairpin/isolated on|off` sends them. */
export function setBridgePort(index: number, o: { hairpin?: boolean | undefined; isolated?: boolean | undefined }): MsgWriter {
  const m = new MsgWriter(RTM_SETLINK, 0).raw(ifinfomsg({ family: AF_BRIDGE, index }));
  const p = m.nest(IFLA_PROTINFO | NLA_F_NESTED);
  if (o.hairpin !== undefined) m.u8(IFLA_BRPORT_MODE, o.hairpin ? 1 : 0);
  if (o.isolated !== undefined) m.u8(IFLA_BRPORT_ISOLATED, o.isolated ? 1 : 0);
  return m.end(p);
}

export function delLink(index: number): MsgWriter {
  return new MsgWriter(RTM_DELLINK, 0).raw(ifinfomsg({ index }));
}
export function delLinkByName(name: string): MsgWriter {
  return new MsgWriter(RTM_DELLINK, 0).raw(ifinfomsg()).str(IFLA_IFNAME, name);
}

/** RTM_GETLINK of one device by name (or index when name is undefined). */
export function getLink(by: string | number): MsgWriter {
  const m = new MsgWriter(RTM_GETLINK, 0).raw(ifinfomsg(typeof by === "number" ? { index: by } : {}));
  if (typeof by === "string") m.str(IFLA_IFNAME, by);
  return m.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
}
/** RTM_GETLINK dump of every link (without the counters unless `skipStats` is false). */
export function dumpLinks(skipStats = true): MsgWriter {
  return new MsgWriter(RTM_GETLINK, 0).raw(ifinfomsg({ family: AF_UNSPEC })).u32(IFLA_EXT_MASK, skipStats ? RTEXT_FILTER_SKIP_STATS : 0);
}
/** An address dump; `index` limits it to one link (the kernel honours it on a socket in strict-check mode). */
export function dumpAddrs(family: 0 | 4 | 6 = 0, index = 0): MsgWriter {
  return new MsgWriter(RTM_GETADDR, 0).raw(ifaddrmsg({ family: family === 0 ? AF_UNSPEC : af(family), prefixlen: 0, index }));
}
export function dumpRoutes(family: 4 | 6): MsgWriter {
  return new MsgWriter(RTM_GETROUTE, 0).raw(rtmsg({ family: af(family) }));
}

export function address(cmd: "add" | "replace" | "del", index: number, addr: IPNet, opts: AddressOptions): MsgWriter {
  const family = addr.ip.family;
  const flags = cmd === "add" ? CREATE : cmd === "replace" ? NLM_F_CREATE | NLM_F_REPLACE : 0;
  const ifaFlags = family === 6 && opts.noDad && cmd !== "del" ? IFA_F_NODAD : 0;
  // iproute2's default scope: host for 127/8, global otherwise (not sent on delete)
  const scope = cmd !== "del" && family === 4 && (addr.ip.toBytes()[0] ?? 0) === 127 ? RT_SCOPE_HOST : 0;
  const m = new MsgWriter(cmd === "del" ? RTM_DELADDR : RTM_NEWADDR, flags).raw(ifaddrmsg({ family: af(family), prefixlen: addr.length, flags: ifaFlags, scope, index }));
  const bytes = addr.ip.toBytes();
  m.attr(IFA_LOCAL, bytes);
  m.attr(IFA_ADDRESS, bytes);
  if (ifaFlags) m.u32(IFA_FLAGS, ifaFlags);
  if (cmd !== "del" && family === 4 && opts.broadcast && addr.length <= 30) {
    m.attr(IFA_BROADCAST, addr.prefix.last().toBytes());
  }
  return m;
}

const SCOPE: Record<NonNullable<RouteSpec["scope"]>, number> = { global: RT_SCOPE_UNIVERSE, link: RT_SCOPE_LINK, host: RT_SCOPE_HOST };

export function routeFamily(r: RouteSpec): 4 | 6 {
  return r.dst?.family ?? r.via?.family ?? r.family ?? 4;
}

/** `ip route add|replace|del`: oif is the resolved `dev` (undefined when none was given). */
export function route(cmd: "add" | "replace" | "del", r: RouteSpec, oif: number | undefined): MsgWriter {
  const family = routeFamily(r);
  const flags = cmd === "add" ? CREATE : cmd === "replace" ? NLM_F_CREATE | NLM_F_REPLACE : 0;
  const table = r.table ?? RT_TABLE_MAIN;
  let scope: number;
  if (r.scope) scope = SCOPE[r.scope];
  else if (cmd === "del") scope = RT_SCOPE_NOWHERE;
  else scope = r.via ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
  const m = new MsgWriter(cmd === "del" ? RTM_DELROUTE : RTM_NEWROUTE, flags).raw(
    rtmsg({
      family: af(family),
      dstLen: r.dst?.length ?? 0,
      table: table < 256 ? table : RT_TABLE_UNSPEC,
      protocol: cmd === "del" ? 0 : RTPROT_BOOT,
      scope,
      type: cmd === "del" ? 0 : RTN_UNICAST,
    }),
  );
  // attribute order as iproute2 sends them (argv order, the device and the metrics last)
  if (r.dst && r.dst.length > 0) m.attr(RTA_DST, r.dst.ip.toBytes());
  if (r.via) m.attr(RTA_GATEWAY, r.via.toBytes());
  if (r.src) m.attr(RTA_PREFSRC, r.src.toBytes());
  if (r.metric !== undefined) m.u32(RTA_PRIORITY, r.metric);
  if (table >= 256) m.u32(RTA_TABLE, table);
  if (oif !== undefined) m.u32(RTA_OIF, oif);
  if (r.mtu !== undefined || r.advmss !== undefined) {
    const n = m.nest(RTA_METRICS);
    if (r.mtu !== undefined) m.u32(RTAX_MTU, r.mtu);
    if (r.advmss !== undefined) m.u32(RTAX_ADVMSS, r.advmss);
    m.end(n);
  }
  return m;
}

export function neighbour(cmd: "replace" | "del", index: number, ip: IP, mac?: MAC): MsgWriter {
  const m = new MsgWriter(cmd === "del" ? RTM_DELNEIGH : RTM_NEWNEIGH, cmd === "del" ? 0 : NLM_F_CREATE | NLM_F_REPLACE).raw(
    ndmsg({ family: af(ip.family), index, state: cmd === "del" ? 0 : NUD_PERMANENT }),
  );
  m.attr(NDA_DST, ip.toBytes());
  if (mac) m.attr(NDA_LLADDR, mac.bytes);
  return m;
}
