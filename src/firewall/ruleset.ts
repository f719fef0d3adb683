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
 *  - `routed4`/`routed6`: subnets in routed gateway mode (no NAT); `open4`/`open6`:
 *    (container address . protocol . port) they publish, let in without DNAT, plus ICMP echo;
 *  - [::1] is never DNATed (IPv6 has no route_localnet): berthd forwards it in userland;
 *  - inbound traffic from outside to a container is allowed only when it was
 *    DNATed (published) or belongs to a connection the container opened.
 *
 * Anti-spoofing lives in a second table of Berth's, `bridge berth` (the bridge
 * family is the only one that sees the bridge port a frame came in on): `ports`
 * are the host ends of container veths, `src4`/`src6` the (port . MAC . address)
 * each may send from, `macs` (port . MAC) for IPv6 link-local/unspecified sources
 * (NDP, DAD) and ARP probes. A frame from a container port whose source does not
 * match (another container's or any foreign address or MAC, ARP claiming a foreign
 * address, anything not IP/ARP) is dropped before it is bridged or routed. Both
 * tables are replaced in the same transaction.
 */
import type { IP, MAC, Prefix } from "../net/index.ts";
import { stateElements } from "./elements.ts";

export const TABLE_FAMILY = "inet";
export const TABLE_NAME = "berth";
/** The anti-spoofing table: same name, bridge family. */
export const BRIDGE_TABLE_FAMILY = "bridge";

export interface FirewallNetwork {
  bridge: string;
  internal: boolean;
  /** Subnets to masquerade on the way out (empty for internal or routed networks). */
  masquerade: Prefix[];
  /** Subnets in routed gateway mode (no NAT): reachable from outside on their open ports and by ICMP echo. */
  routed?: Prefix[];
}

/** A container port open to routed traffic (a port published on a network in routed gateway mode). */
export interface FirewallOpenPort {
  target: IP;
  protocol: "tcp" | "udp" | "sctp";
  port: number;
}

export interface FirewallPort {
  /** undefined = every host address of the family of `target`. */
  hostIP: IP | undefined;
  protocol: "tcp" | "udp" | "sctp";
  hostPort: number;
  target: IP;
  targetPort: number;
}

/** A container's bridge port (host end of its veth) and the sources it may send from. */
export interface FirewallSource {
  port: string;
  mac: MAC;
  addresses: IP[];
}

export interface FirewallState {
  networks: FirewallNetwork[];
  ports: FirewallPort[];
  /** Anti-spoofing: every container port of a Berth bridge. */
  sources?: FirewallSource[];
  /** Container ports reachable without NAT (routed gateway mode). */
  open?: FirewallOpenPort[];
}

function elements(items: readonly string[] | undefined): string {
  return !items || items.length === 0 ? "" : `elements = { ${items.join(", ")} }`;
}

