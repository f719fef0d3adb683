/**
 * Executes an IpBatch's typed operations over one rtnetlink socket, in order,
 * stopping at the first failure. Failures are described the way iproute2
 * describes them (`RTNETLINK answers: File exists`, `Error: <kernel message>.`,
 * `Cannot find device "x"`), so code that matches `ip` errors keeps working.
 */
import { closeSync, openSync } from "node:fs";
import type { IpOp } from "../ipbatch.ts";
import { parseIfInfo } from "./codec.ts";
import * as msg from "./messages.ts";
import { type NetlinkSocket, NetlinkError } from "./socket.ts";
import { ENODEV, strerror } from "./sys.ts";

/** Operation kinds this executor runs (every kind IpBatch records). */
const SUPPORTED = new Set<IpOp["op"]>(["bridge", "veth", "macvlan", "ipvlan", "vlan", "vxlan", "dummy", "neigh-replace", "neigh-del", "set", "brport", "link-del", "addr", "route"]);

export function supportsAll(ops: readonly IpOp[]): boolean {
  return ops.every((o) => SUPPORTED.has(o.op));
}

/** A failure with the text iproute2 would have printed for it. */
export class IpStyleError extends Error {
  override name = "IpStyleError";
}

/** iproute2's wording for a refused request. */
export function ipText(e: unknown): string {
  if (e instanceof NetlinkError) {
    if (e.extack) return `Error: ${e.extack}${e.extack.endsWith(".") ? "" : "."}`;
    return `RTNETLINK answers: ${strerror(e.errno)}`;
  }
  return (e as Error).message;
}

/** Device name -> ifindex in the socket's namespace, remembered until a link is added, removed, renamed or moved. */
export class IfindexResolver {
  private readonly cache = new Map<string, number>();
  constructor(private readonly sock: NetlinkSocket) {}

  /** The index, or undefined when no such device exists. */
  tryIndex(name: string): number | undefined {
    const c = this.cache.get(name);
    if (c !== undefined) return c;
    try {
      const idx = parseIfInfo(this.sock.get(msg.getLink(name)).body).index;
      this.cache.set(name, idx);
      return idx;
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === ENODEV) return undefined;
      throw e;
    }
  }
  index(name: string): number {
    const i = this.tryIndex(name);
    if (i === undefined) throw new IpStyleError(`Cannot find device "${name}"`);
    return i;
  }
  forget(): void {
    this.cache.clear();
  }
}

/** Opens the namespace named like iproute2's `netns` argument (pid, /run/netns name or path) and runs fn with it. */
function withNsRef<T>(value: string | number, fn: (ns: msg.NsRef) => T): T {
  if (typeof value === "number" || /^\d+$/.test(value)) return fn({ pid: Number(value) });
  const path = value.includes("/") ? value : `/run/netns/${value}`;
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    throw new IpStyleError(`Error: argument "${value}" is wrong: Invalid "netns" value`);
  }
  try {
    return fn({ fd });
  } finally {
    closeSync(fd);
  }
}

function maybeNs<T>(value: string | number | undefined, fn: (ns: msg.NsRef | undefined) => T): T {
  return value === undefined ? fn(undefined) : withNsRef(value, fn);
}

/** Runs one operation; throws NetlinkError or IpStyleError. */
export function executeOp(sock: NetlinkSocket, names: IfindexResolver, o: IpOp): void {
  switch (o.op) {
    case "bridge":
      sock.request(msg.newBridge(o.name, { mtu: o.mtu, mac: o.mac }));
      return;
    case "veth":
      maybeNs(o.peerNetns, (peerNs) => sock.request(msg.newVeth(o.name, o.peer, { mtu: o.mtu, mac: o.mac, peerMac: o.peerMac, peerNs })));
      names.forget();
      return;
    case "macvlan": {
      const parent = names.index(o.parent);
      maybeNs(o.netns, (ns) => sock.request(msg.newMacvlan(o.name, parent, o.mode, { mtu: o.mtu, mac: o.mac, ns })));
      return;
    }
    case "ipvlan": {
      const parent = names.index(o.parent);
      maybeNs(o.netns, (ns) => sock.request(msg.newIpvlan(o.name, parent, o.mode, o.flag, { mtu: o.mtu, ns })));
      return;
    }
    case "vlan":
      sock.request(msg.newVlan(o.name, names.index(o.parent), o.id));
      return;
    case "vxlan":
      sock.request(msg.newVxlan(o.name, { vni: o.vni, local: o.local, dev: names.index(o.dev), dstport: o.dstport, mtu: o.mtu, proxy: o.proxy }));
      return;
    case "dummy":
      sock.request(msg.newDummy(o.name));
      return;
    case "neigh-replace":
      sock.request(msg.neighbour("replace", names.index(o.dev), o.ip, o.mac));
      return;
    case "neigh-del":
      sock.request(msg.neighbour("del", names.index(o.dev), o.ip));
      return;
    case "set": {
      const index = names.index(o.dev);
      let master: number | undefined;
      if (o.set.master === null) master = 0;
      else if (o.set.master !== undefined) {
        master = names.tryIndex(o.set.master);
        if (master === undefined) throw new IpStyleError(`Error: argument "${o.set.master}" is wrong: Device does not exist`);
      }
      maybeNs(o.set.netns, (ns) => sock.request(msg.setLink(index, o.set, { master, ns })));
      if (o.set.name !== undefined || o.set.netns !== undefined) names.forget();
      return;
    }
    case "brport":
      sock.request(msg.setBridgePort(names.index(o.dev), { hairpin: o.hairpin, isolated: o.isolated }));
      return;
    case "link-del":
      sock.request(msg.delLink(names.index(o.dev)));
      names.forget();
      return;
    case "addr":
      sock.request(msg.address(o.cmd, names.index(o.dev), o.addr, o.opts));
      return;
    case "route": {
      const oif = o.route.dev !== undefined ? names.index(o.route.dev) : undefined;
      sock.request(msg.route(o.cmd, o.route, oif));
      return;
    }
  }
}

/** Runs the operations in order; returns the index of the first that failed and iproute2's text for it. */
export function executeOps(sock: NetlinkSocket, ops: readonly IpOp[]): { index: number; message: string } | undefined {
  const names = new IfindexResolver(sock);
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i];
    if (!o) continue;
    try {
      executeOp(sock, names, o);
    } catch (e) {
      if (e instanceof NetlinkError || e instanceof IpStyleError) return { index: i, message: ipText(e) };
      throw e;
    }
  }
  return undefined;
}
