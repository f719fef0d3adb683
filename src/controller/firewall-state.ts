/**
 * The firewall's desired state, read from the store: what each bridge network and
 * each of its endpoints puts in Berth's tables (firewall/desired.ts), and the [::1]
 * forwards (proxy/loopback6.ts) that follow the same published ports. Macvlan and
 * ipvlan children sit on their parent's segment, so only bridge networks count.
 *
 * `StoreFirewall` is what the controller's Firewall reads: the whole state, or just
 * the endpoints that changed (one record each, not the network's every endpoint).
 * The [::1] forwarders are brought to the same state inside the same firewall lock,
 * before the tables change (a strict forward that cannot bind aborts the change).
 */
import { parseBridgeOptions } from "../drivers/bridge/options.ts";
import type { DesiredFirewall, EndpointFirewall, KeyedFirewallState } from "../firewall/desired.ts";
import type { FirewallNetwork } from "../firewall/ruleset.ts";
import type { Loopback6Proxy, LoopbackForward } from "../proxy/loopback6.ts";
import { scanNetworkEndpoints } from "../store/endpoint-index.ts";
import type { EndpointRecord, NetworkRecord, Store } from "../store/types.ts";

/** A bridge network as the firewall sees it. */
export interface NetworkView {
  network: FirewallNetwork;
  /** Whether the network's subnets of a family are in routed gateway mode (no NAT, no host ports). */
  routed(family: 4 | 6): boolean;
}

/** What a network puts in the firewall; undefined when nothing (not a bridge network, or its bridge not recorded yet). */
export function networkView(net: NetworkRecord): NetworkView | undefined {
  if (net.driver !== "bridge") return undefined;
  const bridge = (net.driverState as { bridge?: string }).bridge;
  if (!bridge) return undefined;
  const opts = parseBridgeOptions(net.options, net.id);
  // gateway mode per family (Docker's gateway_mode_ipv4/6): nat masquerades and publishes host ports;
  // routed does neither, the container's published ports are open to routed traffic instead
  const routed = (fam: 4 | 6) => !net.internal && opts.gatewayMode[fam] === "routed";
  const subnets = net.ipam.pools.map((p) => p.subnet);
  return {
    network: {
      bridge,
      internal: net.internal,
      masquerade: net.internal || !opts.masquerade ? [] : subnets.filter((p) => !routed(p.family)),
      routed: subnets.filter((p) => routed(p.family)),
    },
    routed,
  };
}

/** What one endpoint of a bridge network puts in the firewall, and the [::1] forwards of its ports. */
export function endpointView(net: NetworkView, ep: Readonly<EndpointRecord>): { part: EndpointFirewall; loopback6: LoopbackForward[] } {
  const part: EndpointFirewall = { sources: [], ports: [], open: [] };
  const loopback6: LoopbackForward[] = [];
  // anti-spoofing: the container's port may send only from its own MAC and addresses (an
  // external runtime's endpoint is configured by that runtime, so its port is not policed)
  const port = (ep.driverState as { hostIfname?: string }).hostIfname;
  if (port && !ep.external) part.sources.push({ port, mac: ep.mac, addresses: ep.addresses.map((a) => a.ip) });
  for (const p of ep.ports) {
    // "0.0.0.0" / "::" mean every address of that family
    const hostIP = p.hostIP?.isUnspecified() ? undefined : p.hostIP;
    for (const a of ep.addresses) {
      if (p.hostIP && p.hostIP.family !== a.ip.family) continue;
      if (net.routed(a.ip.family)) {
        part.open.push({ target: a.ip, protocol: p.protocol, port: p.containerPort });
        continue;
      }
      const forward = { protocol: p.protocol, hostPort: p.hostPort, target: a.ip, targetPort: p.containerPort };
      if (hostIP?.family === 6 && hostIP.isLoopback()) {
        loopback6.push({ ...forward, strict: true });
        continue;
      }
      part.ports.push({ hostIP, ...forward });
      // like Docker's proxy on [::]: every-address IPv6 mappings answer on [::1] too (best effort)
      if (!hostIP && a.ip.family === 6) loopback6.push({ ...forward, strict: false });
    }
  }
  return { part, loopback6 };
}

/** The whole desired state from the store, with each endpoint's [::1] forwards. */
export async function readFirewallState(store: Store): Promise<KeyedFirewallState & { loopback6: Map<string, LoopbackForward[]> }> {
  const networks: FirewallNetwork[] = [];
  const endpoints = new Map<string, EndpointFirewall>();
  const loopback6 = new Map<string, LoopbackForward[]>();
  for (const net of await store.networks.list()) {
    const view = networkView(net);
    if (!view) continue;
    networks.push(view.network);
    for (const ep of await scanNetworkEndpoints(store, net.id)) {
      const v = endpointView(view, ep);
      endpoints.set(ep.id, v.part);
      if (v.loopback6.length > 0) loopback6.set(ep.id, v.loopback6);
    }
  }
  return { networks, endpoints, loopback6 };
}

/** The controller's firewall state: read from the store, [::1] forwarders kept in step. */
export class StoreFirewall implements DesiredFirewall {
  /** Each endpoint's [::1] forwards, as last read. */
  private readonly forwards = new Map<string, LoopbackForward[]>();

  constructor(
    private readonly store: Store,
    private readonly loopback6: Loopback6Proxy,
  ) {}

  async whole(): Promise<KeyedFirewallState> {
    const s = await readFirewallState(this.store);
    this.forwards.clear();
    for (const [id, f] of s.loopback6) this.forwards.set(id, f);
    await this.syncForwards();
    return s;
  }

  async endpoints(ids: ReadonlySet<string>): Promise<ReadonlyMap<string, EndpointFirewall>> {
    const out = new Map<string, EndpointFirewall>();
    const networks = new Map<string, NetworkView | undefined>();
    for (const id of ids) {
      this.forwards.delete(id);
      const ep = await this.store.endpoints.get(id);
      if (!ep) continue;
      if (!networks.has(ep.networkId)) {
        const net = await this.store.networks.get(ep.networkId);
        networks.set(ep.networkId, net ? networkView(net) : undefined);
      }
      const view = networks.get(ep.networkId);
      if (!view) continue;
      const v = endpointView(view, ep);
      out.set(id, v.part);
      if (v.loopback6.length > 0) this.forwards.set(id, v.loopback6);
    }
    await this.syncForwards();
    return out;
  }

  /** The forwarders serve every endpoint's forwards (nothing to do while there are none and none is served). */
  private async syncForwards(): Promise<void> {
    const want = [...this.forwards.values()].flat();
    if (want.length > 0 || this.loopback6.active().length > 0) await this.loopback6.sync(want);
  }
}
