/**
 * `portmap` (chained): publishes host ports to the container, like the reference
 * plugin, with nftables MAPS instead of a chain and rules per container:
 *
 *   table inet berth-portmap
 *     map dnat4/dnat6   (host address . proto . port) -> (container address . port),
 *                       interval maps: "every local address" is 0.0.0.0/0 (::/0), and the
 *                       kernel refuses a mapping that overlaps another container's
 *     map cond4/cond6   same keys -> `goto cond_<net>` for networks with conditionsV4/V6
 *     set hairpin4/6    (container . container): a container reaching its own published port
 *     set local4        containers published to 127.0.0.0/8 clients (snat)
 *     set hostports4/6  (proto . port) with a mapping on a specific host address: lets ADD
 *                       and DEL skip listing the table (portmap-fast.ts)
 *
 * One element per mapping, each commented with its owner "<net>/<containerID>/<ifname>",
 * so DEL and GC find exactly their elements in the kernel without prevResult or a
 * state file. The rules are fixed; DNAT keeps the client's source address.
 *
 * Config: snat (default true), markMasqBit (0-31, validated; Berth masquerades by
 * conntrack state and set membership, so no mark bit is consumed),
 * externalSetMarkChain (refused with code 2: an iptables chain cannot be called
 * from nftables), conditionsV4/V6 (the iptables matches -s/-d/-i with "!" are
 * translated; anything else is refused with code 2).
 *
 * IPv6 loopback: the kernel has no route_localnet for IPv6, so [::1] cannot be
 * DNATed to a container (the reply, un-NATed to ::1, arriving on the bridge is
 * dropped). Mappings with hostIP ::1 are served by a userland forwarder process
 * per attachment (portmap-forwarder.ts), started by ADD and stopped by DEL/GC;
 * the reference plugin cannot publish on [::1] at all. Mappings without hostIP
 * work on every other IPv6 address (not ::1, which the DNAT rules leave alone).
 */
import { crashPoint } from "../../controller/faults.ts";
import { Dataplane } from "../../dataplane/dataplane.ts";
import { listTableElements, type NftElement, nftComment } from "../../dataplane/nftelem.ts";
import { routeDev } from "../../dataplane/tc.ts";
import { IP } from "../../net/index.ts";
import { fastAdd, fastDel, hostPortsSet, keyPort } from "./portmap-fast.ts";
import { type ForwardSpec, forwarderRunning, startForwarder, stopForwarder, stopForwardersExcept } from "./portmap-forwarder.ts";
import { containerIPs, networkTagPrefix, requirePrev, shortHash, tagOf, validTags } from "../chained.ts";
import { CNI_ERR, type CniError, cniError } from "../errors.ts";
import { type CniEnv, type CniPlugin, prevResultOf } from "../skel.ts";
import type { CniResult, NetConf } from "../types.ts";

export const TABLE = "berth-portmap";
const FAMILY = "inet";
const T = `${FAMILY} ${TABLE}`;
const CHECK_FAILED = 110;

const dp = new Dataplane();

type Proto = "tcp" | "udp" | "sctp";

export interface Mapping {
  hostPort: number;
  containerPort: number;
  protocol: Proto;
  hostIP?: IP;
}

export interface PortmapConf {
  snat: boolean;
  markMasqBit: number;
  conditionsV4: string[];
  conditionsV6: string[];
  mappings: Mapping[];
}

function port(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw cniError(CNI_ERR.invalidConfig, `portmap: invalid ${what} ${JSON.stringify(v)}: must be an integer 1-65535`);
  }
  return v;
}

function strList(v: unknown, key: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw cniError(CNI_ERR.invalidConfig, `portmap: ${key} must be a list of strings`);
  return v as string[];
}

