/**
 * `bandwidth` (chained): limits a veth-attached container's traffic, like the
 * reference plugin. Config keys ingressRate/ingressBurst/egressRate/egressBurst
 * (bits per second, bits), overridden as a whole by the `bandwidth` capability
 * (runtimeConfig.bandwidth).
 *
 *  - ingress (traffic INTO the container): a token bucket (tbf) as the root qdisc
 *    of the host end of the veth, whose egress is the container's ingress;
 *  - egress (traffic FROM the container): the host end's ingress is redirected
 *    (ingress qdisc + u32 match-all + mirred) to an ifb device `bwp<hash>` that
 *    carries a tbf. The ifb's alias records its owner "<net>/<containerID>/<ifname>",
 *    so DEL and GC find it without prevResult or a state file.
 *
 * The host end is found from the container side: the peer index of CNI_IFNAME.
 */
import { Dataplane } from "../../dataplane/dataplane.ts";
import {
  clearIngress,
  clearRootQdisc,
  ensureIfb,
  ingressRedirectTarget,
  linkNameByIndex,
  linksByAlias,
  linksNamed,
  peerIndex,
  qdiscs,
  redirectIngress,
  setRootTbf,
  shapeNew,
} from "../../dataplane/tc.ts";
import { MAC } from "../../net/index.ts";
import { networkTagPrefix, optUint, requirePrev, shortHash, tagOf, validTags } from "../chained.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import { type CniEnv, type CniPlugin, prevResultOf } from "../skel.ts";
import type { CniResult, NetConf } from "../types.ts";

const dp = new Dataplane();
const ALIAS = "berth-bw ";
const CHECK_FAILED = 110;
/** Rates the kernel cannot represent in tbf (32-bit bytes/s without the 64-bit extension). */
const MAX_BURST_BITS = 8 * 0xffffffff;

export interface BandwidthLimits {
  ingressRate: number;
  ingressBurst: number;
  egressRate: number;
  egressBurst: number;
}

function pick(o: Record<string, unknown>, where: string): BandwidthLimits {
  const g = (k: keyof BandwidthLimits) => optUint(o, k, where) ?? 0;
  return { ingressRate: g("ingressRate"), ingressBurst: g("ingressBurst"), egressRate: g("egressRate"), egressBurst: g("egressBurst") };
}

/** Limits from the capability if given, else from the config; rate and burst come in pairs. */
export function parseBandwidth(conf: NetConf): BandwidthLimits {
  for (const k of ["shapedSubnets", "unshapedSubnets"]) {
    const v = conf[k];
    if (Array.isArray(v) && v.length > 0) {
      throw cniError(CNI_ERR.unsupportedField, `bandwidth: ${k} is not supported: Berth shapes all of the container's traffic`, `field: ${k}`);
    }
  }
  const rc = conf.runtimeConfig?.bandwidth;
  let b: BandwidthLimits;
  if (rc !== undefined && rc !== null) {
    if (typeof rc !== "object" || Array.isArray(rc)) throw cniError(CNI_ERR.invalidConfig, "bandwidth: runtimeConfig.bandwidth must be an object");
    b = pick(rc as Record<string, unknown>, "bandwidth: runtimeConfig.bandwidth");
  } else {
    b = pick(conf, "bandwidth");
  }
  for (const dir of ["ingress", "egress"] as const) {
    const rate = b[`${dir}Rate`];
    const burst = b[`${dir}Burst`];
    if (rate > 0 && burst === 0) throw cniError(CNI_ERR.invalidConfig, `bandwidth: if ${dir}Rate is set, ${dir}Burst must also be set`);
    if (burst > 0 && rate === 0) throw cniError(CNI_ERR.invalidConfig, `bandwidth: if ${dir}Burst is set, ${dir}Rate must also be set`);
    if (burst > MAX_BURST_BITS) throw cniError(CNI_ERR.invalidConfig, `bandwidth: ${dir}Burst ${burst} is too large (at most ${MAX_BURST_BITS} bits)`);
    if (burst > 0 && burst < 8) throw cniError(CNI_ERR.invalidConfig, `bandwidth: ${dir}Burst ${burst} is below one byte`);
  }
  return b;
}

/** The ifb device of one attachment (15 characters). */
export function ifbName(tag: string): string {
  return `bwp${shortHash(tag, 12)}`;
}

async function hostVeth(netns: string, ifname: string): Promise<string | undefined> {
  if (!netns || !dp.netnsExists(netns)) return undefined;
  const idx = await peerIndex(dp, netns, ifname);
  return idx === undefined ? undefined : linkNameByIndex(dp, null, idx);
}

/** The host end of the veth in prevResult (an interface outside the sandbox that is a veth), read in one process. */
async function vethOf(prev: CniResult): Promise<{ name: string; mtu: number } | undefined> {
  const outside = prev.interfaces.filter((i) => !i.sandbox).map((i) => i.name);
  const veths = (await linksNamed(dp, null, outside)).filter((l) => l.kind === "veth");
  return veths.length === 1 ? veths[0] : undefined;
}

/**
 * ADD of a fresh attachment in one pass (find the veth, then the ifb, tbfs and
 * redirect over one rtnetlink socket; with BERTH_DATAPLANE=ip three processes
 * instead of ten); false when it does not apply (no veth in
 * prevResult, or the ifb exists from an earlier ADD), and the step-by-step path runs.
 */
