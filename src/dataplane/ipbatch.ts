/**
 * A typed builder for one batch of link/address/route/neighbour changes in one
 * network namespace. Each method records one typed operation (`ops`, what
 * `Dataplane.apply` executes over rtnetlink, see netlink/execute.ts) and the
 * same command as an iproute2 batch line (`lines`: the `ip -batch` fallback and
 * the text that names a failed operation in errors). Values are typed (IPNet,
 * IP, Prefix, MAC); they become text or bytes only at the edges.
 */
import type { IP, IPNet, MAC, Prefix } from "../net/index.ts";
import { validateIfName } from "../net/index.ts";

export interface VethOptions {
  mtu?: number;
  mac?: MAC;
  /** Create the peer directly inside this namespace: a name under /run/netns, or the pid of a process in it. */
  peerNetns?: string | number;
  peerMac?: MAC;
}

/** Macvlan modes (iproute2 names): how children of one parent reach each other. */
export type MacvlanMode = "bridge" | "private" | "vepa" | "passthru";
export const MACVLAN_MODES: readonly MacvlanMode[] = ["bridge", "private", "vepa", "passthru"];
/** Ipvlan modes. The kernel keeps ONE mode per parent (the port): a new child with another mode switches the others. */
export type IpvlanMode = "l2" | "l3" | "l3s";
export const IPVLAN_MODES: readonly IpvlanMode[] = ["l2", "l3", "l3s"];
/** Ipvlan flags (also per parent in the kernel). */
export type IpvlanFlag = "bridge" | "private" | "vepa";
export const IPVLAN_FLAGS: readonly IpvlanFlag[] = ["bridge", "private", "vepa"];

export interface RouteSpec {
  /** Destination prefix; undefined means the default route of `family`. */
  dst?: Prefix;
  family?: 4 | 6;
  via?: IP;
  dev?: string;
  src?: IP;
  metric?: number;
  /** Route scope (iproute2 names: "link", "host", "global"). */
  scope?: "link" | "host" | "global";
  table?: number;
  mtu?: number;
  advmss?: number;
}

export interface AddressOptions {
  noDad?: boolean;
  /** IPv4: set the broadcast address from the prefix (`brd +`), as netlink-based tools do. */
  broadcast?: boolean;
}

/** One operation of a batch, as data (lines[i] is ops[i] in iproute2 syntax). */
export type IpOp =
  | { op: "bridge"; name: string; mtu?: number; mac?: MAC }
  | { op: "veth"; name: string; peer: string; mtu?: number; mac?: MAC; peerMac?: MAC; peerNetns?: string | number }
  | { op: "macvlan"; name: string; parent: string; mode: MacvlanMode; mtu?: number; mac?: MAC; netns?: string }
  | { op: "ipvlan"; name: string; parent: string; mode: IpvlanMode; flag: IpvlanFlag; mtu?: number; netns?: string }
  | { op: "vlan"; name: string; parent: string; id: number }
  | { op: "vxlan"; name: string; vni: number; local: IP; dev: string; dstport: number; mtu?: number; proxy?: boolean }
  | { op: "dummy"; name: string }
  | { op: "neigh-replace"; dev: string; ip: IP; mac: MAC }
  | { op: "neigh-del"; dev: string; ip: IP }
  | { op: "set"; dev: string; set: LinkChange }
  | { op: "brport"; dev: string; hairpin?: boolean; isolated?: boolean }
  | { op: "link-del"; dev: string }
  | { op: "addr"; cmd: "add" | "replace" | "del"; dev: string; addr: IPNet; opts: AddressOptions }
  | { op: "route"; cmd: "add" | "replace" | "del"; route: RouteSpec };

/** What one `link set` changes (exactly one field per operation). */
export interface LinkChange {
  up?: boolean;
  /** A master's name, or null for nomaster. */
  master?: string | null;
  promisc?: boolean;
  allmulti?: boolean;
  txqlen?: number;
  mtu?: number;
  mac?: MAC;
  name?: string;
  /** Target namespace: a name under /run/netns, an absolute path or a pid (digits). */
  netns?: string;
}

export class IpBatch {
  readonly ns: string | null;
  readonly lines: string[] = [];
  readonly ops: IpOp[] = [];
  constructor(ns: string | null) {
    this.ns = ns;
  }
  get empty(): boolean {
    return this.lines.length === 0;
  }
  private push(line: string, op: IpOp): this {
    this.lines.push(line);
    this.ops.push(op);
    return this;
  }
  private set(dev: string, line: string, set: LinkChange): this {
    return this.push(`link set dev ${dev} ${line}`, { op: "set", dev, set });
  }

