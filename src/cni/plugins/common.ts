/**
 * What Berth's CNI plugins share: reading typed values out of the config with
 * errors that name the key, the runtime's requests (MAC, IPs) from
 * runtimeConfig / args / CNI_ARGS, and configuring an interface from a result
 * (addresses, then routes) as one `ip -batch`. Pure apart from `configureIface`,
 * which only fills a batch.
 */
import type { Dataplane } from "../../dataplane/dataplane.ts";
import type { IpBatch, RouteSpec } from "../../dataplane/ipbatch.ts";
import { IP, IPNet, MAC, Prefix, validateIfName } from "../../net/index.ts";
import { CNI_ERR, CniError, cniError } from "../errors.ts";
import { delegateIpam } from "../delegate.ts";
import { type CniEnv, isNetnsPath, prevResultOf } from "../skel.ts";
import { type CniDNS, type CniResult, type CniRoute, type NetConf, parseDns } from "../types.ts";

export type Obj = Record<string, unknown>;

const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

function bad(where: string, what: string, v: unknown): never {
  throw cniError(CNI_ERR.invalidConfig, `${where} must be ${what}, got ${show(v)}`);
}

export function optBool(o: Obj, key: string, where = key): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "boolean") return v;
  // libcni accepts the strings too
  if (v === "true") return true;
  if (v === "false") return false;
  return bad(where, "a boolean", v);
}

export function optString(o: Obj, key: string, where = key): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") return bad(where, "a string", v);
  return v;
}

export function optInt(o: Obj, key: string, min: number, max: number, where = key): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) return bad(where, `an integer ${min}-${max}`, v);
  return v;
}

export function optObject(o: Obj, key: string, where = key): Obj | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) return bad(where, "an object", v);
  return v as Obj;
}

export function optArray(o: Obj, key: string, where = key): unknown[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) return bad(where, "a list", v);
  return v;
}

export function ifnameField(o: Obj, key: string, dflt: string | undefined, where = key): string | undefined {
  const v = optString(o, key, where) ?? dflt;
  if (v === undefined) return undefined;
  try {
    validateIfName(v, where);
  } catch (e) {
    throw cniError(CNI_ERR.invalidConfig, `${where}: ${(e as Error).message}`);
  }
  return v;
}

/** An MTU: 0/absent means "kernel default". */
export function mtuField(o: Obj, where = "mtu"): number | undefined {
  const v = optInt(o, "mtu", 0, 65535, where);
  if (v === 0 || v === undefined) return undefined;
  if (v < 68) return bad(where, "0 or an integer 68-65535", v);
  return v;
}

/** Throws "unsupported field" (code 2) naming the key when it is set to something but its neutral value. */
export function rejectSet(o: Obj, key: string, plugin: string, neutral: (v: unknown) => boolean, why = "is not supported"): void {
  const v = o[key];
  if (v === undefined || v === null || neutral(v)) return;
  throw cniError(CNI_ERR.unsupportedField, `${plugin}: ${key}=${show(v)} ${why} by Berth's ${plugin} plugin`);
}

/** CNI_ARGS as a map, without rejecting keys the plugin does not know (they are the IPAM plugin's). */
export function envArgs(raw: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of raw.split(";")) {
    if (p.trim() === "") continue;
    const i = p.indexOf("=");
    if (i <= 0) throw cniError(CNI_ERR.invalidEnv, `ARGS: invalid pair ${show(p)}`);
    out.set(p.slice(0, i), p.slice(i + 1));
  }
  return out;
}

function parseMac(s: string, where: string): MAC {
  try {
    return MAC.parse(s, where);
  } catch (e) {
    throw cniError(CNI_ERR.invalidConfig, `${where}: ${(e as Error).message}`);
  }
}

/** The MAC the runtime asked for: runtimeConfig.mac, else args.cni.mac, else CNI_ARGS MAC. */
export function requestedMac(conf: NetConf, env: Pick<CniEnv, "args">): MAC | undefined {
  const rc = conf.runtimeConfig?.mac;
  if (rc !== undefined && rc !== null && rc !== "") {
    if (typeof rc !== "string") bad("runtimeConfig.mac", "a string", rc);
    return parseMac(rc as string, "runtimeConfig.mac");
  }
  const cni = conf.args?.cni as Obj | undefined;
  const am = cni && typeof cni === "object" ? cni.mac : undefined;
  if (typeof am === "string" && am !== "") return parseMac(am, "args.cni.mac");
  const ea = envArgs(env.args).get("MAC");
  if (ea) return parseMac(ea, "CNI_ARGS MAC");
  return undefined;
}

function parseIPLoose(s: string, where: string): IP {
  try {
    return s.includes("/") ? IPNet.parse(s, where).ip : IP.parse(s, where);
  } catch {
    throw cniError(CNI_ERR.invalidConfig, `${where}: invalid IP address ${show(s)}`);
  }
}

