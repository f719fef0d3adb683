/**
 * `firewall` (chained): the reference plugin's job - allow the container's
 * addresses through FORWARD, and with ingressPolicy "same-bridge" isolate its
 * bridge from other isolated bridges - in Berth's own nftables table:
 *
 *   table inet berth-firewall
 *     set ips4/ips6        container addresses, one element per address, commented with
 *                          the owner "<net>/<containerID>/<ifname>"
 *     set members          (bridge . owner hash) for same-bridge attachments
 *     set iso, iso_pairs   isolated bridges and (bridge . same bridge)
 *     chain forward        iifname @iso oifname @iso iifname . oifname != @iso_pairs drop
 *                          ip daddr @ips4 ct state established,related accept
 *                          ip saddr @ips4 accept (and the same for IPv6)
 *
 * `backend` "iptables"/"firewalld"/"nftables"/"" are all accepted and implemented
 * with nftables (iptablesAdminChainName and firewalldZone are accepted and have no
 * meaning here). Note: an nftables `accept` ends only this table's chain; a drop
 * policy in another table (iptables-nft's FORWARD DROP set by dockerd) still drops.
 */
import { Dataplane } from "../../dataplane/dataplane.ts";
import { listTableElements, type NftElement, nftComment } from "../../dataplane/nftelem.ts";
import type { IP } from "../../net/index.ts";
import { hostInterfaces, networkTagPrefix, requirePrev, shortHash, tagOf, validTags } from "../chained.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import { type CniEnv, type CniPlugin, prevResultOf } from "../skel.ts";
import type { CniResult, NetConf } from "../types.ts";

export const TABLE = "berth-firewall";
const FAMILY = "inet";
const T = `${FAMILY} ${TABLE}`;
const CHECK_FAILED = 110;
const BACKENDS = ["", "iptables", "firewalld", "nftables"];

const dp = new Dataplane();

export interface FirewallConf {
  ingressPolicy: "open" | "same-bridge";
}

export function parseFirewallConf(conf: NetConf): FirewallConf {
  const backend = conf.backend ?? "";
  if (typeof backend !== "string" || !BACKENDS.includes(backend)) {
    throw cniError(CNI_ERR.invalidConfig, `firewall: unknown backend ${JSON.stringify(backend)} (iptables, firewalld or nftables)`);
  }
  const p = conf.ingressPolicy ?? "open";
  if (p !== "" && p !== "open" && p !== "same-bridge") {
    throw cniError(CNI_ERR.invalidConfig, `firewall: unknown ingressPolicy ${JSON.stringify(p)} ("open" or "same-bridge")`);
  }
  return { ingressPolicy: p === "same-bridge" ? "same-bridge" : "open" };
}

/** Every container address of the result (the reference allows all of them). */
export function resultIPs(r: CniResult): IP[] {
  return r.ips
    .filter((c) => {
      const iface = c.interface !== undefined ? r.interfaces[c.interface] : undefined;
      return !iface || Boolean(iface.sandbox);
    })
    .map((c) => c.address.ip);
}

function baseScript(): string {
  return [
    `add table ${T} { comment "Berth CNI firewall plugin"; }`,
    `add set ${T} ips4 { type ipv4_addr; }`,
    `add set ${T} ips6 { type ipv6_addr; }`,
    `add set ${T} iso { type ifname; }`,
    `add set ${T} iso_pairs { type ifname . ifname; }`,
    `add set ${T} members { type ifname . ifname; }`,
    `add chain ${T} forward { type filter hook forward priority filter; policy accept; }`,
    `flush chain ${T} forward`,
    `add rule ${T} forward iifname @iso oifname @iso iifname . oifname != @iso_pairs drop`,
    `add rule ${T} forward ip daddr @ips4 ct state established,related accept`,
    `add rule ${T} forward ip saddr @ips4 accept`,
    `add rule ${T} forward ip6 daddr @ips6 ct state established,related accept`,
    `add rule ${T} forward ip6 saddr @ips6 accept`,
  ].join("\n");
}

/** The attachment's member key: (bridge . 15-char hash of the owner), an ifname-typed pair. */
function memberKey(bridge: string, tag: string): string {
  return `${JSON.stringify(bridge)} . ${JSON.stringify(`m${shortHash(tag, 14)}`)}`;
}

/** The bridge of a same-bridge attachment: the first host-side interface of prevResult that is a bridge. */
async function bridgeOf(r: CniResult): Promise<string | undefined> {
  for (const name of hostInterfaces(r)) {
    const k = await dp.linkKind(null, name).catch(() => undefined);
    if (k?.kind === "bridge") return name;
  }
  return undefined;
}

