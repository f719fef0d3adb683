/**
 * The desired firewall state, keyed by who contributes each part: the networks
 * (bridges, subnets) as one part, and every endpoint (its anti-spoofing sources,
 * published and open ports) as its own. Keys are what lets the firewall update
 * one endpoint's elements without recomputing, or even reading, the others'.
 */
import { networkElements, openElements, portElements, type SetElement, sourceElements } from "./elements.ts";
import type { FirewallNetwork, FirewallOpenPort, FirewallPort, FirewallSource, FirewallState } from "./ruleset.ts";

/** What one endpoint puts in Berth's tables. */
export interface EndpointFirewall {
  sources: FirewallSource[];
  ports: FirewallPort[];
  open: FirewallOpenPort[];
}

export interface KeyedFirewallState {
  networks: FirewallNetwork[];
  /** By endpoint id; an endpoint that puts nothing in the tables may be left out. */
  endpoints: ReadonlyMap<string, EndpointFirewall>;
}

/** Where the firewall reads the desired state from (the controller: its store). */
export interface DesiredFirewall {
  /** The whole state (start, network changes, repairs). */
  whole(): Promise<KeyedFirewallState>;
  /** The current parts of these endpoints; an id left out of the answer has none (e.g. it is gone). */
  endpoints(ids: ReadonlySet<string>): Promise<ReadonlyMap<string, EndpointFirewall>>;
}

/** The contributor key of the networks' part (endpoint ids are 64 hex digits: no clash). */
export const NETWORKS = "networks";

/** The state as the renderer takes it: the networks, then the endpoints' items in endpoint order. */
export function flattenState(k: KeyedFirewallState): FirewallState {
  const eps = [...k.endpoints.values()];
  return {
    networks: k.networks,
    ports: eps.flatMap((e) => e.ports),
    sources: eps.flatMap((e) => e.sources),
    open: eps.flatMap((e) => e.open),
  };
}

/** The elements one endpoint gives (none when it has no part). */
export function endpointElements(e: EndpointFirewall | undefined): SetElement[] {
  if (!e) return [];
  return [...e.ports.flatMap(portElements), ...e.open.flatMap(openElements), ...e.sources.flatMap(sourceElements)];
}

/** Every contributor's elements: the networks' under NETWORKS, each endpoint's under its id. */
export function contributions(k: KeyedFirewallState): Map<string, SetElement[]> {
  const out = new Map<string, SetElement[]>([[NETWORKS, k.networks.flatMap(networkElements)]]);
  for (const [id, e] of k.endpoints) out.set(id, endpointElements(e));
  return out;
}
