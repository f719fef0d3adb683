/**
 * Bridge network options, with Docker's option keys so `docker network create
 * -o com.docker.network.bridge.name=...` and compose files work unchanged.
 */
import { invalid } from "../../errors.ts";
import { validateIfName } from "../../net/index.ts";

export const OPT_BRIDGE_NAME = "com.docker.network.bridge.name";
export const OPT_MTU = "com.docker.network.driver.mtu";
export const OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade";
export const OPT_ICC = "com.docker.network.bridge.enable_icc";
export const OPT_GATEWAY_MODE_V4 = "com.docker.network.bridge.gateway_mode_ipv4";
export const OPT_GATEWAY_MODE_V6 = "com.docker.network.bridge.gateway_mode_ipv6";

const KNOWN = new Set([OPT_BRIDGE_NAME, OPT_MTU, OPT_MASQUERADE, OPT_ICC, OPT_GATEWAY_MODE_V4, OPT_GATEWAY_MODE_V6]);

/**
 * How a family's traffic leaves and enters the network (Docker's gateway modes):
 *  - nat (default): masqueraded on the way out, reachable from outside only through published host ports;
 *  - routed: no NAT; the container addresses are reachable from outside (for clients with a route to
 *    the subnet via the host), but only on the container ports it publishes, plus ICMP echo (like Docker).
 */
export type GatewayMode = "nat" | "routed";
const GATEWAY_MODES: readonly GatewayMode[] = ["nat", "routed"];

export interface BridgeOptions {
  bridgeName: string;
  mtu: number;
  masquerade: boolean;
  /** Inter-container communication on the network (false: ports are isolated from each other). */
  icc: boolean;
  /** Gateway mode per family. */
  gatewayMode: Record<4 | 6, GatewayMode>;
}

export const DEFAULT_MTU = 1500;

function parseBool(v: string, key: string): boolean {
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw invalid("bad-option", `option ${key}=${JSON.stringify(v)} must be true or false`, `Options.${key}`);
}

export function parseBridgeOptions(options: Record<string, string>, networkId: string): BridgeOptions {
  for (const k of Object.keys(options)) {
    if (!KNOWN.has(k)) {
      throw invalid("unknown-option", `unknown bridge option ${JSON.stringify(k)}; known: ${[...KNOWN].join(", ")}`, `Options.${k}`);
    }
  }
  const name = options[OPT_BRIDGE_NAME] ?? `br-${networkId.slice(0, 12)}`;
  validateIfName(name, `Options.${OPT_BRIDGE_NAME}`);
  let mtu = DEFAULT_MTU;
  const m = options[OPT_MTU];
  if (m !== undefined) {
    mtu = Number(m);
    if (!/^\d+$/.test(m) || mtu < 68 || mtu > 65535) {
      throw invalid("bad-mtu", `MTU ${JSON.stringify(m)} must be an integer from 68 to 65535`, `Options.${OPT_MTU}`);
    }
  }
  const icc = options[OPT_ICC];
  const masq = options[OPT_MASQUERADE];
  return {
    gatewayMode: { 4: gatewayMode(options, OPT_GATEWAY_MODE_V4), 6: gatewayMode(options, OPT_GATEWAY_MODE_V6) },
    bridgeName: name,
    mtu,
    masquerade: masq === undefined ? true : parseBool(masq, OPT_MASQUERADE),
    icc: icc === undefined ? true : parseBool(icc, OPT_ICC),
  };
}

function gatewayMode(options: Record<string, string>, key: string): GatewayMode {
  const v = options[key];
  if (v === undefined || v === "") return "nat";
  if (!(GATEWAY_MODES as readonly string[]).includes(v)) {
    throw invalid("bad-option", `option ${key}=${JSON.stringify(v)} must be one of ${GATEWAY_MODES.join(", ")}`, `Options.${key}`);
  }
  return v as GatewayMode;
}
