/**
 * `static` IPAM: fixed addresses from the config (`ipam.addresses`
 * [{address, gateway}], `ipam.routes`, `ipam.dns`), replaced by what the runtime
 * asks for, in the reference plugin's order of precedence: CNI_ARGS IP (+GATEWAY)
 * adds to the config, args.cni.ips replaces it, runtimeConfig.ips replaces both.
 * Addresses must carry their prefix length ("10.1.2.3/24"): static has no subnet
 * to take it from. Nothing is stored, so DEL and GC have nothing to do; CHECK
 * verifies the addresses are in the previous result.
 */
import { IP, IPNet } from "../../net/index.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import { type CniEnv, type CniPlugin, parseCniArgs, prevResultOf } from "../skel.ts";
import { type CniDNS, type CniIPConfig, type CniResult, type CniRoute, emptyResult, type NetConf, parseDns } from "../types.ts";
import { type Obj, optArray, optObject, optString, parseRoutes } from "./common.ts";

const KNOWN_ARGS = ["IP", "GATEWAY", "MAC"] as const;

export interface StaticConf {
  addresses: CniIPConfig[];
  routes: CniRoute[];
  dns: CniDNS;
}

const invalidConf = (msg: string) => cniError(CNI_ERR.invalidConfig, msg);

function cidr(s: unknown, where: string): IPNet {
  if (typeof s !== "string") throw invalidConf(`${where} must be an address in CIDR notation, got ${JSON.stringify(s)}`);
  if (!s.includes("/")) {
    throw invalidConf(`${where}: ${JSON.stringify(s)} has no prefix length; the static plugin needs CIDR notation such as "${s}/24"`);
  }
  try {
    return IPNet.parse(s.trim(), where);
  } catch (e) {
    throw invalidConf(`${where}: ${(e as Error).message}`);
  }
}

function ipAt(s: string, where: string): IP {
  const ip = IP.tryParse(s.trim());
  if (!ip) throw invalidConf(`${where}: invalid IP address ${JSON.stringify(s)}`);
  return ip;
}

function strList(v: unknown, where: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw invalidConf(`${where} must be a list, got ${JSON.stringify(v)}`);
  return v as string[];
}

export function parseStatic(conf: NetConf, env: Pick<CniEnv, "args">): StaticConf {
  const ipam = optObject(conf as Obj, "ipam", "ipam");
  if (!ipam) throw invalidConf("static: missing ipam section in network configuration");
  let addresses: CniIPConfig[] = (optArray(ipam, "addresses", "ipam.addresses") ?? []).map((a, i) => {
    const w = `ipam.addresses[${i}]`;
    if (a === null || typeof a !== "object" || Array.isArray(a)) throw invalidConf(`${w} must be an object, got ${JSON.stringify(a)}`);
    const address = cidr((a as Obj).address, `${w}.address`);
    const gw = optString(a as Obj, "gateway", `${w}.gateway`);
    const out: CniIPConfig = { address };
    if (gw) {
      out.gateway = ipAt(gw, `${w}.gateway`);
      if (out.gateway.family !== address.family) throw invalidConf(`${w}.gateway ${gw} is not of the family of ${address}`);
    }
    return out;
  });
  const args = parseCniArgs(env.args, KNOWN_ARGS);
  if (args.IP) {
    for (const [i, s] of args.IP.split(",").entries()) if (s.trim()) addresses.push({ address: cidr(s.trim(), `CNI_ARGS IP[${i}]`) });
  }
  const fromList = (v: unknown, where: string): CniIPConfig[] | undefined => {
    const l = strList(v, where);
    return l && l.length > 0 ? l.map((s, i) => ({ address: cidr(s, `${where}[${i}]`) })) : undefined;
  };
  const cni = conf.args?.cni as Obj | undefined;
  const fromArgs = cni && typeof cni === "object" ? fromList(cni.ips, "args.cni.ips") : undefined;
  if (fromArgs) addresses = fromArgs;
  const fromRc = fromList(conf.runtimeConfig?.ips, "runtimeConfig.ips");
  if (fromRc) addresses = fromRc;
  if (args.GATEWAY) {
    const gws = args.GATEWAY.split(",").map((g, i) => ipAt(g, `CNI_ARGS GATEWAY[${i}]`));
    for (const a of addresses) {
      const gw = gws.find((g) => g.family === a.address.family);
      if (gw) a.gateway = gw;
    }
  }
  // duplicates (runtimes may send one address twice) count once
  const seen = new Set<string>();
  addresses = addresses.filter((a) => {
    const k = a.address.toString();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  if (addresses.length === 0) throw invalidConf("static: no addresses (ipam.addresses, runtimeConfig.ips, args.cni.ips or CNI_ARGS IP)");
  return { addresses, routes: parseRoutes(ipam.routes, "ipam.routes"), dns: parseDns(ipam.dns, "ipam.dns") };
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const c = parseStatic(conf, env);
    const r = emptyResult(conf.cniVersion);
    r.ips = c.addresses.map((a) => ({ ...a }));
    r.routes = c.routes;
    r.dns = c.dns;
    return r;
  },
  async del(): Promise<void> {
    // nothing was stored; DEL must succeed whatever is left of the config
  },
  async check(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseStatic(conf, env);
    const prev = prevResultOf(conf);
    if (!prev) return;
    for (const a of c.addresses) {
      if (!prev.ips.some((p) => p.address.equals(a.address))) {
        throw cniError(CNI_ERR.checkFailed, `static: address ${a.address} is not in the previous result`);
      }
    }
  },
  async status(): Promise<void> {},
  async gc(): Promise<void> {},
};
