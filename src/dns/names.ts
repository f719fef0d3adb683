/**
 * The name table: which names exist on which network, built from the store's
 * networks and endpoints. Pure data; the resolver asks it with the set of
 * networks the asking container is attached to, so names never leak across
 * networks.
 *
 * Names of an endpoint: its aliases (Berth's runtime puts the container name
 * first) and, for 64-hex container IDs, the short ID (12 characters), like
 * Docker. A name can also be asked for qualified by an attached network's name
 * (`web.front`), which restricts the answer to that network.
 * Lookups are case-insensitive and ignore a trailing dot.
 */
import { IP, type Prefix } from "../net/index.ts";
import type { EndpointRecord, NetworkRecord } from "../store/types.ts";

/** Drivers whose containers get no embedded resolver: they have no network of their own. */
export const NO_DNS_DRIVERS: readonly string[] = ["host", "null"];

export interface NetworkInfo {
  id: string;
  name: string;
  internal: boolean;
  subnets: Prefix[];
}

interface Entry {
  networkId: string;
  containerId: string;
  ip: IP;
}

interface ReverseEntry {
  networkId: string;
  name: string;
}

export type Scope = ReadonlySet<string>;

export class NameTable {
  private readonly byName = new Map<string, Entry[]>();
  private readonly byAddress = new Map<string, ReverseEntry[]>();
  private readonly networksByContainer = new Map<string, Set<string>>();
  readonly networks = new Map<string, NetworkInfo>();
  /** Lower-cased network name -> id (for qualified names). */
  private readonly networkByName = new Map<string, string>();

  static build(networks: readonly NetworkRecord[], endpoints: readonly EndpointRecord[]): NameTable {
    const t = new NameTable();
    for (const n of networks) {
      if (NO_DNS_DRIVERS.includes(n.driver)) continue;
      t.networks.set(n.id, { id: n.id, name: n.name, internal: n.internal, subnets: n.ipam.pools.map((p) => p.subnet) });
      t.networkByName.set(n.name.toLowerCase(), n.id);
    }
    for (const ep of endpoints) {
      if (!t.networks.has(ep.networkId)) continue;
      getOrAdd(t.networksByContainer, ep.containerId, () => new Set<string>()).add(ep.networkId);
      const names = endpointNames(ep);
      for (const a of ep.addresses) {
        for (const n of names) {
          const list = getOrAdd(t.byName, n.toLowerCase(), () => []);
          if (!list.some((e) => e.networkId === ep.networkId && e.ip.equals(a.ip))) {
            list.push({ networkId: ep.networkId, containerId: ep.containerId, ip: a.ip });
          }
        }
        // PTR: the endpoint's primary name (the container name for runtime containers)
        const primary = names[0];
        if (primary !== undefined) {
          getOrAdd(t.byAddress, a.ip.toString(), () => []).push({ networkId: ep.networkId, name: primary });
        }
      }
    }
    return t;
  }

  /** The networks (ids) a container is attached to: its resolver's scope. */
  scopeOf(containerId: string): Scope {
    return this.networksByContainer.get(containerId) ?? new Set();
  }

  /** Whether a container's resolver may forward: at least one attached network is not internal. */
  mayForward(scope: Scope): boolean {
    if (scope.size === 0) return true;
    for (const id of scope) if (this.networks.get(id)?.internal === false) return true;
    return false;
  }

  /**
   * Addresses of `name` in `scope`: undefined when the name is unknown there,
   * an empty list when it exists but has no address of `family`.
   */
  lookup(name: string, family: 4 | 6, scope: Scope): IP[] | undefined {
    const key = normalize(name);
    const direct = this.collect(this.byName.get(key), scope);
    if (direct) return filterFamily(direct, family);
    // <name>.<network>: only that network, and only if the asker is attached to it
    for (const id of scope) {
      const net = this.networks.get(id);
      if (!net) continue;
      const suffix = `.${net.name.toLowerCase()}`;
      if (key.length > suffix.length && key.endsWith(suffix)) {
        const found = this.collect(this.byName.get(key.slice(0, -suffix.length)), new Set([id]));
        if (found) return filterFamily(found, family);
      }
    }
    return undefined;
  }

  /** PTR names for an address in scope (undefined: not ours). */
  reverse(ip: IP, scope: Scope): string[] | undefined {
    const list = this.byAddress.get(ip.toString());
    if (!list) return undefined;
    const out: string[] = [];
    for (const e of list) if (scope.has(e.networkId) && !out.includes(e.name)) out.push(e.name);
    return out.length > 0 ? out : undefined;
  }

  /** True when `ip` lies in a subnet of a network in scope (reverse lookups there are answered, never forwarded). */
  inScopeSubnets(ip: IP, scope: Scope): boolean {
    for (const id of scope) {
      for (const s of this.networks.get(id)?.subnets ?? []) if (s.family === ip.family && s.contains(ip)) return true;
    }
    return false;
  }

  /** Every (name, network, address) triple: for inspection (`berth dns`, tests). */
  records(): { name: string; networkId: string; containerId: string; address: string }[] {
    const out: { name: string; networkId: string; containerId: string; address: string }[] = [];
    for (const [name, list] of this.byName) for (const e of list) out.push({ name, networkId: e.networkId, containerId: e.containerId, address: e.ip.toString() });
    return out;
  }

  private collect(list: Entry[] | undefined, scope: Scope): IP[] | undefined {
    if (!list) return undefined;
    const out: IP[] = [];
    for (const e of list) if (scope.has(e.networkId) && !out.some((x) => x.equals(e.ip))) out.push(e.ip);
    return out.length > 0 ? out : undefined;
  }
}

function getOrAdd<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    m.set(k, v);
  }
  return v;
}

function filterFamily(ips: IP[], family: 4 | 6): IP[] {
  return ips.filter((ip) => ip.family === family);
}

export function normalize(name: string): string {
  return (name.endsWith(".") ? name.slice(0, -1) : name).toLowerCase();
}

const HEX64 = /^[0-9a-f]{64}$/;

function endpointNames(ep: EndpointRecord): string[] {
  const names = [...ep.aliases];
  if (HEX64.test(ep.containerId)) names.push(ep.containerId.slice(0, 12));
  return names;
}

// ---------- reverse names ----------

/** The address a PTR name stands for (a.b.c.d.in-addr.arpa or 32 nibbles .ip6.arpa), or undefined. */
export function parseReverseName(name: string): IP | undefined {
  const n = normalize(name);
  if (n.endsWith(".in-addr.arpa")) {
    const parts = n.slice(0, -".in-addr.arpa".length).split(".");
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p))) return undefined;
    return IP.tryParse(parts.reverse().join("."));
  }
  if (n.endsWith(".ip6.arpa")) {
    const nibbles = n.slice(0, -".ip6.arpa".length).split(".");
    if (nibbles.length !== 32 || !nibbles.every((x) => /^[0-9a-f]$/.test(x))) return undefined;
    let v = 0n;
    for (const x of nibbles.reverse()) v = (v << 4n) | BigInt(Number.parseInt(x, 16));
    return IP.fromBigInt(6, v);
  }
  return undefined;
}

/** The PTR owner name of an address. */
export function reverseName(ip: IP): string {
  if (ip.family === 4) return `${ip.toString().split(".").reverse().join(".")}.in-addr.arpa`;
  const hex = ip.value.toString(16).padStart(32, "0");
  return `${[...hex].reverse().join(".")}.ip6.arpa`;
}
