/**
 * `berth trace SRC DST PORT[/proto]`: explains, from Berth's own state and the
 * rules it renders (src/firewall/ruleset.ts), whether a connection is allowed
 * and why, step by step. SRC and DST are container names/ids or IP addresses
 * (an address that is neither a container's nor the host's is "outside").
 */
import { parseBridgeOptions } from "../drivers/bridge/options.ts";
import { invalid } from "../errors.ts";
import { IP, type Protocol } from "../net/index.ts";
import type { ContainerRecord, EndpointRecord, NetworkRecord } from "../store/types.ts";
import type { Controller } from "./controller.ts";

export interface TraceStep {
  at: string;
  note: string;
}

export interface TraceResult {
  verdict: "allowed" | "dropped";
  reason: string;
  steps: TraceStep[];
}

interface Attached {
  net: NetworkRecord;
  ep: EndpointRecord;
}

type Party =
  | { kind: "container"; c: ContainerRecord; attached: Attached[] }
  | { kind: "address"; ip: IP; label: string };

export async function trace(ctl: Controller, src: string, dst: string, port: number, protocol: Protocol): Promise<TraceResult> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid("bad-port", `port ${port} must be 1-65535`, "port");
  const s = await resolve(ctl, src, "src");
  const d = await resolve(ctl, dst, "dst");
  const steps: TraceStep[] = [];
  const done = (verdict: TraceResult["verdict"], reason: string): TraceResult => ({ verdict, reason, steps });
  const bridgeOf = (n: NetworkRecord) => (n.driverState as { bridge?: string }).bridge ?? n.name;
  const iccOf = (n: NetworkRecord) => (n.driverState as { icc?: boolean }).icc !== false;

  if (s.kind === "container" && s.attached.some((a) => a.net.driver === "null")) {
    return done("dropped", `${s.c.name} is on the none network: it has only a loopback interface`);
  }
  if (d.kind === "container" && d.attached.some((a) => a.net.driver === "null")) {
    return done("dropped", `${d.c.name} is on the none network: nothing can reach it`);
  }
  const srcIsHost = s.kind === "container" && s.attached.some((a) => a.net.driver === "host");
  const dstIsHost = d.kind === "container" && d.attached.some((a) => a.net.driver === "host");
  if (srcIsHost && dstIsHost) return done("allowed", "both share the host's network stack");

  // published port on a host address: DNAT first
  const target = d;
  if (d.kind === "address" && (await isHostAddress(ctl, d.ip))) {
    const hit = await publishedTo(ctl, d.ip, port, protocol);
    if (!hit) return done("dropped", `no container publishes ${d.ip}:${port}/${protocol}; the host itself would answer if something listens there`);
    if (d.ip.family === 6 && d.ip.isLoopback()) {
      steps.push({ at: "berthd [::1] forwarder", note: `userland relay [::1]:${port}/${protocol} -> [${hit.addr}]:${hit.port} (the kernel cannot DNAT IPv6 loopback traffic); the container sees the gateway as client` });
      return done("allowed", `published port reaches ${hit.c.name} on ${hit.attached[0]!.net.name} through berthd's forwarder`);
    }
    steps.push({ at: "nat prerouting/output", note: `ports${d.ip.family} map: ${d.ip}:${port}/${protocol} -> ${hit.addr}:${hit.port} (DNAT, client source kept)` });
    steps.push({ at: "forward", note: "ct status dnat accept: published traffic may enter the bridge" });
    return done("allowed", `published port reaches ${hit.c.name} on ${hit.attached[0]!.net.name}`);
  }

  if (s.kind === "container" && target.kind === "container") {
    if (srcIsHost || dstIsHost) {
      const other = srcIsHost ? target : s;
      const routed = other.attached.find((a) => !a.net.internal && a.ep.gateways.length > 0);
      if (!routed) return done("dropped", `${other.c.name} is only on internal networks: the host has no route to it`);
      steps.push({ at: "host routing", note: `the host reaches ${bridgeOf(routed.net)} directly (gateway address on the bridge); no forwarding involved` });
      return done("allowed", `host and ${other.c.name} talk over ${routed.net.name}'s bridge`);
    }
    const shared = s.attached.filter((a) => target.attached.some((b) => b.net.id === a.net.id));
    if (shared.length > 0) {
      const a = shared[0]!;
      if (a.net.driver === "bridge") {
        steps.push({ at: `bridge ${bridgeOf(a.net)}`, note: "both endpoints are ports of one bridge: frames are switched, not routed" });
        if (!iccOf(a.net)) {
          steps.push({ at: `bridge ${bridgeOf(a.net)}`, note: "ports are isolated (enable_icc=false): isolated ports never exchange frames" });
          return done("dropped", `network ${a.net.name} has inter-container communication disabled (icc=false)`);
        }
      } else {
        steps.push({ at: a.net.driver, note: `both endpoints are on ${a.net.driver} network ${a.net.name}` });
      }
      return done("allowed", `both are on network ${a.net.name}`);
    }
    const out = s.attached.find((a) => a.ep.gateways.length > 0 && !a.net.internal);
    if (!out) return done("dropped", `${s.c.name} has no default route (only internal networks): it can reach only its own networks`);
    const into = target.attached[0];
    steps.push({ at: `${s.c.name}`, note: `default route via ${out.ep.gateways[0]} on ${out.net.name}` });
    if (into?.net.internal) {
      steps.push({ at: "inet berth forward", note: `oifname @internal drop (${bridgeOf(into.net)} is internal)` });
      return done("dropped", `network ${into.net.name} is internal: no routed traffic in or out`);
    }
    steps.push({ at: "inet berth forward", note: `iifname @bridges oifname @bridges drop (${bridgeOf(out.net)} -> ${into ? bridgeOf(into.net) : "?"})` });
    return done("dropped", `${s.c.name} and ${target.c.name} share no network: Berth isolates networks from each other`);
  }

  if (s.kind === "container" && target.kind === "address") {
    if (srcIsHost) return done("allowed", "the container uses the host's network stack and its routes");
    const out = s.attached.find((a) => a.ep.gateways.length > 0 && !a.net.internal);
    if (!out) {
      const n = s.attached[0]?.net;
      if (n?.internal) steps.push({ at: "inet berth forward", note: `iifname @internal drop (${bridgeOf(n)})` });
      return done("dropped", `${s.c.name} is only on internal networks: no outbound traffic`);
    }
    steps.push({ at: `${s.c.name}`, note: `default route via ${out.ep.gateways[0]} on ${out.net.name}` });
    steps.push({ at: "inet berth forward", note: "leaving a bridge for a non-Berth interface is not filtered" });
    const fam = target.ip.family;
    const masq = (out.net.options["com.docker.network.bridge.enable_ip_masquerade"] ?? "true") !== "false" && !routedFor(out.net, fam);
    steps.push({
      at: "inet berth postrouting",
      note: masq
        ? `${fam === 4 ? "ip" : "ip6"} saddr @nat${fam} oifname != @bridges masquerade: source becomes the host's address`
        : `no masquerade (${routedFor(out.net, fam) ? `routed gateway mode for IPv${fam}` : "disabled"}): the container address leaves unchanged`,
    });
    return done("allowed", `outbound through ${out.net.name}${masq ? " with masquerade" : ""}`);
  }

  if (s.kind === "address" && target.kind === "container") {
    if (dstIsHost) return done("allowed", `${target.c.name} uses the host's stack: whatever listens on the host answers`);
    const fam = s.ip.family;
    const open = target.attached.find(
      (x) => routedFor(x.net, fam) && x.ep.ports.some((p) => p.containerPort === port && p.protocol === protocol && (!p.hostIP || p.hostIP.family === fam)),
    );
    if (open) {
      steps.push({ at: "inet berth forward", note: `${fam === 4 ? "ip" : "ip6"} daddr . meta l4proto . th dport @open${fam} accept: ${open.net.name} is in routed gateway mode and publishes ${port}/${protocol}` });
      return done("allowed", `${target.c.name} publishes ${port}/${protocol} on routed network ${open.net.name}: reachable at its own address (no NAT)`);
    }
    const a = target.attached[0];
    steps.push({ at: "inet berth forward", note: "oifname @bridges drop: only published (DNATed) or reply traffic enters a bridge from outside" });
    return done("dropped", `${target.c.name} is not reachable at its own address${a ? ` on ${a.net.name}` : ""} from outside; publish a port instead`);
  }
  return done("allowed", "neither side is a Berth container: Berth does not filter this traffic");
}

