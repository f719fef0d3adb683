/**
 * Traffic control for the CNI bandwidth plugin: token-bucket shaping (tbf) on a
 * link's egress, and ifb devices that turn a link's ingress into something that
 * can be shaped (ingress qdisc + u32 match-all filter + mirred redirect).
 *
 * Typed values in, rtnetlink traffic-control messages out (netlink/tc-messages.ts,
 * the same messages `tc` and `ip` send, in-process over one socket per call); with
 * BERTH_DATAPLANE=ip (Dataplane.linkBackend "ip") spawned `tc`/`ip` commands as
 * before. Every call names its namespace (null = the process's own), like the
 * rest of the dataplane; errors keep iproute2's wording on both paths.
 */
import { BerthError, systemError } from "../errors.ts";
import { IP, type MAC, validateIfName } from "../net/index.ts";
import type { Dataplane } from "./dataplane.ts";
import { attrStr, attrU32, IFLA_IFNAME, IFLA_INFO_KIND, IFLA_LINK, IFLA_LINK_NETNSID, IFLA_LINKINFO, type NlMsg, parseAttrs, parseIfInfo, RTA_OIF, RTM_NEWLINK, RTM_NEWROUTE, parseRtMsg } from "./netlink/codec.ts";
import { IfindexResolver, IpStyleError, ipText } from "./netlink/execute.ts";
import { delLinkByName, dumpLinks, getLink } from "./netlink/messages.ts";
import { readLink } from "./netlink/read.ts";
import { NetlinkError, type NetlinkSocket } from "./netlink/socket.ts";
import { EEXIST, ENODEV, ENOENT } from "./netlink/sys.ts";
import * as tcm from "./netlink/tc-messages.ts";

/** Token bucket: rate in bits/s, burst in bytes, latency in ms (tc computes the queue limit from it). */
export interface TbfSpec {
  rateBits: number;
  burstBytes: number;
  latencyMs?: number;
}

export interface QdiscInfo {
  kind: string;
  handle: string;
  root: boolean;
  /** tbf only: rate in bytes/s and burst in bytes as the kernel reports them. */
  rateBytes?: number;
  burstBytes?: number;
}

interface TcJsonQdisc {
  kind: string;
  handle: string;
  root?: boolean;
  options?: { rate?: number; burst?: number };
}

interface TcJsonFilter {
  kind: string;
  options?: { actions?: { kind: string; to_dev?: string; mirred_action?: string }[] };
}

const NOT_FOUND = /Cannot find device|Cannot find specified qdisc|does not exist|No such device|Invalid handle|Cannot delete qdisc with handle of zero|No such file or directory/;

const viaNetlink = (dp: Dataplane): boolean => dp.linkBackend === "netlink";
const inNs = (ns: string | null): string => (ns ? ` (netns ${ns})` : "");

/** The text tc/ip would have printed for a refused request or a missing device; undefined for other errors. */
function nlText(e: unknown): string | undefined {
  return e instanceof NetlinkError || e instanceof IpStyleError ? ipText(e) : undefined;
}

/** A refusal meaning "nothing to delete": no such device, qdisc or handle. */
function gone(e: unknown): boolean {
  return e instanceof NetlinkError && (e.errno === ENOENT || e.errno === ENODEV || NOT_FOUND.test(ipText(e)));
}

/**
 * Runs `fn` on an rtnetlink socket in `ns`; a refusal or missing device inside becomes
 * systemError(code, "<what>: <iproute2's text>"), the message the spawned command gave.
 */
function nl<T>(dp: Dataplane, ns: string | null, code: string, what: string, fn: (s: NetlinkSocket, names: IfindexResolver) => T): T {
  return dp.netlink(ns, code, (s) => {
    try {
      return fn(s, new IfindexResolver(s));
    } catch (e) {
      if (e instanceof BerthError) throw e;
      const t = nlText(e);
      if (t !== undefined) throw systemError(code, `${what}: ${t}`);
      throw e;
    }
  });
}

/** Deletes a qdisc; a missing one is success. */
function delQdiscQuiet(s: NetlinkSocket, ifindex: number, which: "root" | "ingress"): void {
  try {
    s.request(tcm.delQdisc(ifindex, which));
  } catch (e) {
    if (!gone(e)) throw e;
  }
}

