/**
 * Traffic control for the CNI bandwidth plugin: token-bucket shaping (tbf) on a
 * link's egress, and ifb devices that turn a link's ingress into something that
 * can be shaped (ingress qdisc + u32 match-all filter + mirred redirect).
 *
 * Typed values in, `tc`/`ip` commands out; every command names its namespace
 * (null = the process's own), like the rest of the dataplane.
 */
import { systemError } from "../errors.ts";
import { type MAC, validateIfName } from "../net/index.ts";
import type { Dataplane } from "./dataplane.ts";

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
  await tc(dp, ns, rootTbfArgs(dev, spec));
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
 * Sets up a fresh attachment's shaping in two processes (one `ip -batch`, one
 * `tc -batch`) instead of one per object. Returns false, having changed nothing,
 * when the ifb already exists (a repeated ADD: the caller replaces step by step);
 * on any other failure what was made is removed again before throwing.
 */
export async function shapeNew(dp: Dataplane, ns: string | null, s: ShapeSpec): Promise<boolean> {
  validateIfName(s.dev);
  const e = s.egress;
  if (e) {
    validateIfName(e.ifb);
    if (e.alias.length > 255 || /[\n"]/.test(e.alias)) throw new RangeError(`invalid link alias ${JSON.stringify(e.alias)}`);
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

/** Name, kind and MTU of each of `names` that exists in `ns`, in one `ip -batch` (missing ones left out). */
export async function linksNamed(dp: Dataplane, ns: string | null, names: readonly string[]): Promise<{ name: string; kind?: string; mtu: number }[]> {
  if (names.length === 0) return [];
  for (const n of names) validateIfName(n);
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
  const r = await dp.exec(ns, ["tc", "qdisc", "del", "dev", dev, "root"], { allowFailure: true });
  if (r.exitCode !== 0 && !NOT_FOUND.test(r.stderr)) throw systemError("tc", `tc qdisc del dev ${dev} root: ${r.stderr.trim()}`);
}

/** Sends everything `dev` receives to `ifb` (ingress qdisc + match-all u32 + mirred redirect), replacing what was there. */
export async function redirectIngress(dp: Dataplane, ns: string | null, dev: string, ifb: string): Promise<void> {
  validateIfName(dev);
  validateIfName(ifb);
  await clearIngress(dp, ns, dev);
  const script = ingressRedirectLines(dev, ifb);
  const r = await dp.exec(ns, ["tc", "-batch", "-"], { stdin: `${script.join("\n")}\n`, allowFailure: true });
  if (r.exitCode !== 0) throw systemError("tc", `tc ingress redirect ${dev} -> ${ifb}${ns ? ` (netns ${ns})` : ""}: ${r.stderr.trim()}`);
}

export async function clearIngress(dp: Dataplane, ns: string | null, dev: string): Promise<void> {
  const r = await dp.exec(ns, ["tc", "qdisc", "del", "dev", dev, "ingress"], { allowFailure: true });
  if (r.exitCode !== 0 && !NOT_FOUND.test(r.stderr)) throw systemError("tc", `tc qdisc del dev ${dev} ingress: ${r.stderr.trim()}`);
}

/** The qdiscs of `dev`, or undefined when the device does not exist. */
export async function qdiscs(dp: Dataplane, ns: string | null, dev: string): Promise<QdiscInfo[] | undefined> {
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
export async function ensureIfb(dp: Dataplane, ns: string | null, name: string, alias: string, mtu?: number): Promise<void> {
  validateIfName(name);
  if (alias.length > 255 || /[\n"]/.test(alias)) throw new RangeError(`invalid link alias ${JSON.stringify(alias)}`);
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
  const r = await dp.exec(ns, ["ip", "-j", "route", "get", ip], { allowFailure: true });
  if (r.exitCode !== 0) return undefined;
  return (JSON.parse(r.stdout || "[]") as { dev?: string }[])[0]?.dev;
}
