/**
 * Shared helpers of the chained ("meta") plugins portmap, bandwidth and firewall:
 * reading the container's addresses and host interfaces out of prevResult, the
 * owner tag they stamp on the kernel objects they create, and GC's valid list.
 */
import type { IP } from "../net/index.ts";
import { CNI_ERR, cniError } from "./errors.ts";
import { prevResultOf, type CniEnv } from "./skel.ts";
import type { CniResult, NetConf } from "./types.ts";

/** SHA-256 in hex with Bun's native hasher: importing node:crypto costs a plugin process 2-16 ms of start-up. */
function sha256Hex(s: string): string {
  return new Bun.CryptoHasher("sha256").update(s).digest("hex");
}

/** prevResult, required: these plugins only make sense after an interface plugin. */
export function requirePrev(conf: NetConf, plugin: string): CniResult {
  const r = prevResultOf(conf);
  if (!r) throw cniError(CNI_ERR.invalidConfig, `${plugin}: must be called as a chained plugin (no prevResult in the configuration)`);
  return r;
}

/**
 * The container's addresses: the ips whose interface is inside a sandbox (or that
 * name no interface), first IPv4 and first IPv6 - the reference plugins' choice.
 */
export function containerIPs(r: CniResult): { v4?: IP; v6?: IP } {
  const out: { v4?: IP; v6?: IP } = {};
  for (const c of r.ips) {
    const iface = c.interface !== undefined ? r.interfaces[c.interface] : undefined;
    if (c.interface !== undefined && iface && !iface.sandbox) continue;
    if (c.address.ip.family === 4 && !out.v4) out.v4 = c.address.ip;
    if (c.address.ip.family === 6 && !out.v6) out.v6 = c.address.ip;
  }
  return out;
}

/** Host-side interfaces named in the result (no sandbox). */
export function hostInterfaces(r: CniResult): string[] {
  return r.interfaces.filter((i) => !i.sandbox).map((i) => i.name);
}

function short(s: string, max: number): string {
  return s.length <= max ? s : `#${sha256Hex(s).slice(0, 24)}`;
}

/**
 * Who owns an element/device: "<network>/<containerID>/<ifname>" (long parts hashed
 * so that it fits nft's 128-byte comments). The same inputs always give the same tag.
 */
export function ownerTag(network: string, containerId: string, ifname: string): string {
  const ifn = /^[\w.@-]+$/.test(ifname) ? ifname : `#${shortHash(ifname)}`;
  return `${short(network, 32)}/${short(containerId, 72)}/${ifn}`;
}

/** The tag prefix shared by every attachment of one network. */
export function networkTagPrefix(network: string): string {
  return `${short(network, 32)}/`;
}

/** A short stable hash (hex) for device and chain names. */
export function shortHash(s: string, n = 12): string {
  return sha256Hex(s).slice(0, n);
}

export interface Attachment {
  containerID: string;
  ifname: string;
}

/** GC's `cni.dev/valid-attachments` as owner tags of this network. */
export function validTags(conf: NetConf): Set<string> {
  const raw = conf["cni.dev/valid-attachments"] ?? conf["cni.dev/attachments"];
  if (raw === undefined || raw === null) return new Set();
  if (!Array.isArray(raw)) throw cniError(CNI_ERR.invalidConfig, "cni.dev/valid-attachments must be a list");
  const out = new Set<string>();
  for (const a of raw as Partial<Attachment>[]) {
    if (!a || typeof a.containerID !== "string" || typeof a.ifname !== "string") {
      throw cniError(CNI_ERR.invalidConfig, "cni.dev/valid-attachments entries need containerID and ifname");
    }
    out.add(ownerTag(conf.name, a.containerID, a.ifname));
  }
  return out;
}

/** The tag of the attachment an ADD/DEL/CHECK is about. */
export function tagOf(conf: NetConf, env: CniEnv): string {
  return ownerTag(conf.name, env.containerId, env.ifname);
}

/** A number from the config that must be a non-negative integer (or absent). */
export function optUint(conf: Record<string, unknown>, key: string, where: string): number | undefined {
  const v = conf[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || !Number.isInteger(v)) {
    throw cniError(CNI_ERR.invalidConfig, `${where}: ${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  return v;
}
