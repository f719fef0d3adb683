/**
 * The host's gateway bridge (Docker's docker_gwbridge): containers on networks
 * whose driver has no way out of its own (overlay) get a second endpoint on a
 * local bridge network, `berth_gwbridge`, for traffic leaving the network: its
 * default route, masquerade through Berth's nftables table like any bridge
 * network. Inter-container traffic on it is off (enable_icc=false), so two
 * containers of different overlays on one host cannot meet through it.
 *
 * The network is created on first use on each host; a container's endpoint on
 * it goes with the container's last endpoint that needed it.
 */
import { isGatewayBridged } from "../drivers/driver.ts";
import { BerthError } from "../errors.ts";
import type { NetworkRecord } from "../store/types.ts";
import type { Controller } from "./controller.ts";

export const GATEWAY_NETWORK = "berth_gwbridge";

async function gatewayNetwork(ctl: Controller): Promise<NetworkRecord> {
  const found = await ctl.store.networks.find(GATEWAY_NETWORK);
  if (found?.name === GATEWAY_NETWORK) return found;
  try {
    return await ctl.createNetwork({
      name: GATEWAY_NETWORK,
      driver: "bridge",
      options: { "com.docker.network.bridge.name": GATEWAY_NETWORK, "com.docker.network.bridge.enable_icc": "false" },
      labels: { "berth.gateway-bridge": "true" },
    });
  } catch (e) {
    // created meanwhile by a concurrent connect
    const again = await ctl.store.networks.find(GATEWAY_NETWORK);
    if (e instanceof BerthError && e.kind === "conflict" && again) return again;
    throw e;
  }
}

/** Connects the container to the gateway bridge unless it is on it already; returns whether it did. */
export async function attachGatewayBridge(ctl: Controller, containerId: string, netns: string): Promise<boolean> {
  const net = await gatewayNetwork(ctl);
  const eps = await ctl.store.endpoints.listByContainer(containerId);
  if (eps.some((e) => e.networkId === net.id)) return false;
  await ctl.connect({ network: net.id, containerId, netns });
  return true;
}

/**
 * Disconnects the container from the gateway bridge when none of its other
 * endpoints (but `ignore`, one being rolled back) needs it any more.
 */
export async function detachGatewayBridgeIfUnused(ctl: Controller, containerId: string, netns: string, ignore?: string): Promise<void> {
  const gw = await ctl.store.networks.find(GATEWAY_NETWORK);
  if (gw?.name !== GATEWAY_NETWORK) return;
  let gwEndpoint: Awaited<ReturnType<typeof ctl.store.endpoints.get>>;
  for (const ep of await ctl.store.endpoints.listByContainer(containerId)) {
    if (ep.networkId === gw.id) {
      gwEndpoint = ep;
      continue;
    }
    if (ep.id === ignore) continue;
    const net = await ctl.store.networks.get(ep.networkId);
    if (!net) continue;
    const d = ctl.driver(net.driver);
    if (isGatewayBridged(d) && d.needsGatewayBridge(net)) return;
  }
  if (gwEndpoint) await ctl.removeEndpoint(gw, gwEndpoint, netns);
}
