/**
 * CNI configuration and result types. Results are held typed (IPNet, IP,
 * Prefix, MAC) and converted to/from the JSON of each spec version only at the
 * boundary (stdin/stdout, the runtime's cache).
 */
import { IP, IPNet, MAC, Prefix } from "../net/index.ts";
import { CNI_ERR, cniError } from "./errors.ts";
import { atLeast } from "./version.ts";

/** A plugin's configuration as received on stdin (unknown keys kept). */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  capabilities?: Record<string, boolean>;
  runtimeConfig?: Record<string, unknown>;
  args?: Record<string, unknown>;
  ipMasq?: boolean;
  ipam?: { type?: string; [k: string]: unknown };
  dns?: CniDNS;
  prevResult?: unknown;
  [k: string]: unknown;
}

export interface CniInterface {
  name: string;
  mac?: MAC;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface CniIPConfig {
  address: IPNet;
  gateway?: IP;
  /** Index into interfaces. */
  interface?: number;
}

export interface CniRoute {
  dst: Prefix;
  gw?: IP;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIPConfig[];
  routes: CniRoute[];
  dns: CniDNS;
}

export function emptyResult(cniVersion: string): CniResult {
  return { cniVersion, interfaces: [], ips: [], routes: [], dns: {} };
}

type J = Record<string, unknown>;

function str(o: J, k: string, where: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw cniError(CNI_ERR.decodeFailure, `${where}.${k} must be a string`);
  return v;
}

function num(o: J, k: string, where: string): number | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number") throw cniError(CNI_ERR.decodeFailure, `${where}.${k} must be a number`);
  return v;
}

function strList(v: unknown, where: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw cniError(CNI_ERR.decodeFailure, `${where} must be a list of strings`);
  return v as string[];
}

export function parseDns(v: unknown, where = "dns"): CniDNS {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object") throw cniError(CNI_ERR.decodeFailure, `${where} must be an object`);
  const o = v as J;
  const out: CniDNS = {};
  const ns = strList(o.nameservers, `${where}.nameservers`);
  const domain = str(o, "domain", where);
  const search = strList(o.search, `${where}.search`);
  const options = strList(o.options, `${where}.options`);
  if (ns) out.nameservers = ns;
  if (domain) out.domain = domain;
  if (search) out.search = search;
  if (options) out.options = options;
  return out;
}

/** Parses a result of any supported version (0.3.x/0.4.0 "version" fields are dropped). */
export function parseResult(v: unknown, cniVersion: string): CniResult {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw cniError(CNI_ERR.decodeFailure, "prevResult must be an object");
  const o = v as J;
  const list = (k: string): J[] => {
    const x = o[k];
    if (x === undefined || x === null) return [];
    if (!Array.isArray(x)) throw cniError(CNI_ERR.decodeFailure, `result.${k} must be a list`);
    return x as J[];
  };
  try {
    return {
      cniVersion: (typeof o.cniVersion === "string" ? o.cniVersion : undefined) ?? cniVersion,
      interfaces: list("interfaces").map((i, n) => {
        const w = `interfaces[${n}]`;
        const name = str(i, "name", w);
        if (!name) throw cniError(CNI_ERR.decodeFailure, `${w}.name is required`);
        const mac = str(i, "mac", w);
        const mtu = num(i, "mtu", w);
        const sandbox = str(i, "sandbox", w);
        const socketPath = str(i, "socketPath", w);
        const pciID = str(i, "pciID", w);
        return {
          name,
          ...(mac ? { mac: MAC.parse(mac, `${w}.mac`) } : {}),
          ...(mtu !== undefined ? { mtu } : {}),
          ...(sandbox ? { sandbox } : {}),
          ...(socketPath ? { socketPath } : {}),
          ...(pciID ? { pciID } : {}),
        };
      }),
      ips: list("ips").map((i, n) => {
        const w = `ips[${n}]`;
        const address = str(i, "address", w);
        if (!address) throw cniError(CNI_ERR.decodeFailure, `${w}.address is required`);
        const gw = str(i, "gateway", w);
        const iface = num(i, "interface", w);
        return {
          address: IPNet.parse(address, `${w}.address`),
          ...(gw ? { gateway: IP.parse(gw, `${w}.gateway`) } : {}),
          ...(iface !== undefined ? { interface: iface } : {}),
        };
      }),
      routes: list("routes").map((r, n) => {
        const w = `routes[${n}]`;
        const dst = str(r, "dst", w);
        if (!dst) throw cniError(CNI_ERR.decodeFailure, `${w}.dst is required`);
        const gw = str(r, "gw", w);
        const route: CniRoute = { dst: Prefix.parseLoose(dst, `${w}.dst`), ...(gw ? { gw: IP.parse(gw, `${w}.gw`) } : {}) };
        for (const k of ["mtu", "advmss", "priority", "table", "scope"] as const) {
          const x = num(r, k, w);
          if (x !== undefined) route[k] = x;
        }
        return route;
      }),
      dns: parseDns(o.dns),
    };
  } catch (e) {
    if (e instanceof Error && e.name === "CniError") throw e;
    throw cniError(CNI_ERR.decodeFailure, `cannot decode prevResult: ${(e as Error).message}`);
  }
}

/** The result as JSON of `version` (0.3.x/0.4.0 add ips[].version; 1.x does not). */
export function resultToJson(r: CniResult, version: string): J {
  const legacy = !atLeast(version, "1.0.0");
  const out: J = { cniVersion: version };
  if (r.interfaces.length > 0) {
    out.interfaces = r.interfaces.map((i) => ({
      name: i.name,
      ...(i.mac ? { mac: i.mac.toString() } : {}),
      ...(i.mtu !== undefined && !legacy ? { mtu: i.mtu } : {}),
      ...(i.sandbox !== undefined ? { sandbox: i.sandbox } : {}),
      ...(i.socketPath ? { socketPath: i.socketPath } : {}),
      ...(i.pciID ? { pciID: i.pciID } : {}),
    }));
  }
  if (r.ips.length > 0) {
    out.ips = r.ips.map((ip) => ({
      ...(legacy ? { version: String(ip.address.ip.family) } : {}),
      ...(ip.interface !== undefined ? { interface: ip.interface } : {}),
      address: ip.address.toString(),
      ...(ip.gateway ? { gateway: ip.gateway.toString() } : {}),
    }));
  }
  if (r.routes.length > 0) {
    out.routes = r.routes.map((rt) => ({
      dst: rt.dst.toString(),
      ...(rt.gw ? { gw: rt.gw.toString() } : {}),
      ...(rt.mtu !== undefined ? { mtu: rt.mtu } : {}),
      ...(rt.advmss !== undefined ? { advmss: rt.advmss } : {}),
      ...(rt.priority !== undefined ? { priority: rt.priority } : {}),
      ...(rt.table !== undefined ? { table: rt.table } : {}),
      ...(rt.scope !== undefined ? { scope: rt.scope } : {}),
    }));
  }
  out.dns = { ...r.dns };
  return out;
}
