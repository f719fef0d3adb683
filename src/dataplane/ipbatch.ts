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

export interface RouteSpec {
  /** Destination prefix; undefined means the default route of `family`. */
  dst?: Prefix;
  family?: 4 | 6;
  via?: IP;
  dev?: string;
  src?: IP;
  metric?: number;
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
  addAddress(dev: string, addr: IPNet, opts: { noDad?: boolean } = {}): this {
    const nodad = opts.noDad && addr.ip.family === 6 ? " nodad" : "";
    return this.push(`address add ${addr} dev ${dev}${nodad}`);
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
  return parts.join(" ");
}