  addBridge(name: string, opts: { mtu?: number; mac?: MAC } = {}): this {
    validateIfName(name);
    const mtu = opts.mtu ? ` mtu ${opts.mtu}` : "";
    const mac = opts.mac ? ` address ${opts.mac}` : "";
    // no STP, forward delay 0: ports forward at once like docker0
    return this.push(`link add name ${name}${mtu}${mac} type bridge stp_state 0 forward_delay 0`, { op: "bridge", name, ...pick(opts) });
  }

  addVeth(name: string, peer: string, opts: VethOptions = {}): this {
    validateIfName(name);
    validateIfName(peer, "peer ifname");
    const mtu = opts.mtu ? ` mtu ${opts.mtu}` : "";
    const mac = opts.mac ? ` address ${opts.mac}` : "";
    const peerMac = opts.peerMac ? ` address ${opts.peerMac}` : "";
    const peerNs = opts.peerNetns !== undefined ? ` netns ${opts.peerNetns}` : "";
    return this.push(`link add name ${name}${mtu}${mac} type veth peer name ${peer}${mtu}${peerMac}${peerNs}`, { op: "veth", name, peer, ...pick(opts) });
  }

  /** A macvlan child of `parent` (created in this batch's namespace, where `parent` must be). */
  /** `opts.netns`: create the child directly in that namespace (name or path); the name is checked there. */
  addMacvlan(name: string, parent: string, mode: MacvlanMode, opts: { mtu?: number; mac?: MAC; netns?: string } = {}): this {
    validateIfName(name);
    validateIfName(parent, "parent");
    const mtu = opts.mtu ? ` mtu ${opts.mtu}` : "";
    const mac = opts.mac ? ` address ${opts.mac}` : "";
    const ns = opts.netns !== undefined ? ` netns ${opts.netns}` : "";
    return this.push(`link add link ${parent} name ${name}${mtu}${mac}${ns} type macvlan mode ${mode}`, { op: "macvlan", name, parent, mode, ...pick(opts) });
  }

  /** An ipvlan child of `parent`. Mode and flag belong to the parent: every child of one parent shares them. */
  addIpvlan(name: string, parent: string, mode: IpvlanMode, flag: IpvlanFlag = "bridge", opts: { mtu?: number; netns?: string } = {}): this {
    validateIfName(name);
    validateIfName(parent, "parent");
    const mtu = opts.mtu ? ` mtu ${opts.mtu}` : "";
    const ns = opts.netns !== undefined ? ` netns ${opts.netns}` : "";
    return this.push(`link add link ${parent} name ${name}${mtu}${ns} type ipvlan mode ${mode} ${flag}`, { op: "ipvlan", name, parent, mode, flag, ...pick(opts) });
  }

  /** An 802.1Q sub-interface of `parent` with VLAN id `id` (1-4094). */
  addVlan(name: string, parent: string, id: number): this {
    validateIfName(name);
    validateIfName(parent, "parent");
    if (!Number.isInteger(id) || id < 1 || id > 4094) throw new RangeError(`VLAN id ${id} is not in 1-4094`);
    return this.push(`link add link ${parent} name ${name} type vlan id ${id}`, { op: "vlan", name, parent, id });
  }

  /**
   * A VXLAN device (overlay networks): `vni` on UDP `dstport`, from `local` over
   * the underlay device `dev`. No learning: forwarding entries are programmed
   * (see VxlanOps); with `proxy` the device answers ARP/ND from its neighbour table.
   */
  addVxlan(name: string, o: { vni: number; local: IP; dev: string; dstport: number; mtu?: number; proxy?: boolean }): this {
    validateIfName(name);
    validateIfName(o.dev, "underlay device");
    if (!Number.isInteger(o.vni) || o.vni < 1 || o.vni > 0xffffff) throw new RangeError(`VNI ${o.vni} is not in 1-16777215`);
    const mtu = o.mtu ? ` mtu ${o.mtu}` : "";
    const proxy = o.proxy ? " proxy" : "";
    return this.push(`link add name ${name}${mtu} type vxlan id ${o.vni} dstport ${o.dstport} local ${o.local} dev ${o.dev} nolearning${proxy}`, {
      op: "vxlan",
      name,
      ...pick(o),
    });
  }

  /** A permanent neighbour entry (IP -> MAC) on `dev`, replacing any other for the address. */
  replaceNeighbour(dev: string, ip: IP, mac: MAC): this {
    return this.push(`neigh replace ${ip} lladdr ${mac} dev ${dev} nud permanent`, { op: "neigh-replace", dev, ip, mac });
  }

  deleteNeighbour(dev: string, ip: IP): this {
    return this.push(`neigh del ${ip} dev ${dev}`, { op: "neigh-del", dev, ip });
  }

