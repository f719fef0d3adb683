/**
 * Per-container bandwidth limits for `berth run` (tc token buckets, like the CNI
 * bandwidth plugin): traffic INTO the container is shaped by a tbf on the host
 * end of its veth; traffic OUT of it is redirected from the host end's ingress
 * to an ifb device carrying a tbf. Everything sits on the host side, so a
 * process inside the container cannot lift its own limit. Needs a veth endpoint
 * (bridge networks).
 */
import type { Dataplane } from "../dataplane/dataplane.ts";
import { clearIngress, clearRootQdisc, ensureIfb, redirectIngress, setRootTbf } from "../dataplane/tc.ts";
import { invalid } from "../errors.ts";
import type { EndpointRecord } from "../store/types.ts";

export interface BandwidthLimits {
  /** bits per second into the container */
  ingressRate?: number;
  /** bits per second out of the container */
  egressRate?: number;
  /** bits */
  ingressBurst?: number;
  egressBurst?: number;
}

const MAX_RATE = 100e9;
const MIN_RATE = 8000;

export function validateBandwidth(b: BandwidthLimits): void {
  for (const k of ["ingressRate", "egressRate"] as const) {
    const v = b[k];
    if (v !== undefined && (!Number.isFinite(v) || v < MIN_RATE || v > MAX_RATE)) {
      throw invalid("bad-rate", `${k} ${v} must be between ${MIN_RATE} bit/s and ${MAX_RATE / 1e9} Gbit/s`, k);
    }
  }
  for (const k of ["ingressBurst", "egressBurst"] as const) {
    const v = b[k];
    if (v !== undefined && (!Number.isFinite(v) || v < 8 * 1600 || v > 8 * 2 ** 30)) {
      throw invalid("bad-burst", `${k} ${v} bits must be between one full-size frame (12800 bits) and 1 GiB`, k);
    }
  }
  if (b.ingressBurst !== undefined && b.ingressRate === undefined) throw invalid("burst-without-rate", "ingressBurst needs ingressRate", "ingressBurst");
  if (b.egressBurst !== undefined && b.egressRate === undefined) throw invalid("burst-without-rate", "egressBurst needs egressRate", "egressBurst");
}

/** Parses tc-style rates: "20mbit", "1gbit", "500kbit", "1000000" (bit/s). */
export function parseRate(s: string, field: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?$/i.exec(s.trim());
  if (!m) throw invalid("bad-rate", `invalid rate ${JSON.stringify(s)} for --${field}: use e.g. 500kbit, 20mbit, 1gbit`, field);
  const unit = (m[2] ?? "bit").toLowerCase();
  const mult: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9 };
  return Math.round(Number(m[1]) * mult[unit]!);
}

const defaultBurstBytes = (rateBits: number) => Math.max(32 * 1024, Math.round(rateBits / 8 / 50)); // 20 ms worth

export function ifbFor(ep: EndpointRecord): string {
  return `bw${ep.id.slice(0, 11)}`;
}

function hostVeth(ep: EndpointRecord): string {
  const h = (ep.driverState as { hostIfname?: string }).hostIfname;
  if (!h) throw invalid("bandwidth-needs-veth", "bandwidth limits need a bridge network (a veth endpoint)", "network");
  return h;
}

export async function applyBandwidth(dp: Dataplane, ep: EndpointRecord, b: BandwidthLimits): Promise<void> {
  const host = hostVeth(ep);
  const ns = dp.hostNs;
  try {
    if (b.ingressRate) {
      await setRootTbf(dp, ns, host, { rateBits: b.ingressRate, burstBytes: b.ingressBurst ? b.ingressBurst / 8 : defaultBurstBytes(b.ingressRate) });
    }
    if (b.egressRate) {
      const ifb = ifbFor(ep);
      await ensureIfb(dp, ns, ifb, `berth-bw:${ep.id}`, (await dp.link(ns, host))?.mtu);
      await setRootTbf(dp, ns, ifb, { rateBits: b.egressRate, burstBytes: b.egressBurst ? b.egressBurst / 8 : defaultBurstBytes(b.egressRate) });
      await redirectIngress(dp, ns, host, ifb);
    }
  } catch (e) {
    await removeBandwidth(dp, ep).catch(() => undefined);
    throw e;
  }
}

/** Removes the shaping of one endpoint; missing pieces are fine. */
export async function removeBandwidth(dp: Dataplane, ep: EndpointRecord): Promise<void> {
  const host = (ep.driverState as { hostIfname?: string }).hostIfname;
  if (host) {
    await clearIngress(dp, dp.hostNs, host);
    await clearRootQdisc(dp, dp.hostNs, host);
  }
  const errs = await dp.deleteLinks(dp.hostNs, [ifbFor(ep)]);
  if (errs[0]) throw errs[0];
}