/** Whether a bridge network runs the family in routed gateway mode (no NAT). */
function routedFor(net: NetworkRecord, fam: 4 | 6): boolean {
  return net.driver === "bridge" && !net.internal && parseBridgeOptions(net.options, net.id).gatewayMode[fam] === "routed";
}

async function resolve(ctl: Controller, ref: string, field: string): Promise<Party> {
  const c = await ctl.store.containers.find(ref);
  if (c) return { kind: "container", c, attached: await attachedOf(ctl, c) };
  const ip = IP.tryParse(ref);
  if (!ip) throw invalid("bad-trace-party", `${field} ${JSON.stringify(ref)} is neither a container nor an IP address`, field);
  for (const x of await ctl.store.containers.list()) {
    const att = await attachedOf(ctl, x);
    if (att.some((a) => a.ep.addresses.some((n) => n.ip.equals(ip)))) return { kind: "container", c: x, attached: att };
  }
  return { kind: "address", ip, label: ref };
}

async function attachedOf(ctl: Controller, c: ContainerRecord): Promise<Attached[]> {
  const out: Attached[] = [];
  for (const ep of await ctl.store.endpoints.listByContainer(c.id)) {
    const net = await ctl.store.networks.get(ep.networkId);
    if (net) out.push({ net, ep });
  }
  return out;
}

async function isHostAddress(ctl: Controller, ip: IP): Promise<boolean> {
  if (ip.isLoopback()) return true;
  return (await ctl.dp.addresses(ctl.dp.hostNs)).some((a) => a.addr.ip.equals(ip));
}

async function publishedTo(ctl: Controller, hostIP: IP, port: number, protocol: Protocol) {
  for (const c of await ctl.store.containers.list()) {
    const attached = await attachedOf(ctl, c);
    for (const a of attached) {
      for (const p of a.ep.ports) {
        if (p.hostPort !== port || p.protocol !== protocol) continue;
        if (p.hostIP && !p.hostIP.isUnspecified() && !p.hostIP.equals(hostIP)) continue;
        if (p.hostIP && p.hostIP.family !== hostIP.family) continue;
        // routed mode publishes the container port itself, not a host port
        if (routedFor(a.net, hostIP.family)) continue;
        const addr = a.ep.addresses.find((x) => x.ip.family === hostIP.family)?.ip;
        if (addr) return { c, attached: [a], addr, port: p.containerPort };
      }
    }
  }
  return undefined;
}