/** Validates the config and the runtime's portMappings. */
export function parsePortmapConf(conf: NetConf): PortmapConf {
  const snat = conf.snat ?? true;
  if (typeof snat !== "boolean") throw cniError(CNI_ERR.invalidConfig, "portmap: snat must be a boolean");
  if (conf.externalSetMarkChain !== undefined && conf.externalSetMarkChain !== null && conf.externalSetMarkChain !== "") {
    if (conf.markMasqBit !== undefined && conf.markMasqBit !== null) {
      throw cniError(CNI_ERR.invalidConfig, "portmap: cannot specify externalSetMarkChain and markMasqBit");
    }
    throw cniError(
      CNI_ERR.unsupportedField,
      `portmap: externalSetMarkChain ${JSON.stringify(conf.externalSetMarkChain)} is not supported: it names an iptables chain, which Berth's nftables rules cannot call; remove it (Berth masquerades hairpin and localhost traffic itself)`,
      "field: externalSetMarkChain",
    );
  }
  const bit = conf.markMasqBit ?? 13;
  if (typeof bit !== "number" || !Number.isInteger(bit) || bit < 0 || bit > 31) {
    throw cniError(CNI_ERR.invalidConfig, `portmap: invalid markMasqBit ${JSON.stringify(bit)}: must be an integer 0-31`);
  }
  const conditionsV4 = strList(conf.conditionsV4, "conditionsV4");
  const conditionsV6 = strList(conf.conditionsV6, "conditionsV6");
  // translate now so a bad condition fails before anything is changed
  translateConditions(conditionsV4, 4);
  translateConditions(conditionsV6, 6);
  const raw = conf.runtimeConfig?.portMappings;
  const mappings: Mapping[] = [];
  if (raw !== undefined && raw !== null) {
    if (!Array.isArray(raw)) throw cniError(CNI_ERR.invalidConfig, "portmap: runtimeConfig.portMappings must be a list");
    for (const [i, m] of (raw as Record<string, unknown>[]).entries()) {
      if (!m || typeof m !== "object") throw cniError(CNI_ERR.invalidConfig, `portmap: portMappings[${i}] must be an object`);
      const protocol = (typeof m.protocol === "string" && m.protocol !== "" ? m.protocol : "tcp").toLowerCase();
      if (protocol !== "tcp" && protocol !== "udp" && protocol !== "sctp") {
        throw cniError(CNI_ERR.invalidConfig, `portmap: portMappings[${i}]: unknown protocol ${JSON.stringify(m.protocol)} (tcp, udp or sctp)`);
      }
      const mapping: Mapping = { hostPort: port(m.hostPort, "hostPort"), containerPort: port(m.containerPort, "containerPort"), protocol };
      if (typeof m.hostIP === "string" && m.hostIP !== "") {
        const ip = IP.tryParse(m.hostIP);
        if (!ip) throw cniError(CNI_ERR.invalidConfig, `portmap: portMappings[${i}]: invalid hostIP ${JSON.stringify(m.hostIP)}`);
        const u = ip.unmap();
        // "0.0.0.0" / "::" stay: every local address, but of that family only
        mapping.hostIP = u;
      }
      mappings.push(mapping);
    }
  }
  return { snat, markMasqBit: bit, conditionsV4, conditionsV6, mappings };
}

/**
 * iptables matches -> nft expressions. Supports `[!] -s|--source ADDR`,
 * `[!] -d|--destination ADDR`, `[!] -i|--in-interface NAME` and `-m comment --comment X`.
 */
export function translateConditions(args: string[], fam: 4 | 6): string {
  const out: string[] = [];
  const ipf = fam === 4 ? "ip" : "ip6";
  for (let i = 0; i < args.length; i++) {
    let neg = false;
    let a = args[i]!;
    if (a === "!") {
      neg = true;
      a = args[++i] ?? "";
    }
    const val = (): string => {
      const v = args[++i];
      if (v === undefined || v === "") throw unsupportedCondition(args, fam, `${a} needs a value`);
      return v;
    };
    const op = neg ? "!= " : "";
    switch (a) {
      case "-s":
      case "--source":
      case "-d":
      case "--destination": {
        const v = val();
        const addr = v.includes("/") ? v.split("/")[0]! : v;
        const ip = IP.tryParse(addr);
        if (!ip || ip.family !== fam || (v.includes("/") && !/^\d+$/.test(v.split("/")[1] ?? ""))) {
          throw unsupportedCondition(args, fam, `${JSON.stringify(v)} is not an IPv${fam} address or prefix`);
        }
        out.push(`${ipf} ${a.startsWith("-s") || a === "--source" ? "saddr" : "daddr"} ${op}${v}`);
        break;
      }
      case "-i":
      case "--in-interface": {
        const v = val();
        if (!/^[\w.@-]+\+?$/.test(v)) throw unsupportedCondition(args, fam, `invalid interface ${JSON.stringify(v)}`);
        out.push(`iifname ${op}${JSON.stringify(v.endsWith("+") ? `${v.slice(0, -1)}*` : v)}`);
        break;
      }
      case "-m":
        if (args[i + 1] === "comment" && args[i + 2] === "--comment" && args[i + 3] !== undefined && !neg) {
          i += 3;
          break;
        }
        throw unsupportedCondition(args, fam, `match module ${JSON.stringify(args[i + 1])}`);
      default:
        throw unsupportedCondition(args, fam, `${JSON.stringify(a)}`);
    }
  }
  return out.join(" ");
}

