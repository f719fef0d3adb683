/**
 * A LAN segment for macvlan/ipvlan tests: a veth pair whose one end (the network's
 * parent) is in the sandbox host, up and without an address, and whose other end is
 * in a new "external" namespace holding an address of the network's subnet (a
 * router or another machine on the LAN).
 */
import type { Sandbox } from "./sandbox.ts";

function sh(...argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

export interface Segment {
  /** The external namespace. */
  ns: string;
  /** Its address on the segment (without prefix length). */
  ip: string;
}

/**
 * Options: `hairpin` puts the external end on a bridge with hairpin on (a switch that
 * reflects VEPA traffic back); `vlan` puts the address on an 802.1Q sub-interface
 * with that id instead (a trunk port), for parents like `uplink0.30`.
 */
export function addSegment(sb: Sandbox, parent: string, extCidr: string, o: { hairpin?: boolean; vlan?: number } = {}): Segment {
  const ns = sb.netns("seg");
  sh("ip", "-n", sb.host, "link", "add", "name", parent, "type", "veth", "peer", "name", "port0", "netns", ns);
  sh("ip", "-n", sb.host, "link", "set", parent, "up");
  sh("ip", "-n", ns, "link", "set", "port0", "up");
  let dev = "port0";
  if (o.hairpin) {
    sh("ip", "-n", ns, "link", "add", "name", "sw0", "type", "bridge", "stp_state", "0", "forward_delay", "0");
    sh("ip", "-n", ns, "link", "set", "port0", "master", "sw0");
    sh("ip", "-n", ns, "link", "set", "port0", "type", "bridge_slave", "hairpin", "on");
    sh("ip", "-n", ns, "link", "set", "sw0", "up");
    dev = "sw0";
  }
  if (o.vlan !== undefined) {
    sh("ip", "-n", ns, "link", "add", "link", dev, "name", `${dev}.${o.vlan}`, "type", "vlan", "id", String(o.vlan));
    sh("ip", "-n", ns, "link", "set", `${dev}.${o.vlan}`, "up");
    dev = `${dev}.${o.vlan}`;
  }
  sh("ip", "-n", ns, "addr", "add", extCidr, "dev", dev);
  return { ns, ip: extCidr.split("/")[0]! };
}
