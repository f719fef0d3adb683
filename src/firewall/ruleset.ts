/**
 * Berth's firewall, rendered as one nftables table (`inet berth`) from typed
 * state. Everything variable lives in sets and maps; the rules are fixed, so the
 * cost of a check does not grow with the number of networks or ports:
 *
 *  - `bridges`: every Berth bridge; `bridge_pairs`: (bridge . same bridge) pairs,
 *    so routed traffic may hairpin within one network but never cross networks;
 *  - `internal`: bridges of internal networks: no routed traffic in or out;
 *  - `nat4`/`nat6`: subnets masqueraded when leaving through a non-Berth interface;
 *  - `ports4`/`ports6`: published ports, (host address . protocol . port) ->
 *    (container address . port), an interval map so "any host address" is the
 *    0.0.0.0/0 (::/0) element and the kernel itself refuses two mappings that
 *    overlap. DNAT only, so the container sees the client's real source address.
 *  - `hairpin4`/`hairpin6`: (target . target) of published ports, masqueraded so a
 *    container can reach its own published port through a host address.
 *  - inbound traffic from outside to a container is allowed only when it was
 *    DNATed (published) or belongs to a connection the container opened.
 */
import type { IP, Prefix } from "../net/index.ts";

export const TABLE_FAMILY = "inet";
export const TABLE_NAME = "berth";

export interface FirewallNetwork {
  bridge: string;
  internal: boolean;
  /** Subnets to masquerade on the way out (empty for internal or routed networks). */
  masquerade: Prefix[];
}

export interface FirewallPort {
  /** undefined = every host address of the family of `target`. */
  hostIP: IP | undefined;
  protocol: "tcp" | "udp" | "sctp";
  hostPort: number;
  target: IP;
  targetPort: number;
}

export interface FirewallState {
  networks: FirewallNetwork[];
  ports: FirewallPort[];
}

const q = (s: string): string => JSON.stringify(s);

function elements(items: string[]): string {
  return items.length === 0 ? "" : `elements = { ${items.join(", ")} }`;
}

function portElement(p: FirewallPort): string {
  const v6 = p.target.family === 6;
  const host = p.hostIP ? p.hostIP.toString() : v6 ? "::/0" : "0.0.0.0/0";
  return `${host} . ${p.protocol} . ${p.hostPort} : ${p.target} . ${p.targetPort}`;
}

/** The complete table as an nft script fragment (without the delete/replace wrapper). */
export function renderTable(s: FirewallState): string {
  const bridges = s.networks.map((n) => q(n.bridge));
  const pairs = s.networks.map((n) => `${q(n.bridge)} . ${q(n.bridge)}`);
  const internal = s.networks.filter((n) => n.internal).map((n) => q(n.bridge));
  const nat = (fam: 4 | 6) =>
    s.networks.flatMap((n) => n.masquerade.filter((p) => p.family === fam).map((p) => p.toString()));
  const ports = (fam: 4 | 6) => s.ports.filter((p) => p.target.family === fam).map(portElement);
  // a container reaching its own published port: the DNATed packet would come back with its own
  // address as source (a martian); masquerade exactly that (target . target) case, like Docker
  const hairpin = (fam: 4 | 6) => [
    ...new Set(s.ports.filter((p) => p.target.family === fam).map((p) => `${p.target} . ${p.target}`)),
  ];
  const dnat = (fam: 4 | 6) => {
    const ipf = fam === 4 ? "ip" : "ip6";
    return `meta l4proto { tcp, udp, sctp } fib daddr type local dnat ${ipf} to ${ipf} daddr . meta l4proto . th dport map @ports${fam}`;
  };
  return `table ${TABLE_FAMILY} ${TABLE_NAME} {
  comment "managed by berthd; do not edit"
  set bridges { type ifname; ${elements(bridges)} }
  set bridge_pairs { type ifname . ifname; ${elements(pairs)} }
  set internal { type ifname; ${elements(internal)} }
  set nat4 { type ipv4_addr; flags interval; auto-merge; ${elements(nat(4))} }
  set nat6 { type ipv6_addr; flags interval; auto-merge; ${elements(nat(6))} }
  map ports4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags interval; ${elements(ports(4))} }
  map ports6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; flags interval; ${elements(ports(6))} }
  set hairpin4 { type ipv4_addr . ipv4_addr; ${elements(hairpin(4))} }
  set hairpin6 { type ipv6_addr . ipv6_addr; ${elements(hairpin(6))} }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ${dnat(4)}
    ${dnat(6)}
  }
  chain output {
    type nat hook output priority -100; policy accept;
    ${dnat(4)}
    ${dnat(6)}
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr @nat4 oifname != @bridges masquerade
    ip6 saddr @nat6 oifname != @bridges masquerade
    ct status dnat ip saddr 127.0.0.0/8 masquerade
    ct status dnat ip6 saddr ::1 masquerade
    ct status dnat ip saddr . ip daddr @hairpin4 masquerade
    ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname . oifname @bridge_pairs accept
    iifname @internal drop
    oifname @internal drop
    iifname @bridges oifname @bridges drop
    oifname @bridges ct state established,related accept
    oifname @bridges ct status dnat accept
    oifname @bridges drop
  }
}
`;
}

/**
 * One atomic transaction that replaces the table with the rendered state:
 * creating it first makes the delete safe when it does not exist yet.
 */
export function renderReplace(s: FirewallState): string {
  return `add table ${TABLE_FAMILY} ${TABLE_NAME}\ndelete table ${TABLE_FAMILY} ${TABLE_NAME}\n${renderTable(s)}`;
}

/** Number of rules in the table (fixed whatever the state): what a healthy table must hold. */
export function ruleCount(): number {
  let inChain = false;
  let n = 0;
  for (const raw of renderTable({ networks: [], ports: [] }).split("\n")) {
    const l = raw.trim();
    if (l.startsWith("chain ")) inChain = true;
    else if (l === "}") inChain = false;
    else if (inChain && l !== "" && !l.startsWith("type ")) n++;
  }
  return n;
}