function tbfArgs(spec: TbfSpec): tcm.TbfArgs {
  return { rateBits: spec.rateBits, burstBytes: spec.burstBytes, latencyMs: spec.latencyMs ?? 25 };
}

async function tc(dp: Dataplane, ns: string | null, args: string[]): Promise<void> {
  const r = await dp.exec(ns, ["tc", ...args], { allowFailure: true });
  if (r.exitCode !== 0) throw systemError("tc", `tc ${args.join(" ")}${ns ? ` (netns ${ns})` : ""}: ${r.stderr.trim()}`);
}

function rootTbfArgs(dev: string, spec: TbfSpec): string[] {
  validateIfName(dev);
  if (!(spec.rateBits > 0) || !(spec.burstBytes > 0)) throw new RangeError("tbf rate and burst must be positive");
  return [
    "qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf",
    "rate", `${Math.round(spec.rateBits)}bit`,
    "burst", `${Math.round(spec.burstBytes)}b`,
    "latency", `${spec.latencyMs ?? 25}ms`,
  ];
}

/** Replaces the root qdisc of `dev` with a token bucket filter. */
export async function setRootTbf(dp: Dataplane, ns: string | null, dev: string, spec: TbfSpec): Promise<void> {
  const args = rootTbfArgs(dev, spec);
  if (!viaNetlink(dp)) return tc(dp, ns, args);
  nl(dp, ns, "tc", `tc ${args.join(" ")}${inNs(ns)}`, (s, names) => s.request(tcm.replaceRootTbf(names.index(dev), tbfArgs(spec))));
}

function ingressRedirectLines(dev: string, ifb: string): string[] {
  return [
    `qdisc add dev ${dev} handle ffff: ingress`,
    `filter add dev ${dev} parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ${ifb}`,
  ];
}

export interface ShapeSpec {
  /** The host end of the container's veth. */
  dev: string;
  /** Shapes traffic into the container (root tbf on `dev`). */
  ingress?: TbfSpec;
  /** Shapes traffic from the container: `dev`'s ingress redirected to a new ifb with this tbf. */
  egress?: { ifb: string; alias: string; mac: MAC; mtu?: number; tbf: TbfSpec };
}

/**
 * Sets up a fresh attachment's shaping: over one rtnetlink socket (ifb, tbfs,
 * ingress redirect), or with the ip backend in two processes (one `ip -batch`,
 * one `tc -batch`) instead of one per object. Returns false, having changed nothing,
 * when the ifb already exists (a repeated ADD: the caller replaces step by step);
 * on any other failure what was made is removed again before throwing.
 */