function unsupportedCondition(args: string[], fam: 4 | 6, what: string): CniError {
  return cniError(
    CNI_ERR.unsupportedField,
    `portmap: conditionsV${fam} ${JSON.stringify(args)}: unsupported ${what}; Berth translates [!] -s, [!] -d and [!] -i to nftables`,
    `field: conditionsV${fam}`,
  );
}

/** The chain that holds a network's conditions. */
export function condChain(network: string): string {
  return `cond_${shortHash(network, 16)}`;
}

/** Fixed part of the table; idempotent: safe to apply on every ADD. */
function baseScript(): string {
  const k4 = "ipv4_addr . inet_proto . inet_service";
  const k6 = "ipv6_addr . inet_proto . inet_service";
  const l4 = "meta l4proto { tcp, udp, sctp }";
  return [
    `add table ${T} { comment "Berth CNI portmap plugin: published ports"; }`,
    `add map ${T} dnat4 { type ${k4} : ipv4_addr . inet_service; flags interval; }`,
    `add map ${T} dnat6 { type ${k6} : ipv6_addr . inet_service; flags interval; }`,
    `add map ${T} cond4 { type ${k4} : verdict; flags interval; }`,
    `add map ${T} cond6 { type ${k6} : verdict; flags interval; }`,
    `add set ${T} hairpin4 { type ipv4_addr . ipv4_addr; }`,
    `add set ${T} hairpin6 { type ipv6_addr . ipv6_addr; }`,
    `add set ${T} local4 { type ipv4_addr; }`,
    `add set ${T} hostports4 { type inet_proto . inet_service; }`,
    `add set ${T} hostports6 { type inet_proto . inet_service; }`,
    `add chain ${T} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain ${T} output { type nat hook output priority -100; policy accept; }`,
    `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `add chain ${T} published`,
    `flush chain ${T} prerouting`,
    `flush chain ${T} output`,
    `flush chain ${T} postrouting`,
    `flush chain ${T} published`,
    `add rule ${T} prerouting fib daddr type local jump published`,
    `add rule ${T} output fib daddr type local jump published`,
    `add rule ${T} published ${l4} ip daddr . meta l4proto . th dport vmap @cond4`,
    `add rule ${T} published ${l4} ip6 daddr . meta l4proto . th dport vmap @cond6`,
    `add rule ${T} published ${l4} dnat ip to ip daddr . meta l4proto . th dport map @dnat4`,
    `add rule ${T} published ${l4} ip6 daddr != ::1 dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6`,
    `add rule ${T} postrouting ct status dnat ip saddr . ip daddr @hairpin4 masquerade`,
    `add rule ${T} postrouting ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade`,
    `add rule ${T} postrouting ct status dnat ip saddr 127.0.0.0/8 ip daddr @local4 masquerade`,
  ].join("\n");
}

function condScript(network: string, pc: PortmapConf): string {
  const c = condChain(network);
  const l4 = "meta l4proto { tcp, udp, sctp }";
  const lines = [`add chain ${T} ${c}`, `flush chain ${T} ${c}`];
  const v4 = translateConditions(pc.conditionsV4, 4);
  const v6 = translateConditions(pc.conditionsV6, 6);
  lines.push(`add rule ${T} ${c} ${v4} ${l4} dnat ip to ip daddr . meta l4proto . th dport map @dnat4`);
  lines.push(`add rule ${T} ${c} ${v6} ${l4} ip6 daddr != ::1 dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6`);
  // conditions not met: no DNAT for this packet
  lines.push(`add rule ${T} ${c} accept`);
  return lines.join("\n");
}

export interface PlannedElement {
  set: string;
  key: string;
  value?: string;
}

/** The elements one attachment owns. */
export function planElements(network: string, pc: PortmapConf, ips: { v4?: IP; v6?: IP }): PlannedElement[] {
  const out: PlannedElement[] = [];
  const withCond = (fam: 4 | 6) => (fam === 4 ? pc.conditionsV4 : pc.conditionsV6).length > 0;
  const anyHost: Record<4 | 6, string> = { 4: "0.0.0.0/0", 6: "::/0" };
  for (const m of pc.mappings) {
    if (isLoopback6(m)) continue; // the userland forwarder's (loopbackForwards)
    for (const fam of [4, 6] as const) {
      const cip = fam === 4 ? ips.v4 : ips.v6;
      if (!cip) continue;
      if (m.hostIP && m.hostIP.family !== fam) continue;
      const host = !m.hostIP || m.hostIP.isUnspecified() ? anyHost[fam] : m.hostIP.toString();
      const key = `${host} . ${m.protocol} . ${m.hostPort}`;
      out.push({ set: `dnat${fam}`, key, value: `${cip} . ${m.containerPort}` });
      if (withCond(fam)) out.push({ set: `cond${fam}`, key, value: `goto ${condChain(network)}` });
    }
  }
  if (pc.snat && out.length > 0) {
    const fams = new Set(out.map((e) => (e.set.endsWith("4") ? 4 : 6)));
    if (ips.v4 && fams.has(4)) {
      out.push({ set: "hairpin4", key: `${ips.v4} . ${ips.v4}` });
      out.push({ set: "local4", key: ips.v4.toString() });
    }
    if (ips.v6 && fams.has(6)) out.push({ set: "hairpin6", key: `${ips.v6} . ${ips.v6}` });
  }
  return out;
}

function isLoopback6(m: Mapping): boolean {
  return m.hostIP !== undefined && m.hostIP.family === 6 && m.hostIP.isLoopback();
}

/** The [::1] mappings of an attachment, for its forwarder (none without an IPv6 container address). */
export function loopbackForwards(pc: PortmapConf, ips: { v4?: IP; v6?: IP }): ForwardSpec[] {
  const v6 = ips.v6;
  if (!v6) return [];
  return pc.mappings.filter(isLoopback6).map((m) => ({ protocol: m.protocol, hostPort: m.hostPort, target: v6.toString(), targetPort: m.containerPort }));
}

/** Lines deleting every element whose comment satisfies `owned`. */
function deleteOwned(existing: Map<string, NftElement[]> | undefined, owned: (comment: string) => boolean): string[] {
  const lines: string[] = [];
  for (const [set, els] of existing ?? []) {
    for (const e of els) {
      if (e.comment !== undefined && owned(e.comment)) lines.push(`delete element ${T} ${set} { ${e.key} }`);
    }
  }
  return lines;
}

/** The host-port part of a dnat key ("proto . port") and its host address. */
function splitKey(key: string): { host: string; rest: string } {
  const i = key.indexOf(" . ");
  return { host: key.slice(0, i), rest: key.slice(i + 3) };
}

function overlaps(a: string, b: string): boolean {
  const x = splitKey(a);
  const y = splitKey(b);
  if (x.rest !== y.rest) return false;
  return x.host === y.host || x.host.endsWith("/0") || y.host.endsWith("/0");
}

function conflictCheck(existing: Map<string, NftElement[]> | undefined, planned: PlannedElement[], tag: string): void {
  for (const p of planned) {
    if (!p.set.startsWith("dnat")) continue;
    for (const e of existing?.get(p.set) ?? []) {
      if (e.comment === tag) continue;
      if (overlaps(e.key, p.key)) {
        const { host, rest } = splitKey(p.key);
        const [proto, hp] = rest.split(" . ");
        throw cniError(
          CNI_ERR.conflict,
          `portmap: host port ${proto}/${hp} on ${host.endsWith("/0") ? "all addresses" : host} is already published by ${e.comment ?? "another owner"} (${e.key})`,
        );
      }
    }
  }
}

async function enableLocalnet(v4: IP): Promise<void> {
  const dev = await routeDev(dp, null, v4.toString());
  if (!dev || dev === "lo") return;
  await dp.sysctlSet(null, { [`net.ipv4.conf.${dev.replaceAll(".", "/")}.route_localnet`]: 1 });
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const prev = requirePrev(conf, "portmap");
    const pc = parsePortmapConf(conf);
    if (pc.mappings.length === 0) return prev;
    const ips = containerIPs(prev);
    if (!ips.v4 && !ips.v6) throw cniError(CNI_ERR.invalidConfig, "portmap: prevResult holds no container IP address");
    const tag = tagOf(conf, env);
    const planned = planElements(conf.name, pc, ips);
    const loopback = loopbackForwards(pc, ips);
    // common case: no conditions and no [::1] forwarder: one transaction, no listing (portmap-fast.ts)
    if (pc.conditionsV4.length === 0 && pc.conditionsV6.length === 0 && loopback.length === 0) {
      await stopForwarder(tag);
      if (await fastAdd(dp, TABLE, planned, tag)) return addedPorts(pc, ips, planned, prev);
    }
    const existing = await listTableElements(dp, null, FAMILY, TABLE);
    conflictCheck(existing, planned, tag);
    // [::1]: a forwarder process (a bind conflict fails the ADD before any rule changes)
    if (loopback.length > 0) await startForwarder(tag, env.netns, loopback);
    else await stopForwarder(tag);
    const lines = [baseScript()];
    if (pc.conditionsV4.length > 0 || pc.conditionsV6.length > 0) lines.push(condScript(conf.name, pc));
    // re-ADD (a retried ADD, podman's reload): replace what this attachment had
    lines.push(...deleteOwned(existing, (c) => c === tag));
    for (const p of planned) {
      lines.push(`add element ${T} ${p.set} { ${p.key} ${nftComment(tag)}${p.value ? ` : ${p.value}` : ""} }`);
    }
    // the host-port index: this ADD's specific-address ports, and (healing a table from before it) everyone's
    const specific = [...planned, ...["dnat4", "dnat6"].flatMap((set) => (existing?.get(set) ?? []).map((e) => ({ set, key: e.key })))];
    for (const p of specific) {
      if (!p.set.startsWith("dnat") || keyPort(p.key).everyAddress) continue;
      lines.push(`add element ${T} ${hostPortsSet(p.set)} { ${keyPort(p.key).port} }`);
    }
    try {
      await dp.nftApply(null, `${lines.join("\n")}\n`);
    } catch (e) {
      await stopForwarder(tag);
      if (/File exists|overlap/i.test((e as Error).message)) {
        throw cniError(CNI_ERR.conflict, `portmap: a requested host port is already published: ${(e as Error).message}`);
      }
      throw e;
    }
    return addedPorts(pc, ips, planned, prev);
  },

  async del(conf: NetConf, env: CniEnv): Promise<void> {
    const tag = tagOf(conf, env);
    crashPoint("cni.portmap.del:before-apply");
    // the elements this attachment made, known from prevResult and portMappings: no listing when they are all there
    const planned = plannedForDel(conf);
    if (planned && planned.length > 0 && (await fastDel(dp, TABLE, planned, tag))) {
      if (planned.some((p) => p.set.startsWith("cond"))) await dropUnusedCondChains();
      await stopForwarder(tag);
      return;
    }
    const existing = await listTableElements(dp, null, FAMILY, TABLE);
    const lines = deleteOwned(existing, (c) => c === tag);
    if (lines.length > 0) await dp.nftApply(null, `${lines.join("\n")}\n`);
    if (lines.some((l) => / cond[46] /.test(l))) await dropUnusedCondChains();
    await stopForwarder(tag);
  },

  async check(conf: NetConf, env: CniEnv): Promise<void> {
    const prev = prevResultOf(conf);
    if (!prev) throw cniError(CNI_ERR.invalidConfig, "portmap: CHECK needs prevResult");
    const pc = parsePortmapConf(conf);
    if (pc.mappings.length === 0) return;
    const tag = tagOf(conf, env);
    if (loopbackForwards(pc, containerIPs(prev)).length > 0 && !forwarderRunning(tag)) {
      throw cniError(CHECK_FAILED, `portmap: the [::1] forwarder of ${tag} is not running`);
    }
    const existing = await listTableElements(dp, null, FAMILY, TABLE);
    if (!existing) throw cniError(CHECK_FAILED, `portmap: table ${T} does not exist`);
    for (const p of planElements(conf.name, pc, containerIPs(prev))) {
      const found = (existing.get(p.set) ?? []).find((e) => e.key === p.key && e.comment === tag);
      if (!found) throw cniError(CHECK_FAILED, `portmap: element { ${p.key} } of ${tag} is missing from ${T} ${p.set}`);
      if (p.value !== undefined && found.value !== p.value) {
        throw cniError(CHECK_FAILED, `portmap: element { ${p.key} } maps to ${found.value}, expected ${p.value}`);
      }
    }
  },

  async gc(conf: NetConf): Promise<void> {
    const valid = validTags(conf);
    const prefix = networkTagPrefix(conf.name);
    const existing = await listTableElements(dp, null, FAMILY, TABLE);
    const gone = (c: string) => c.startsWith(prefix) && !valid.has(c);
    const lines = [...deleteOwned(existing, gone), ...staleHostPorts(existing, gone)];
    if (lines.length > 0) await dp.nftApply(null, `${lines.join("\n")}\n`);
    if (lines.some((l) => / cond[46] /.test(l))) await dropUnusedCondChains();
    await stopForwardersExcept(prefix, valid);
  },

  async status(): Promise<void> {
    if (!(await dp.nftAvailable())) throw cniError(CNI_ERR.notAvailable, "portmap: nft is not available");
  },
};

/** ADD's end, both paths: localhost clients reach the published ports (route_localnet). */
async function addedPorts(pc: PortmapConf, ips: { v4?: IP; v6?: IP }, planned: PlannedElement[], prev: CniResult): Promise<CniResult> {
  crashPoint("cni.portmap.add:after-elements");
  if (pc.snat && ips.v4 && planned.some((p) => p.set === "local4")) await enableLocalnet(ips.v4);
  return prev;
}

/** The elements DEL's config says the attachment made; undefined when it cannot tell (no prevResult, a config ADD would refuse). */
function plannedForDel(conf: NetConf): PlannedElement[] | undefined {
  const prev = prevResultOf(conf);
  if (!prev) return undefined;
  try {
    return planElements(conf.name, parsePortmapConf(conf), containerIPs(prev));
  } catch {
    return undefined;
  }
}

/** Index entries (hostports4/6) whose port no remaining specific-address mapping uses, once `gone` owners are removed. */
function staleHostPorts(existing: Map<string, NftElement[]> | undefined, gone: (comment: string) => boolean): string[] {
  const lines: string[] = [];
  for (const fam of ["4", "6"]) {
    const used = new Set(
      (existing?.get(`dnat${fam}`) ?? []).filter((e) => !(e.comment !== undefined && gone(e.comment)) && !keyPort(e.key).everyAddress).map((e) => keyPort(e.key).port),
    );
    for (const e of existing?.get(`hostports${fam}`) ?? []) if (!used.has(e.key)) lines.push(`delete element ${T} hostports${fam} { ${e.key} }`);
  }
  return lines;
}

/** Best effort: removes condition chains no element points at any more. */
async function dropUnusedCondChains(): Promise<void> {
  const j = await dp.nftListTable(null, FAMILY, TABLE);
  if (!j) return;
  const chains = j.nftables.flatMap((o) => (o.chain ? [(o.chain as { name: string }).name] : [])).filter((c) => c.startsWith("cond_"));
  if (chains.length === 0) return;
  const els = await listTableElements(dp, null, FAMILY, TABLE);
  const used = new Set<string>();
  for (const s of ["cond4", "cond6"]) for (const e of els?.get(s) ?? []) used.add((e.value ?? "").replace(/^goto /, ""));
  for (const c of chains) {
    if (!used.has(c)) await dp.nft(null, ["delete", "chain", FAMILY, TABLE, c]);
  }
}
