/**
 * Overlay network options, with Docker's keys: `com.docker.network.driver.mtu`
 * (default: the underlay's MTU minus the 50 bytes of VXLAN encapsulation) and
 * `com.docker.network.driver.overlay.vxlanid_list` (one VNI; default: the next
 * free one from 4097).
 */
import { invalid } from "../../errors.ts";

export const OPT_MTU = "com.docker.network.driver.mtu";
export const OPT_VNI = "com.docker.network.driver.overlay.vxlanid_list";
const KNOWN = new Set([OPT_MTU, OPT_VNI]);

/** IPv4 outer header 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
export const VXLAN_PORT = 4789;
export const FIRST_VNI = 4097;
export const MAX_VNI = 0xffffff;

export interface OverlayOptions {
  mtu: number | undefined;
  vni: number | undefined;
}

export function parseOverlayOptions(options: Record<string, string>): OverlayOptions {
  for (const k of Object.keys(options)) {
    if (!KNOWN.has(k)) {
      throw invalid("unknown-option", `unknown overlay option ${JSON.stringify(k)}; known: ${[...KNOWN].join(", ")}`, `Options.${k}`);
    }
  }
  const out: OverlayOptions = { mtu: undefined, vni: undefined };
  const m = options[OPT_MTU];
  if (m !== undefined) {
    out.mtu = Number(m);
    if (!/^\d+$/.test(m) || out.mtu < 68 || out.mtu > 65535) {
      throw invalid("bad-mtu", `MTU ${JSON.stringify(m)} must be an integer from 68 to 65535`, `Options.${OPT_MTU}`);
    }
  }
  const v = options[OPT_VNI];
  if (v !== undefined) {
    out.vni = Number(v);
    if (!/^\d+$/.test(v) || out.vni < 1 || out.vni > MAX_VNI) {
      throw invalid("bad-vni", `VXLAN id ${JSON.stringify(v)} must be one integer from 1 to ${MAX_VNI}`, `Options.${OPT_VNI}`);
    }
  }
  return out;
}

/** Kernel names of a network's objects on each host (15 characters at most). */
export function bridgeName(networkId: string): string {
  return `bo${networkId.slice(0, 12)}`;
}

export function vxlanName(networkId: string): string {
  return `vx${networkId.slice(0, 12)}`;
}

/** The network id prefix a kernel name of ours stands for, or undefined for names that are not ours. */
export function networkIdOfVxlan(name: string): string | undefined {
  return /^vx([0-9a-f]{12})$/.exec(name)?.[1];
}
