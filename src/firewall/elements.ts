/**
 * The elements of Berth's sets and maps, as nft writes them, computed item by item
 * from the typed state: each network, published port, anti-spoofing source and
 * open port gives its own elements. The whole rendering (ruleset.ts) and the
 * incremental updates (applied.ts) both take their elements from here, so an
 * incremental change can never put anything in a set that the whole rendering
 * of the same state would not.
 *
 * A set's elements are the union of its items' elements: items may share one
 * (two ports of one container give the same hairpin element), so a set holds an
 * element while at least one item gives it.
 */
import type { FirewallNetwork, FirewallOpenPort, FirewallPort, FirewallSource, FirewallState } from "./ruleset.ts";

export interface SetSpec {
  /** The table: `inet berth` (filtering, NAT) or `bridge berth` (anti-spoofing). */
  family: "inet" | "bridge";
  name: string;
  /** A map: an element is `key : value`, deleted by its key alone. */
  map: boolean;
  /**
   * An interval set the kernel merges (auto-merge): what it holds is not the elements
   * that were added, so it is never changed element by element, only replaced with its table.
   */
  autoMerge: boolean;
}

const set = (family: SetSpec["family"], name: string, o: { map?: boolean; autoMerge?: boolean } = {}): SetSpec => ({
  family,
  name,
  map: o.map ?? false,
  autoMerge: o.autoMerge ?? false,
});

/** Every set and map of both tables, by the key elements carry: `FAMILY NAME`. */
export const SETS: ReadonlyMap<string, SetSpec> = new Map(
  [
    set("inet", "bridges"),
    set("inet", "bridge_pairs"),
    set("inet", "internal"),
    set("inet", "nat4", { autoMerge: true }),
    set("inet", "nat6", { autoMerge: true }),
    set("inet", "ports4", { map: true }),
    set("inet", "ports6", { map: true }),
    set("inet", "anyports4", { map: true }),
    set("inet", "anyports6", { map: true }),
    set("inet", "hairpin4"),
    set("inet", "hairpin6"),
    set("inet", "routed4", { autoMerge: true }),
    set("inet", "routed6", { autoMerge: true }),
    set("inet", "open4"),
    set("inet", "open6"),
    set("bridge", "ports"),
    set("bridge", "macs"),
    set("bridge", "src4"),
    set("bridge", "src6"),
  ].map((s) => [`${s.family} ${s.name}`, s]),
);

/** One element and the set it goes in: [`FAMILY NAME`, element as nft writes it]. */
export type SetElement = readonly [set: string, element: string];

const q = (s: string): string => JSON.stringify(s);

/** A bridge network: its bridge (isolation, internal) and the subnets it masquerades or routes. */
export function networkElements(n: FirewallNetwork): SetElement[] {
  const b = q(n.bridge);
  const out: SetElement[] = [
    ["inet bridges", b],
    ["inet bridge_pairs", `${b} . ${b}`],
  ];
  if (n.internal) out.push(["inet internal", b]);
  for (const p of n.masquerade) out.push([`inet nat${p.family}`, p.toString()]);
  for (const p of n.routed ?? []) out.push([`inet routed${p.family}`, p.toString()]);
  return out;
}

/** A published port: its DNAT mapping (also in the every-address hash map when it has no host address) and its hairpin. */
export function portElements(p: FirewallPort): SetElement[] {
  const fam = p.target.family;
  const host = p.hostIP ? p.hostIP.toString() : fam === 6 ? "::/0" : "0.0.0.0/0";
  const out: SetElement[] = [[`inet ports${fam}`, `${host} . ${p.protocol} . ${p.hostPort} : ${p.target} . ${p.targetPort}`]];
  if (!p.hostIP) out.push([`inet anyports${fam}`, `${p.protocol} . ${p.hostPort} : ${p.target} . ${p.targetPort}`]);
  out.push([`inet hairpin${fam}`, `${p.target} . ${p.target}`]);
  return out;
}

/** A container port open to routed traffic. */
export function openElements(o: FirewallOpenPort): SetElement[] {
  return [[`inet open${o.target.family}`, `${o.target} . ${o.protocol} . ${o.port}`]];
}

/** A container's bridge port and what it may send from (anti-spoofing). */
export function sourceElements(x: FirewallSource): SetElement[] {
  const port = q(x.port);
  const out: SetElement[] = [
    ["bridge ports", port],
    ["bridge macs", `${port} . ${x.mac}`],
  ];
  for (const a of x.addresses) out.push([`bridge src${a.family}`, `${port} . ${x.mac} . ${a}`]);
  return out;
}

/** Every element a state gives, item by item (an element shared by items appears once per item). */
export function itemElements(s: FirewallState): SetElement[] {
  return [
    ...s.networks.flatMap(networkElements),
    ...s.ports.flatMap(portElements),
    ...(s.open ?? []).flatMap(openElements),
    ...(s.sources ?? []).flatMap(sourceElements),
  ];
}

/** The elements of every set for a state, each once, in the order of the state's items. */
export function stateElements(s: FirewallState): Map<string, string[]> {
  const seen = new Map<string, Set<string>>([...SETS.keys()].map((k) => [k, new Set<string>()]));
  for (const [k, e] of itemElements(s)) seen.get(k)!.add(e);
  return new Map([...seen].map(([k, v]) => [k, [...v]]));
}

/** The key of an element of `set` (a map's element without its value): what `delete element` takes. */
export function elementKey(set: string, element: string): string {
  const sep = SETS.get(set)?.map ? element.indexOf(" : ") : -1;
  return sep < 0 ? element : element.slice(0, sep);
}
