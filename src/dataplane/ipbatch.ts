/**
 * A typed builder for one `ip -batch` run in one network namespace. Each method
 * appends one iproute2 command; `Dataplane.apply` executes them all in a single
 * process (0.2-0.4 ms per command instead of ~2 ms per spawned `ip`).
 * Values are typed (IPNet, IP, Prefix, MAC); they become text only here.
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

export class IpBatch {
  readonly ns: string | null;
  readonly lines: string[] = [];
  constructor(ns: string | null) {
    this.ns = ns;
  }
  get empty(): boolean {
    return this.lines.length === 0;
  }
  private push(line: string): this {
    this.lines.push(line);
    return this;
  }

  addBridge(name: string, opts: { mtu?: number; mac?: MAC } = {}): this {
    validateIfName(name);
    const mtu = opts.mtu ? ` mtu ${opts.mtu}` : "";
    const mac = opts.mac ? ` address ${opts.mac}` : "";
    // no STP, forward delay 0: ports forward at once like docker0
    return this.push(`link add name ${name}${mtu}${mac} type bridge stp_state 0 forward_delay 0`);
  }

  addVeth(name: string, peer: string, opts: VethOptions = {}): this {
    validateIfName(name);
    validateIfName(peer, "peer ifname");
    const mtu = opts.mtu ? ` mtu ${opts.mtu}` : "";
    const mac = opts.mac ? ` address ${opts.mac}` : "";
    const peerMac = opts.peerMac ? ` address ${opts.peerMac}` : "";
    const peerNs = opts.peerNetns !== undefined ? ` netns ${opts.peerNetns}` : "";
    return this.push(`link add name ${name}${mtu}${mac} type veth peer name ${peer}${mtu}${peerMac}${peerNs}`);
  }

  /** A macvlan child of `parent` (created in this batch's namespace, where `parent` must be). */
  /** `opts.netns`: create the child directly in that namespace (name or path); the name is checked there. */
  addMacvlan(name: string, parent: string, mode: MacvlanMode, opts: { mtu?: number; mac?: MAC; netns?: string } = {}): this {
    validateIfName(name);
    validateIfName(parent, "parent");
    const mtu = opts.mtu ? ` mtu ${opts.mtu}` : "";
    const mac = opts.mac ? ` address ${opts.mac}` : "";
    const ns = opts.netns !== undefined ? ` netns ${opts.netns}` : "";
    return this.push(`link add link ${parent} name ${name}${mtu}${mac}${ns} type macvlan mode ${mode}`);
  }

  /** An ipvlan child of `parent`. Mode and flag belong to the parent: every child of one parent shares them. */
  addIpvlan(name: string, parent: string, mode: IpvlanMode, flag: IpvlanFlag = "bridge", opts: { mtu?: number; netns?: string } = {}): this {
    validateIfName(name);
    validateIfName(parent, "parent");
    const mtu = opts.mtu ? ` mtu ${opts.mtu}` : "";
    const ns = opts.netns !== undefined ? ` netns ${opts.netns}` : "";
    return this.push(`link add link ${parent} name ${name}${mtu}${ns} type ipvlan mode ${mode} ${flag}`);
  }

  /** An 802.1Q sub-interface of `parent` with VLAN id `id` (1-4094). */
  addVlan(name: string, parent: string, id: number): this {
    validateIfName(name);
    validateIfName(parent, "parent");
    if (!Number.isInteger(id) || id < 1 || id > 4094) throw new RangeError(`VLAN id ${id} is not in 1-4094`);
    return this.push(`link add link ${parent} name ${name} type vlan id ${id}`);
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
    return this.push(`link add name ${name}${mtu} type vxlan id ${o.vni} dstport ${o.dstport} local ${o.local} dev ${o.dev} nolearning${proxy}`);
  }

  /** A permanent neighbour entry (IP -> MAC) on `dev`, replacing any other for the address. */
  replaceNeighbour(dev: string, ip: IP, mac: MAC): this {
    return this.push(`neigh replace ${ip} lladdr ${mac} dev ${dev} nud permanent`);
  }

  deleteNeighbour(dev: string, ip: IP): this {
    return this.push(`neigh del ${ip} dev ${dev}`);
  }

  /** A dummy device (a parent that leads nowhere: isolated macvlan/ipvlan networks). */
  addDummy(name: string): this {
    validateIfName(name);
    return this.push(`link add name ${name} type dummy`);
  }

  setUp(dev: string): this {
    return this.push(`link set dev ${dev} up`);
  }
  setDown(dev: string): this {
    return this.push(`link set dev ${dev} down`);
  }
  setMaster(dev: string, master: string): this {
    return this.push(`link set dev ${dev} master ${master}`);
  }
  setNoMaster(dev: string): this {
    return this.push(`link set dev ${dev} nomaster`);
  }
  /** Lets a bridge port send frames back out where they came from (published-port hairpin). */
  setHairpin(dev: string, on: boolean): this {
    return this.push(`link set dev ${dev} type bridge_slave hairpin ${on ? "on" : "off"}`);
  }
  /** Isolated bridge ports cannot exchange frames with each other, only with non-isolated ports and the bridge (icc=false). */
  setIsolated(dev: string, on: boolean): this {
    return this.push(`link set dev ${dev} type bridge_slave isolated ${on ? "on" : "off"}`);
  }
  setPromisc(dev: string, on: boolean): this {
    return this.push(`link set dev ${dev} promisc ${on ? "on" : "off"}`);
  }
  setAllmulticast(dev: string, on: boolean): this {
    return this.push(`link set dev ${dev} allmulticast ${on ? "on" : "off"}`);
  }
  setTxQueueLen(dev: string, qlen: number): this {
    return this.push(`link set dev ${dev} txqueuelen ${qlen}`);
  }
  setMtu(dev: string, mtu: number): this {
    return this.push(`link set dev ${dev} mtu ${mtu}`);
  }
  setMac(dev: string, mac: MAC): this {
    return this.push(`link set dev ${dev} address ${mac}`);
  }
  rename(dev: string, newName: string): this {
    validateIfName(newName);
    return this.push(`link set dev ${dev} name ${newName}`);
  }
  moveToNetns(dev: string, netns: string): this {
    return this.push(`link set dev ${dev} netns ${netns}`);
  }
  deleteLink(dev: string): this {
    return this.push(`link del dev ${dev}`);
  }
  addAddress(dev: string, addr: IPNet, opts: AddressOptions = {}): this {
    return this.push(`address add ${addr}${addressFlags(addr, opts)} dev ${dev}`);
  }
  /** Adds the address or leaves it as it is when present (idempotent under concurrency). */
  replaceAddress(dev: string, addr: IPNet, opts: AddressOptions = {}): this {
    return this.push(`address replace ${addr}${addressFlags(addr, opts)} dev ${dev}`);
  }
  deleteAddress(dev: string, addr: IPNet): this {
    return this.push(`address del ${addr} dev ${dev}`);
  }
  addRoute(r: RouteSpec): this {
    return this.push(`route add ${routeArgs(r)}`);
  }
  replaceRoute(r: RouteSpec): this {
    return this.push(`route replace ${routeArgs(r)}`);
  }
  deleteRoute(r: RouteSpec): this {
    return this.push(`route del ${routeArgs(r)}`);
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