/**
 * Addresses the runtime asked for (host-local): runtimeConfig.ips ("ip" or "ip/len"),
 * args.cni.ips and CNI_ARGS IP (comma separated). Duplicates are merged.
 */
export function requestedIPs(conf: NetConf, env: Pick<CniEnv, "args">): IP[] {
  const out = new Map<string, IP>();
  const add = (list: unknown, where: string): void => {
    if (list === undefined || list === null) return;
    if (!Array.isArray(list)) bad(where, "a list of IP addresses", list);
    (list as unknown[]).forEach((s, i) => {
      if (typeof s !== "string") bad(`${where}[${i}]`, "an IP address", s);
      const ip = parseIPLoose((s as string).trim(), `${where}[${i}]`);
      out.set(ip.toString(), ip);
    });
  };
  add(conf.runtimeConfig?.ips, "runtimeConfig.ips");
  const cni = conf.args?.cni as Obj | undefined;
  if (cni && typeof cni === "object") add(cni.ips, "args.cni.ips");
  const ea = envArgs(env.args).get("IP");
  if (ea) {
    ea.split(",").forEach((s, i) => {
      if (s.trim() === "") return;
      const ip = parseIPLoose(s.trim(), `CNI_ARGS IP[${i}]`);
      out.set(ip.toString(), ip);
    });
  }
  return [...out.values()];
}

/** Routes as written in a config (`ipam.routes`, static `routes`): [{dst, gw?, mtu?, advmss?, priority?, table?, scope?}]. */
export function parseRoutes(v: unknown, where: string): CniRoute[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) bad(where, "a list of routes", v);
  return (v as unknown[]).map((r, i) => {
    const w = `${where}[${i}]`;
    if (r === null || typeof r !== "object" || Array.isArray(r)) bad(w, "an object", r);
    const o = r as Obj;
    const dst = optString(o, "dst", `${w}.dst`);
    if (!dst) throw cniError(CNI_ERR.invalidConfig, `${w}.dst is required`);
    let route: CniRoute;
    try {
      route = { dst: Prefix.parseLoose(dst, `${w}.dst`) };
    } catch (e) {
      throw cniError(CNI_ERR.invalidConfig, `${w}.dst: ${(e as Error).message}`);
    }
    const gw = optString(o, "gw", `${w}.gw`);
    if (gw) {
      const ip = IP.tryParse(gw);
      if (!ip) throw cniError(CNI_ERR.invalidConfig, `${w}.gw: invalid IP address ${show(gw)}`);
      if (ip.family !== route.dst.family) throw cniError(CNI_ERR.invalidConfig, `${w}.gw ${gw} is not of the family of dst ${dst}`);
      route.gw = ip;
    }
    const mtu = optInt(o, "mtu", 0, 65535, `${w}.mtu`);
    const advmss = optInt(o, "advmss", 0, 65535, `${w}.advmss`);
    const priority = optInt(o, "priority", 0, 0xffffffff, `${w}.priority`);
    const table = optInt(o, "table", 0, 0xffffffff, `${w}.table`);
    const scope = optInt(o, "scope", 0, 255, `${w}.scope`);
    if (mtu) route.mtu = mtu;
    if (advmss) route.advmss = advmss;
    if (priority !== undefined) route.priority = priority;
    if (table !== undefined) route.table = table;
    if (scope !== undefined) {
      if (!(scope in SCOPES)) bad(`${w}.scope`, "0 (universe), 253 (link) or 254 (host)", scope);
      route.scope = scope;
    }
    return route;
  });
}

const SCOPES: Record<number, RouteSpec["scope"]> = { 0: "global", 253: "link", 254: "host" };

/** `dns` of the config when it says anything, else the IPAM plugin's (reference behaviour). */
export function pickDns(conf: NetConf, fromIpam: CniDNS | undefined): CniDNS {
  const own = parseDns(conf.dns, "dns");
  if (own.nameservers?.length || own.domain || own.search?.length || own.options?.length) return own;
  return fromIpam ?? {};
}

/** A host-side veth name like the reference plugins': "veth" + 8 random hex digits. */
export function randomVethName(): string {
  const b = crypto.getRandomValues(new Uint8Array(4));
  return `veth${Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")}`;
}

function sameRoute(a: CniRoute, b: CniRoute): boolean {
  return a.dst.equals(b.dst) && (a.table ?? 0) === (b.table ?? 0) && (a.priority ?? 0) === (b.priority ?? 0);
}

/**
 * Fills `b` (a batch in the container namespace) with what the reference
 * `ipam.ConfigureIface` does: link up, the result's addresses of interface
 * `ifIndex`, then its routes (a route without gw goes via the last gateway of its
 * family). Exact duplicate routes are added once.
 */