function owned(existing: Map<string, NftElement[]> | undefined, pred: (c: string) => boolean): string[] {
  const lines: string[] = [];
  for (const [set, els] of existing ?? []) {
    for (const e of els) if (e.comment !== undefined && pred(e.comment)) lines.push(`delete element ${T} ${set} { ${e.key} }`);
  }
  return lines;
}

/** After members were removed: bridges nobody isolates any more leave iso/iso_pairs. */
function releaseBridges(existing: Map<string, NftElement[]> | undefined, removedTags: Set<string>): string[] {
  const members = existing?.get("members") ?? [];
  const remaining = new Set(members.filter((m) => !removedTags.has(m.comment ?? "")).map((m) => m.key.split(" . ")[0]!));
  const lines: string[] = [];
  for (const e of existing?.get("iso") ?? []) {
    if (!remaining.has(e.key)) {
      lines.push(`delete element ${T} iso { ${e.key} }`);
      lines.push(`delete element ${T} iso_pairs { ${e.key} . ${e.key} }`);
    }
  }
  return lines;
}

async function removeTags(pred: (c: string) => boolean): Promise<void> {
  const existing = await listTableElements(dp, null, FAMILY, TABLE);
  if (!existing) return;
  const removed = new Set<string>();
  for (const els of existing.values()) for (const e of els) if (e.comment !== undefined && pred(e.comment)) removed.add(e.comment);
  if (removed.size === 0) return;
  const lines = [...owned(existing, pred), ...releaseBridges(existing, removed)];
  // iso/iso_pairs pairs may be listed twice if iso_pairs had a comment: de-duplicate
  await dp.nftApply(null, `${[...new Set(lines)].join("\n")}\n`);
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const prev = requirePrev(conf, "firewall");
    const fc = parseFirewallConf(conf);
    const tag = tagOf(conf, env);
    const ips = resultIPs(prev);
    const lines = [baseScript()];
    const existing = await listTableElements(dp, null, FAMILY, TABLE);
    lines.push(...owned(existing, (c) => c === tag));
    const c = nftComment(tag);
    for (const ip of ips) lines.push(`add element ${T} ips${ip.family} { ${ip} ${c} }`);
    if (fc.ingressPolicy === "same-bridge") {
      const br = await bridgeOf(prev);
      if (!br) throw cniError(CNI_ERR.invalidConfig, `firewall: ingressPolicy "same-bridge" needs a bridge among prevResult's host interfaces (${hostInterfaces(prev).join(", ") || "none"})`);
      const q = JSON.stringify(br);
      lines.push(`add element ${T} iso { ${q} }`, `add element ${T} iso_pairs { ${q} . ${q} }`, `add element ${T} members { ${memberKey(br, tag)} ${c} }`);
    }
    await dp.nftApply(null, `${lines.join("\n")}\n`);
    return prev;
  },

  async del(conf: NetConf, env: CniEnv): Promise<void> {
    parseFirewallConf(conf);
    const tag = tagOf(conf, env);
    await removeTags((c) => c === tag);
  },

  async check(conf: NetConf, env: CniEnv): Promise<void> {
    const prev = prevResultOf(conf);
    if (!prev) throw cniError(CNI_ERR.invalidConfig, "firewall: CHECK needs prevResult");
    const fc = parseFirewallConf(conf);
    const tag = tagOf(conf, env);
    const existing = await listTableElements(dp, null, FAMILY, TABLE);
    if (!existing) throw cniError(CHECK_FAILED, `firewall: table ${T} does not exist`);
    for (const ip of resultIPs(prev)) {
      if (!(existing.get(`ips${ip.family}`) ?? []).some((e) => e.key === ip.toString() && e.comment === tag)) {
        throw cniError(CHECK_FAILED, `firewall: ${ip} of ${tag} is not allowed in ${T}`);
      }
    }
    if (fc.ingressPolicy === "same-bridge") {
      const br = await bridgeOf(prev);
      const q = JSON.stringify(br ?? "");
      if (!br || !(existing.get("iso") ?? []).some((e) => e.key === q)) throw cniError(CHECK_FAILED, `firewall: bridge ${br ?? "?"} is not isolated`);
    }
  },

  async gc(conf: NetConf): Promise<void> {
    const valid = validTags(conf);
    const prefix = networkTagPrefix(conf.name);
    await removeTags((c) => c.startsWith(prefix) && !valid.has(c));
  },

  async status(): Promise<void> {
    if (!(await dp.nftAvailable())) throw cniError(CNI_ERR.notAvailable, "firewall: nft is not available");
  },
};