async function addFast(prev: CniResult, bw: BandwidthLimits, tag: string, result: CniResult): Promise<boolean> {
  const host = await vethOf(prev);
  if (!host) return false;
  const ifb = ifbName(tag);
  const mac = MAC.random();
  const done = await shapeNew(dp, null, {
    dev: host.name,
    ...(bw.ingressRate > 0 ? { ingress: { rateBits: bw.ingressRate, burstBytes: Math.floor(bw.ingressBurst / 8) } } : {}),
    ...(bw.egressRate > 0
      ? { egress: { ifb, alias: `${ALIAS}${tag}`, mac, mtu: host.mtu, tbf: { rateBits: bw.egressRate, burstBytes: Math.floor(bw.egressBurst / 8) } } }
      : {}),
  });
  if (done && bw.egressRate > 0) result.interfaces.push({ name: ifb, mac });
  return done;
}

function close(actualBytes: number | undefined, wantBits: number): boolean {
  if (actualBytes === undefined) return false;
  const want = wantBits / 8;
  return Math.abs(actualBytes - want) <= Math.max(1, want * 0.01);
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const prev = requirePrev(conf, "bandwidth");
    const bw = parseBandwidth(conf);
    if (bw.ingressRate === 0 && bw.egressRate === 0) return prev;
    const tag = tagOf(conf, env);
    const result: CniResult = { ...prev, interfaces: [...prev.interfaces] };
    if (await addFast(prev, bw, tag, result)) return result;
    const host = await hostVeth(env.netns, env.ifname);
    if (!host) {
      throw cniError(CNI_ERR.invalidConfig, `bandwidth: cannot find the host end of ${env.ifname} in ${env.netns} (the plugin needs a veth, e.g. from bridge or ptp)`);
    }
    if (bw.ingressRate > 0) await setRootTbf(dp, null, host, { rateBits: bw.ingressRate, burstBytes: Math.floor(bw.ingressBurst / 8) });
    if (bw.egressRate > 0) {
      const ifb = ifbName(tag);
      const mtu = (await dp.link(null, host))?.mtu;
      await ensureIfb(dp, null, ifb, `${ALIAS}${tag}`, mtu);
      await setRootTbf(dp, null, ifb, { rateBits: bw.egressRate, burstBytes: Math.floor(bw.egressBurst / 8) });
      await redirectIngress(dp, null, host, ifb);
      const l = await dp.link(null, ifb);
      result.interfaces.push({ name: ifb, ...(l?.mac ? { mac: l.mac } : {}) });
    }
    return result;
  },

  async del(conf: NetConf, env: CniEnv): Promise<void> {
    const tag = tagOf(conf, env);
    const prev = prevResultOf(conf);
    const host = (prev && (await vethOf(prev))?.name) ?? (await hostVeth(env.netns, env.ifname).catch(() => undefined));
    if (host) {
      await clearIngress(dp, null, host);
      await clearRootQdisc(dp, null, host);
    }
    const errs = await dp.deleteLinks(null, [ifbName(tag)]);
    if (errs.length > 0) throw errs[0];
  },

  async check(conf: NetConf, env: CniEnv): Promise<void> {
    if (!prevResultOf(conf)) throw cniError(CNI_ERR.invalidConfig, "bandwidth: CHECK needs prevResult");
    const bw = parseBandwidth(conf);
    if (bw.ingressRate === 0 && bw.egressRate === 0) return;
    const host = await hostVeth(env.netns, env.ifname);
    if (!host) throw cniError(CHECK_FAILED, `bandwidth: host end of ${env.ifname} not found`);
    if (bw.ingressRate > 0) {
      const tbf = (await qdiscs(dp, null, host))?.find((q) => q.root && q.kind === "tbf");
      if (!tbf || !close(tbf.rateBytes, bw.ingressRate)) {
        throw cniError(CHECK_FAILED, `bandwidth: ${host} has no tbf of ${bw.ingressRate} bit/s (found ${tbf ? `${(tbf.rateBytes ?? 0) * 8} bit/s` : "none"})`);
      }
    }
    if (bw.egressRate > 0) {
      const ifb = ifbName(tagOf(conf, env));
      const tbf = (await qdiscs(dp, null, ifb))?.find((q) => q.root && q.kind === "tbf");
      if (!tbf || !close(tbf.rateBytes, bw.egressRate)) throw cniError(CHECK_FAILED, `bandwidth: ifb ${ifb} has no tbf of ${bw.egressRate} bit/s`);
      const target = await ingressRedirectTarget(dp, null, host);
      if (target !== ifb) throw cniError(CHECK_FAILED, `bandwidth: ingress of ${host} is not redirected to ${ifb} (${target ?? "no redirect"})`);
    }
  },

  async gc(conf: NetConf): Promise<void> {
    const valid = validTags(conf);
    const owned = await linksByAlias(dp, null, "ifb", `${ALIAS}${networkTagPrefix(conf.name)}`);
    const stale = owned.filter((l) => !valid.has(l.alias.slice(ALIAS.length))).map((l) => l.name);
    const errs = await dp.deleteLinks(null, stale);
    if (errs.length > 0) throw cniError(CNI_ERR.ioFailure, `bandwidth: GC: ${errs.map((e) => e.message).join("; ")}`);
  },

  async status(): Promise<void> {
    if (dp.linkBackend === "ip") {
      const r = await dp.exec(null, ["tc", "-V"], { allowFailure: true });
      if (r.exitCode !== 0) throw cniError(CNI_ERR.notAvailable, "bandwidth: tc is not available");
      return;
    }
    // traffic control is spoken over rtnetlink: reading loopback's qdiscs proves the kernel answers
    try {
      await qdiscs(dp, null, "lo");
    } catch (e) {
      throw cniError(CNI_ERR.notAvailable, `bandwidth: traffic control is not available: ${(e as Error).message}`);
    }
  },
};