export function configureIface(b: IpBatch, ifname: string, r: CniResult, ifIndex: number, opts: { noDad?: boolean } = {}): void {
  b.setUp(ifname);
  const gw: { 4?: IP; 6?: IP } = {};
  for (const ip of r.ips) {
    if (ip.interface !== ifIndex) continue;
    b.addAddress(ifname, ip.address, { broadcast: true, noDad: opts.noDad ?? false });
    if (ip.gateway) gw[ip.gateway.family] = ip.gateway;
  }
  const done: CniRoute[] = [];
  for (const rt of r.routes) {
    if (done.some((d) => sameRoute(d, rt))) continue;
    done.push(rt);
    b.addRoute(routeSpec(rt, ifname, rt.gw ?? gw[rt.dst.family]));
  }
}

export function routeSpec(rt: CniRoute, dev: string, via: IP | undefined): RouteSpec {
  const s: RouteSpec = { dst: rt.dst, dev };
  if (via) s.via = via;
  if (rt.priority !== undefined) s.metric = rt.priority;
  if (rt.table !== undefined) s.table = rt.table;
  if (rt.mtu !== undefined) s.mtu = rt.mtu;
  if (rt.advmss !== undefined) s.advmss = rt.advmss;
  if (rt.scope !== undefined) {
    const sc = SCOPES[rt.scope];
    if (sc) s.scope = sc;
  }
  return s;
}

/** True when iproute2's message says the object exists already. */
export function isExists(e: unknown): boolean {
  return e instanceof Error && /File exists/i.test(e.message);
}

/**
 * One error for a best-effort teardown that collected several: the first one's
 * CNI code (or I/O failure), every message.
 */
export function combinedError(what: string, errors: readonly Error[]): CniError {
  const first = errors.find((e): e is CniError => e instanceof CniError);
  return new CniError(first?.code ?? CNI_ERR.ioFailure, `${what}: ${errors.map((e) => e.message).join("; ")}`);
}

/**
 * Runs independent teardown steps side by side, every one even when another
 * fails; returns the errors (teardown is best effort).
 */
export async function bestEffort(steps: readonly (() => Promise<unknown>)[]): Promise<Error[]> {
  const done = await Promise.allSettled(steps.map((s) => s()));
  return done.flatMap((d) => (d.status === "rejected" ? [d.reason instanceof Error ? d.reason : new Error(String(d.reason))] : []));
}

/**
 * The DEL every interface plugin does: the plugin's own `extra` steps, then release
 * the addresses through IPAM and remove the container's interface (a gone netns is
 * success); every step runs whatever the others did, all errors are reported together.
 */
export async function delInterface(dp: Dataplane, conf: NetConf, env: CniEnv, plugin: string, extra: readonly (() => Promise<unknown>)[] = []): Promise<void> {
  // the extra steps (nftables deletions) first and to their end: the kernel frees deleted set elements
  // after an RCU grace period, which then passes during the link deletion instead of stalling the
  // process's exit (every step is synchronous underneath: started together, the link deletion would
  // run before the extra steps' second half)
  const errors = await bestEffort(extra);
  errors.push(...(await bestEffort([
    async () => {
      if (conf.ipam?.type) await delegateIpam("DEL", conf, env);
    },
    async () => {
      if (env.netns && isNetnsPath(env.netns)) {
        const errs = await dp.deleteLinks(env.netns, [env.ifname]);
        if (errs[0]) throw errs[0];
      }
    },
  ])));
  if (errors.length > 0) throw combinedError(`${plugin} DEL`, errors);
}

/** The attachments a GC call keeps (`cni.dev/valid-attachments`, legacy `cni.dev/attachments`), as "containerID/ifname". */
export function validAttachments(conf: NetConf): Set<string> {
  const v = conf["cni.dev/valid-attachments"] ?? conf["cni.dev/attachments"];
  if (v === undefined || v === null) {
    throw cniError(CNI_ERR.invalidConfig, "GC needs cni.dev/valid-attachments (the attachments to keep) in the configuration");
  }
  if (!Array.isArray(v)) bad("cni.dev/valid-attachments", "a list", v);
  const out = new Set<string>();
  (v as unknown[]).forEach((a, i) => {
    const o = a as Obj;
    if (o === null || typeof o !== "object" || typeof o.containerID !== "string" || typeof o.ifname !== "string") {
      bad(`cni.dev/valid-attachments[${i}]`, "{containerID, ifname}", a);
    }
    out.add(`${o.containerID}/${o.ifname}`);
  });
  return out;
}

/** The addresses in DEL's prevResult (none without one): what the attachment was given. */
export function prevAddresses(conf: NetConf): IPNet[] {
  return prevResultOf(conf)?.ips.map((i) => i.address) ?? [];
}

/** The index of the container's interface `ifname` (sandbox set) in `r`, or -1. */
export function containerIfIndex(r: CniResult, ifname: string): number {
  return r.interfaces.findIndex((i) => i.name === ifname && i.sandbox !== undefined && i.sandbox !== "");
}