/** The complete table as an nft script fragment (without the delete/replace wrapper). */
export function renderTable(s: FirewallState): string {
  // the elements come from elements.ts (the incremental updates take theirs from there too). Two of
  // its choices show here: a container reaching its own published port would get the DNATed packet
  // back with its own address as source (a martian), so hairpin4/6 masquerade exactly that
  // (target . target) case, like Docker; and every-address mappings are also in a plain hash map
  // keyed by protocol . port (anyports4/6), looked up first: a lookup in the concatenated interval
  // map (the kernel's pipapo backend) grows with its size (measured: a new connection +200 µs at
  // 10000 mappings), a hash lookup does not
  const el = stateElements(s);
  const e = (set: string) => elements(el.get(`${TABLE_FAMILY} ${set}`));
  const dnat = (fam: 4 | 6) => {
    const ipf = fam === 4 ? "ip" : "ip6";
    // [::1] is served by berthd's userland forwarder: the kernel cannot DNAT IPv6 loopback traffic to a container
    const match = fam === 6 ? "meta nfproto ipv6 meta l4proto { tcp, udp, sctp } ip6 daddr != ::1" : "meta nfproto ipv4 meta l4proto { tcp, udp, sctp }";
    return `${match} fib daddr type local dnat ${ipf} to meta l4proto . th dport map @anyports${fam}
    ${match} fib daddr type local dnat ${ipf} to ${ipf} daddr . meta l4proto . th dport map @ports${fam}`;
  };
  return `table ${TABLE_FAMILY} ${TABLE_NAME} {
  comment "managed by berthd; do not edit"
  set bridges { type ifname; ${e("bridges")} }
  set bridge_pairs { type ifname . ifname; ${e("bridge_pairs")} }
  set internal { type ifname; ${e("internal")} }
  set nat4 { type ipv4_addr; flags interval; auto-merge; ${e("nat4")} }
  set nat6 { type ipv6_addr; flags interval; auto-merge; ${e("nat6")} }
  map ports4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags interval; ${e("ports4")} }
  map ports6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; flags interval; ${e("ports6")} }
  map anyports4 { type inet_proto . inet_service : ipv4_addr . inet_service; ${e("anyports4")} }
  map anyports6 { type inet_proto . inet_service : ipv6_addr . inet_service; ${e("anyports6")} }
  set hairpin4 { type ipv4_addr . ipv4_addr; ${e("hairpin4")} }
  set hairpin6 { type ipv6_addr . ipv6_addr; ${e("hairpin6")} }
  set routed4 { type ipv4_addr; flags interval; auto-merge; ${e("routed4")} }
  set routed6 { type ipv6_addr; flags interval; auto-merge; ${e("routed6")} }
  set open4 { type ipv4_addr . inet_proto . inet_service; ${e("open4")} }
  set open6 { type ipv6_addr . inet_proto . inet_service; ${e("open6")} }
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
    oifname @bridges meta l4proto { tcp, udp, sctp } ip daddr . meta l4proto . th dport @open4 accept
    oifname @bridges meta l4proto { tcp, udp, sctp } ip6 daddr . meta l4proto . th dport @open6 accept
    oifname @bridges ip daddr @routed4 icmp type echo-request accept
    oifname @bridges ip6 daddr @routed6 icmpv6 type echo-request accept
    oifname @bridges drop
  }
}
`;
}

/** The anti-spoofing table (see the top of this file). */
export function renderBridgeTable(s: FirewallState): string {
  const el = stateElements(s);
  const e = (set: string) => elements(el.get(`${BRIDGE_TABLE_FAMILY} ${set}`));
  return `table ${BRIDGE_TABLE_FAMILY} ${TABLE_NAME} {
  comment "managed by berthd; do not edit"
  set ports { type ifname; ${e("ports")} }
  set macs { type ifname . ether_addr; ${e("macs")} }
  set src4 { type ifname . ether_addr . ipv4_addr; ${e("src4")} }
  set src6 { type ifname . ether_addr . ipv6_addr; ${e("src6")} }
  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
    iifname != @ports accept
    ether type ip iifname . ether saddr . ip saddr @src4 accept
    ether type ip6 iifname . ether saddr . ip6 saddr @src6 accept
    ether type ip6 ip6 saddr { ::, fe80::/10 } iifname . ether saddr @macs accept
    ether type arp iifname . arp saddr ether . arp saddr ip @src4 accept
    ether type arp arp saddr ip 0.0.0.0 iifname . arp saddr ether @macs accept
    counter drop
  }
}
`;
}

/**
 * One atomic transaction that replaces both tables with the rendered state:
 * creating each first makes its delete safe when it does not exist yet.
 */
export function renderReplace(s: FirewallState): string {
  const replace = (family: string, table: string) => `add table ${family} ${TABLE_NAME}\ndelete table ${family} ${TABLE_NAME}\n${table}`;
  return `${replace(TABLE_FAMILY, renderTable(s))}${replace(BRIDGE_TABLE_FAMILY, renderBridgeTable(s))}`;
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