export async function shapeNew(dp: Dataplane, ns: string | null, s: ShapeSpec): Promise<boolean> {
  validateIfName(s.dev);
  const e = s.egress;
  if (e) {
    validateIfName(e.ifb);
    if (e.alias.length > 255 || /[\n"]/.test(e.alias)) throw new RangeError(`invalid link alias ${JSON.stringify(e.alias)}`);
  }
  if (s.ingress) rootTbfArgs(s.dev, s.ingress);
  if (e) rootTbfArgs(e.ifb, e.tbf);
  if (viaNetlink(dp)) return shapeNewNetlink(dp, ns, s);
  if (e) {
    const made = await dp.exec(ns, ["ip", "-batch", "-"], {
      stdin: `link add name ${e.ifb} address ${e.mac}${e.mtu ? ` mtu ${e.mtu}` : ""} type ifb\nlink set dev ${e.ifb} alias "${e.alias}" up\n`,
      allowFailure: true,
    });
    if (made.exitCode !== 0) {
      if (/File exists/.test(made.stderr) && /-:1\b/.test(made.stderr)) return false;
      await dp.deleteLinks(ns, [e.ifb]);
      throw systemError("ifb", `cannot set up ifb device ${e.ifb}: ${made.stderr.trim()}`);
    }
  }
  const lines: string[] = [];
  if (s.ingress) lines.push(rootTbfArgs(s.dev, s.ingress).join(" "));
  if (e) lines.push(rootTbfArgs(e.ifb, e.tbf).join(" "), ...ingressRedirectLines(s.dev, e.ifb));
  if (lines.length === 0) return true;
  const r = await dp.exec(ns, ["tc", "-batch", "-"], { stdin: `${lines.join("\n")}\n`, allowFailure: true });
  if (r.exitCode !== 0) {
    await clearIngress(dp, ns, s.dev).catch(() => undefined);
    if (s.ingress) await clearRootQdisc(dp, ns, s.dev).catch(() => undefined);
    if (e) await dp.deleteLinks(ns, [e.ifb]);
    throw systemError("tc", `tc shaping on ${s.dev}${ns ? ` (netns ${ns})` : ""}: ${r.stderr.replace(/Command failed -:\d+\s*/, "").trim()}`);
  }
  return true;
}

/** shapeNew over one rtnetlink socket: the ifb (created up, then its alias), the tbfs, the ingress redirect. */
function shapeNewNetlink(dp: Dataplane, ns: string | null, sp: ShapeSpec): boolean {
  const e = sp.egress;
  return dp.netlink(ns, "tc", (s) => {
    const names = new IfindexResolver(s);
    let ifbIndex = 0;
    if (e) {
      try {
        s.request(tcm.newIfb(e.ifb, { mac: e.mac, mtu: e.mtu }));
      } catch (err) {
        if (err instanceof NetlinkError && err.errno === EEXIST) return false;
        const t = nlText(err);
        if (t === undefined) throw err;
        throw systemError("ifb", `cannot set up ifb device ${e.ifb}: ${t}`);
      }
      try {
        ifbIndex = names.index(e.ifb);
        s.request(tcm.setAliasUp(ifbIndex, e.alias));
      } catch (err) {
        deleteLinkQuiet(s, e.ifb);
        const t = nlText(err);
        if (t === undefined) throw err;
        throw systemError("ifb", `cannot set up ifb device ${e.ifb}: ${t}`);
      }
    }
    let dev: number | undefined;
    try {
      dev = names.index(sp.dev);
      if (sp.ingress) s.request(tcm.replaceRootTbf(dev, tbfArgs(sp.ingress)));
      if (e) {
        s.request(tcm.replaceRootTbf(ifbIndex, tbfArgs(e.tbf)));
        s.request(tcm.addIngressQdisc(dev));
        s.request(tcm.addIngressRedirect(dev, ifbIndex));
      }
    } catch (err) {
      const t = nlText(err);
      // undo what was made, like the spawned path: the ingress qdisc, the tbf, the ifb
      try {
        if (dev !== undefined) {
          delQdiscQuiet(s, dev, "ingress");
          if (sp.ingress) delQdiscQuiet(s, dev, "root");
        }
        if (e) deleteLinkQuiet(s, e.ifb);
      } catch {
        // the original failure is the one to report
      }
      if (t === undefined) throw err;
      throw systemError("tc", `tc shaping on ${sp.dev}${inNs(ns)}: ${t}`);
    }
    return true;
  });
}

function deleteLinkQuiet(s: NetlinkSocket, name: string): void {
  try {
    s.request(delLinkByName(name));
  } catch {
    // already gone, or nothing more to do about it
  }
}

/** Name, kind and MTU of each of `names` that exists in `ns` (missing ones left out): one socket, or one `ip -batch`. */
export async function linksNamed(dp: Dataplane, ns: string | null, names: readonly string[]): Promise<{ name: string; kind?: string; mtu: number }[]> {
  if (names.length === 0) return [];
  for (const n of names) validateIfName(n);
  if (viaNetlink(dp)) {
    return dp.netlink(ns, "ip-link", (s) => {
      const out: { name: string; kind?: string; mtu: number }[] = [];
      for (const n of names) {
        const l = readLink(s, n);
        if (l) out.push({ name: l.name, mtu: l.mtu, ...(l.kind ? { kind: l.kind } : {}) });
      }
      return out;
    });
  }
  const r = await dp.exec(ns, ["ip", "-j", "-d", "-force", "-batch", "-"], {
    stdin: `${names.map((n) => `link show dev ${n}`).join("\n")}\n`,
    allowFailure: true,
  });
  const out: { name: string; kind?: string; mtu: number }[] = [];
  for (const line of r.stdout.split("\n")) {
    if (!line.trim().startsWith("[")) continue;
    for (const l of JSON.parse(line) as { ifname: string; mtu: number; linkinfo?: { info_kind?: string } }[]) {
      out.push({ name: l.ifname, mtu: l.mtu, ...(l.linkinfo?.info_kind ? { kind: l.linkinfo.info_kind } : {}) });
    }
  }
  return out;
}

/** Removes the root qdisc of `dev` (back to the default); a missing device or qdisc is success. */
export async function clearRootQdisc(dp: Dataplane, ns: string | null, dev: string): Promise<void> {
  if (viaNetlink(dp)) return clearQdisc(dp, ns, dev, "root");
  const r = await dp.exec(ns, ["tc", "qdisc", "del", "dev", dev, "root"], { allowFailure: true });
  if (r.exitCode !== 0 && !NOT_FOUND.test(r.stderr)) throw systemError("tc", `tc qdisc del dev ${dev} root: ${r.stderr.trim()}`);
}

/** Sends everything `dev` receives to `ifb` (ingress qdisc + match-all u32 + mirred redirect), replacing what was there. */
export async function redirectIngress(dp: Dataplane, ns: string | null, dev: string, ifb: string): Promise<void> {
  validateIfName(dev);
  validateIfName(ifb);
  if (viaNetlink(dp)) {
    nl(dp, ns, "tc", `tc ingress redirect ${dev} -> ${ifb}${inNs(ns)}`, (s, names) => {
      const from = names.index(dev);
      const to = names.index(ifb);
      delQdiscQuiet(s, from, "ingress");
      s.request(tcm.addIngressQdisc(from));
      s.request(tcm.addIngressRedirect(from, to));
    });
    return;
  }
  await clearIngress(dp, ns, dev);
  const script = ingressRedirectLines(dev, ifb);
  const r = await dp.exec(ns, ["tc", "-batch", "-"], { stdin: `${script.join("\n")}\n`, allowFailure: true });
  if (r.exitCode !== 0) throw systemError("tc", `tc ingress redirect ${dev} -> ${ifb}${ns ? ` (netns ${ns})` : ""}: ${r.stderr.trim()}`);
}

/** `tc qdisc del dev <dev> root|ingress` over netlink: a missing device or qdisc is success. */
function clearQdisc(dp: Dataplane, ns: string | null, dev: string, which: "root" | "ingress"): void {
  nl(dp, ns, "tc", `tc qdisc del dev ${dev} ${which}`, (s, names) => {
    const i = names.tryIndex(dev);
    if (i !== undefined) delQdiscQuiet(s, i, which);
  });
}

export async function clearIngress(dp: Dataplane, ns: string | null, dev: string): Promise<void> {
  if (viaNetlink(dp)) return clearQdisc(dp, ns, dev, "ingress");
  const r = await dp.exec(ns, ["tc", "qdisc", "del", "dev", dev, "ingress"], { allowFailure: true });
  if (r.exitCode !== 0 && !NOT_FOUND.test(r.stderr)) throw systemError("tc", `tc qdisc del dev ${dev} ingress: ${r.stderr.trim()}`);
}

/** The qdiscs of `dev`, or undefined when the device does not exist. */
export async function qdiscs(dp: Dataplane, ns: string | null, dev: string): Promise<QdiscInfo[] | undefined> {
  if (viaNetlink(dp)) {
    return nl(dp, ns, "tc", `tc qdisc show dev ${dev}`, (s, names) => {
      const i = names.tryIndex(dev);
      if (i === undefined) return undefined;
      const out: QdiscInfo[] = [];
      for (const m of s.dump(tcm.dumpQdiscs())) {
        if (m.type !== tcm.RTM_NEWQDISC) continue;
        const q = tcm.parseTcMsg(m);
        if (q.ifindex !== i) continue;
        const tbf = q.kind === "tbf" ? tcm.decodeTbf(q.options) : undefined;
        out.push({ kind: q.kind, handle: tcm.qdiscHandle(q.handle), root: q.parent === tcm.TC_H_ROOT, ...(tbf ?? {}) });
      }
      return out;
    });
  }
  const r = await dp.exec(ns, ["tc", "-j", "qdisc", "show", "dev", dev], { allowFailure: true });
  if (r.exitCode !== 0) {
    if (NOT_FOUND.test(r.stderr)) return undefined;
    throw systemError("tc", `tc qdisc show dev ${dev}: ${r.stderr.trim()}`);
  }
  return (JSON.parse(r.stdout || "[]") as TcJsonQdisc[]).map((q) => ({
    kind: q.kind,
    handle: q.handle,
    root: q.root === true,
    ...(q.kind === "tbf" && q.options?.rate !== undefined ? { rateBytes: q.options.rate } : {}),
    ...(q.kind === "tbf" && q.options?.burst !== undefined ? { burstBytes: q.options.burst } : {}),
  }));
}

/** The device that `dev`'s ingress is redirected to, if any. */
export async function ingressRedirectTarget(dp: Dataplane, ns: string | null, dev: string): Promise<string | undefined> {
  if (viaNetlink(dp)) {
    return dp.netlink(ns, "tc", (s) => {
      const i = new IfindexResolver(s).tryIndex(dev);
      if (i === undefined) return undefined;
      let filters: NlMsg[];
      try {
        filters = s.dump(tcm.dumpFilters(i, tcm.INGRESS_HANDLE));
      } catch (e) {
        if (e instanceof NetlinkError) return undefined;
        throw e;
      }
      for (const m of filters) {
        if (m.type !== tcm.RTM_NEWTFILTER) continue;
        for (const target of tcm.redirectTargets(tcm.parseTcMsg(m))) {
          const name = linkName(s, target);
          if (name) return name;
        }
      }
      return undefined;
    });
  }
  const r = await dp.exec(ns, ["tc", "-j", "filter", "show", "dev", dev, "parent", "ffff:"], { allowFailure: true });
  if (r.exitCode !== 0) return undefined;
  for (const f of JSON.parse(r.stdout || "[]") as TcJsonFilter[]) {
    for (const a of f.options?.actions ?? []) {
      if (a.kind === "mirred" && a.mirred_action === "redirect" && a.to_dev) return a.to_dev;
    }
  }
  return undefined;
}

/** Creates an ifb device (up) with an alias that records who owns it; an existing one is reused. */
/** The name of the link with `index` in the socket's namespace, undefined when there is none. */
function linkName(s: NetlinkSocket, index: number): string | undefined {
  try {
    const m = s.get(getLink(index));
    return m.type === RTM_NEWLINK ? attrStr(parseIfInfo(m.body).attrs.get(IFLA_IFNAME)) : undefined;
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENODEV) return undefined;
    throw e;
  }
}

export async function ensureIfb(dp: Dataplane, ns: string | null, name: string, alias: string, mtu?: number): Promise<void> {
  validateIfName(name);
  if (alias.length > 255 || /[\n"]/.test(alias)) throw new RangeError(`invalid link alias ${JSON.stringify(alias)}`);
  if (viaNetlink(dp)) {
    nl(dp, ns, "ifb", `cannot set up ifb device ${name}`, (s, names) => {
      if (names.tryIndex(name) === undefined) {
        try {
          s.request(tcm.newIfb(name, { mtu }));
        } catch (e) {
          if (!(e instanceof NetlinkError && e.errno === EEXIST)) throw e; // made meanwhile: reuse it
        }
        names.forget();
      }
      s.request(tcm.setAliasUp(names.index(name), alias));
    });
    return;
  }
  const lines: string[] = [];
  if (!(await dp.link(ns, name))) lines.push(`link add name ${name}${mtu ? ` mtu ${mtu}` : ""} type ifb`);
  lines.push(`link set dev ${name} alias "${alias}"`, `link set dev ${name} up`);
  const r = await dp.exec(ns, ["ip", "-batch", "-"], { stdin: `${lines.join("\n")}\n`, allowFailure: true });
  if (r.exitCode !== 0) throw systemError("ifb", `cannot set up ifb device ${name}: ${r.stderr.trim()}`);
}

export interface AliasedLink {
  name: string;
  kind: string | undefined;
  alias: string;
}

/** Links of `kind` whose alias starts with `prefix` (how plugins find what they own without a state file). */
export async function linksByAlias(dp: Dataplane, ns: string | null, kind: string, prefix: string): Promise<AliasedLink[]> {
  if (viaNetlink(dp)) {
    return dp.netlink(ns, "ip-link", (s) => {
      const out: AliasedLink[] = [];
      for (const m of s.dump(dumpLinks())) {
        if (m.type !== RTM_NEWLINK) continue;
        const a = parseIfInfo(m.body).attrs;
        const li = a.get(IFLA_LINKINFO);
        const k = li ? attrStr(parseAttrs(li).get(IFLA_INFO_KIND)) : undefined;
        const alias = attrStr(a.get(tcm.IFLA_IFALIAS));
        if (k !== kind || alias === undefined || !alias.startsWith(prefix)) continue;
        out.push({ name: attrStr(a.get(IFLA_IFNAME)) ?? "", kind: k, alias });
      }
      return out;
    });
  }
  const r = await dp.exec(ns, ["ip", "-j", "-d", "link", "show", "type", kind]);
  const links = JSON.parse(r.stdout || "[]") as { ifname: string; ifalias?: string; linkinfo?: { info_kind?: string } }[];
  return links
    .filter((l) => typeof l.ifalias === "string" && l.ifalias.startsWith(prefix))
    .map((l) => ({ name: l.ifname, kind: l.linkinfo?.info_kind, alias: l.ifalias ?? "" }));
}

/**
 * The index of the peer of veth `dev` in `ns` (its iflink), or undefined when `dev`
 * is missing or not a veth/peer device.
 */
export async function peerIndex(dp: Dataplane, ns: string | null, dev: string): Promise<number | undefined> {
  if (viaNetlink(dp)) {
    return dp.netlink(ns, "ip-link", (s) => {
      let m: NlMsg;
      try {
        m = s.get(getLink(dev));
      } catch (e) {
        if (e instanceof NetlinkError && e.errno === ENODEV) return undefined;
        throw e;
      }
      if (m.type !== RTM_NEWLINK) return undefined;
      const a = parseIfInfo(m.body).attrs;
      const iflink = attrU32(a.get(IFLA_LINK));
      if (!iflink) return undefined;
      // the peer in another namespace (a link-netnsid): its index there; in this one: only if it exists
      if (a.has(IFLA_LINK_NETNSID)) return iflink;
      return linkName(s, iflink) !== undefined ? iflink : undefined;
    });
  }
  const r = await dp.exec(ns, ["ip", "-j", "link", "show", "dev", dev], { allowFailure: true });
  if (r.exitCode !== 0) return undefined;
  const l = (JSON.parse(r.stdout || "[]") as { link_index?: number; link?: string | null }[])[0];
  if (!l) return undefined;
  if (typeof l.link_index === "number") return l.link_index;
  if (typeof l.link === "string") {
    const peer = await dp.link(ns, l.link);
    return peer?.index;
  }
  return undefined;
}

/** The name of the link with `index` in `ns`. */
export async function linkNameByIndex(dp: Dataplane, ns: string | null, index: number): Promise<string | undefined> {
  return (await dp.links(ns)).find((l) => l.index === index)?.name;
}

/** The device the kernel would use to reach `ip` from `ns` (`ip route get`). */
export async function routeDev(dp: Dataplane, ns: string | null, ip: string): Promise<string | undefined> {
  if (viaNetlink(dp)) {
    const addr = IP.tryParse(ip);
    if (addr) {
      return dp.netlink(ns, "ip-route", (s) => {
        let m: NlMsg;
        try {
          m = s.get(tcm.getRoute(addr));
        } catch (e) {
          if (e instanceof NetlinkError) return undefined; // unreachable, like `ip route get` failing
          throw e;
        }
        if (m.type !== RTM_NEWROUTE) return undefined;
        const oif = attrU32(parseRtMsg(m.body).attrs.get(RTA_OIF));
        return oif ? linkName(s, oif) : undefined;
      });
    }
  }
  const r = await dp.exec(ns, ["ip", "-j", "route", "get", ip], { allowFailure: true });
  if (r.exitCode !== 0) return undefined;
  return (JSON.parse(r.stdout || "[]") as { dev?: string }[])[0]?.dev;
}