  /** A dummy device (a parent that leads nowhere: isolated macvlan/ipvlan networks). */
  addDummy(name: string): this {
    validateIfName(name);
    return this.push(`link add name ${name} type dummy`, { op: "dummy", name });
  }

  setUp(dev: string): this {
    return this.set(dev, "up", { up: true });
  }
  setDown(dev: string): this {
    return this.set(dev, "down", { up: false });
  }
  setMaster(dev: string, master: string): this {
    return this.set(dev, `master ${master}`, { master });
  }
  setNoMaster(dev: string): this {
    return this.set(dev, "nomaster", { master: null });
  }
  /** Lets a bridge port send frames back out where they came from (published-port hairpin). */
  setHairpin(dev: string, on: boolean): this {
    return this.push(`link set dev ${dev} type bridge_slave hairpin ${on ? "on" : "off"}`, { op: "brport", dev, hairpin: on });
  }
  /** Isolated bridge ports cannot exchange frames with each other, only with non-isolated ports and the bridge (icc=false). */
  setIsolated(dev: string, on: boolean): this {
    return this.push(`link set dev ${dev} type bridge_slave isolated ${on ? "on" : "off"}`, { op: "brport", dev, isolated: on });
  }
  setPromisc(dev: string, on: boolean): this {
    return this.set(dev, `promisc ${on ? "on" : "off"}`, { promisc: on });
  }
  setAllmulticast(dev: string, on: boolean): this {
    return this.set(dev, `allmulticast ${on ? "on" : "off"}`, { allmulti: on });
  }
  setTxQueueLen(dev: string, qlen: number): this {
    return this.set(dev, `txqueuelen ${qlen}`, { txqlen: qlen });
  }
  setMtu(dev: string, mtu: number): this {
    return this.set(dev, `mtu ${mtu}`, { mtu });
  }
  setMac(dev: string, mac: MAC): this {
    return this.set(dev, `address ${mac}`, { mac });
  }
  rename(dev: string, newName: string): this {
    validateIfName(newName);
    return this.set(dev, `name ${newName}`, { name: newName });
  }
  moveToNetns(dev: string, netns: string): this {
    return this.set(dev, `netns ${netns}`, { netns });
  }
  deleteLink(dev: string): this {
    return this.push(`link del dev ${dev}`, { op: "link-del", dev });
  }
  addAddress(dev: string, addr: IPNet, opts: AddressOptions = {}): this {
    return this.push(`address add ${addr}${addressFlags(addr, opts)} dev ${dev}`, { op: "addr", cmd: "add", dev, addr, opts });
  }
  /** Adds the address or leaves it as it is when present (idempotent under concurrency). */
  replaceAddress(dev: string, addr: IPNet, opts: AddressOptions = {}): this {
    return this.push(`address replace ${addr}${addressFlags(addr, opts)} dev ${dev}`, { op: "addr", cmd: "replace", dev, addr, opts });
  }
  deleteAddress(dev: string, addr: IPNet): this {
    return this.push(`address del ${addr} dev ${dev}`, { op: "addr", cmd: "del", dev, addr, opts: {} });
  }
  addRoute(r: RouteSpec): this {
    return this.push(`route add ${routeArgs(r)}`, { op: "route", cmd: "add", route: r });
  }
  replaceRoute(r: RouteSpec): this {
    return this.push(`route replace ${routeArgs(r)}`, { op: "route", cmd: "replace", route: r });
  }
  deleteRoute(r: RouteSpec): this {
    return this.push(`route del ${routeArgs(r)}`, { op: "route", cmd: "del", route: r });
  }
}

function routeArgs(r: RouteSpec): string {
  const family = r.dst?.family ?? r.via?.family ?? r.family ?? 4;
  // batch lines take no "-6" option, so an IPv6 default route is spelled ::/0
  const parts = [r.dst ? r.dst.toString() : family === 6 ? "::/0" : "0.0.0.0/0"];
  if (r.via) parts.push("via", r.via.toString());
  if (r.dev) parts.push("dev", r.dev);
  if (r.src) parts.push("src", r.src.toString());
  if (r.metric !== undefined) parts.push("metric", String(r.metric));
  if (r.scope) parts.push("scope", r.scope);
  if (r.table !== undefined) parts.push("table", String(r.table));
  if (r.mtu !== undefined) parts.push("mtu", String(r.mtu));
  if (r.advmss !== undefined) parts.push("advmss", String(r.advmss));
  return parts.join(" ");
}

function addressFlags(addr: IPNet, opts: AddressOptions): string {
  if (addr.ip.family === 6) return opts.noDad ? " nodad" : "";
  return opts.broadcast && addr.length <= 30 ? " brd +" : "";
}

/** The defined fields of an options object (exactOptionalPropertyTypes: no explicit undefineds in ops). */
function pick<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
