/**
 * The `bridge` driver: one Linux bridge per network in the host namespace, the
 * gateway address on the bridge, one veth pair per endpoint (host end enslaved
 * to the bridge, container end renamed to the requested ifname inside the
 * container's namespace), a default route via the gateway, masquerade for
 * outbound traffic, published ports and isolation through Berth's nftables
 * table (rendered by the controller from the store).
 */
import { prepareContainerInterface } from "../container-iface.ts";
import { conflict, invalid } from "../../errors.ts";
import { IPNet } from "../../net/index.ts";
import type { EndpointRecord, NetworkRecord } from "../../store/types.ts";
import type {
  Driver,
  DriverContext,
  DriverState,
  ExternalSandboxes,
  LinkSnapshot,
  PortPublishing,
  Reconcilable,
  Sandbox,
} from "../driver.ts";
import { parseBridgeOptions } from "./options.ts";

export interface BridgeNetworkState extends DriverState {
  bridge: string;
  mtu: number;
  icc: boolean;
}

export interface BridgeEndpointState extends DriverState {
  hostIfname: string;
  peerIfname: string;
  /** The container end was created inside the sandbox (join renames it there; no move). */
  peerInSandbox?: boolean;
}

export class BridgeDriver implements Driver, PortPublishing, Reconcilable, ExternalSandboxes {
  readonly name = "bridge";
  readonly scope = "local" as const;
  readonly needsAddresses = true;
  readonly publishesPorts = true;
  private readonly ctx: DriverContext;

  constructor(ctx: DriverContext) {
    this.ctx = ctx;
  }

  private get host(): string | null {
    return this.ctx.dp.hostNs;
  }

  validateNetwork(net: NetworkRecord): void {
    parseBridgeOptions(net.options, net.id);
    if (net.ipam.pools.length === 0) throw invalid("no-subnet", "a bridge network needs at least one subnet", "IPAM.Config");
  }

  async createNetwork(net: NetworkRecord): Promise<BridgeNetworkState> {
    const opts = parseBridgeOptions(net.options, net.id);
    const { dp, faults } = this.ctx;
    if (await dp.link(this.host, opts.bridgeName)) {
      throw conflict("bridge-exists", `interface ${opts.bridgeName} already exists on the host`, "Options.com.docker.network.bridge.name");
    }
    try {
      await this.addBridge(net, opts.bridgeName, opts.mtu);
      faults.hit("bridge.createNetwork:after-link");
      const sysctls: Record<string, string | number> = { "net.ipv4.ip_forward": 1 };
      // 127.0.0.1 published ports: locally generated packets keep their loopback source until masqueraded
      sysctls[`net.ipv4.conf.${opts.bridgeName}.route_localnet`] = 1;
      if (net.enableIPv6) sysctls["net.ipv6.conf.all.forwarding"] = 1;
      await dp.sysctlSet(this.host, sysctls);
    } catch (e) {
      await dp.deleteLinks(this.host, [opts.bridgeName]);
      throw e;
    }
    return { bridge: opts.bridgeName, mtu: opts.mtu, icc: opts.icc };
  }

  private async addBridge(net: NetworkRecord, name: string, mtu: number): Promise<void> {
    let b = this.ctx.dp.batch(this.host).addBridge(name, { mtu });
    if (net.ipam.pools.some((p) => p.subnet.family === 6)) {
      // no DAD on the bridge's link-local address either: the kernel sends a neighbour solicitation
      // for a forwarded packet only from a valid link-local address, so while it is tentative (~1-2 s)
      // traffic routed into the network (published ports, routed mode) would wait for it
      await this.ctx.dp.apply(b);
      await this.ctx.dp.sysctlSet(this.host, { [`net.ipv6.conf.${name.replaceAll(".", "/")}.accept_dad`]: 0 });
      b = this.ctx.dp.batch(this.host);
    }
    if (!net.internal) {
      for (const pool of net.ipam.pools) {
        if (pool.gateway) b.addAddress(name, IPNet.of(pool.gateway, pool.subnet.length), { noDad: true });
      }
    }
    b.setUp(name);
    await this.ctx.dp.apply(b);
  }

  // ---------- reconcile ----------

  checkNetwork(net: NetworkRecord, links: ReadonlyMap<string, LinkSnapshot>): string[] {
    const st = net.driverState as Partial<BridgeNetworkState>;
    if (!st.bridge) return [];
    const l = links.get(st.bridge);
    if (!l) return [`bridge ${st.bridge} is missing`];
    if (l.kind !== "bridge") return [`${st.bridge} is a ${l.kind ?? "plain"} link, not a bridge`];
    return l.up ? [] : [`bridge ${st.bridge} is down`];
  }

  async repairNetwork(net: NetworkRecord): Promise<void> {
    const st = net.driverState as BridgeNetworkState;
    const l = await this.ctx.dp.link(this.host, st.bridge);
    if (!l) {
      await this.addBridge(net, st.bridge, st.mtu);
      await this.ctx.dp.sysctlSet(this.host, { "net.ipv4.ip_forward": 1, [`net.ipv4.conf.${st.bridge}.route_localnet`]: 1 });
    } else if (l.kind === "bridge" && !l.up) {
      await this.ctx.dp.apply(this.ctx.dp.batch(this.host).setUp(st.bridge));
    }
  }

  checkEndpoint(net: NetworkRecord, ep: Readonly<EndpointRecord>, links: ReadonlyMap<string, LinkSnapshot>): string[] {
    const nst = net.driverState as Partial<BridgeNetworkState>;
    const st = ep.driverState as Partial<BridgeEndpointState>;
    if (!st.hostIfname || !nst.bridge) return [];
    const l = links.get(st.hostIfname);
    if (!l) return [`veth ${st.hostIfname} of container ${ep.containerId.slice(0, 12)} is missing`];
    if (l.master !== nst.bridge) return [`veth ${st.hostIfname} is not attached to ${nst.bridge}`];
    return l.up ? [] : [`veth ${st.hostIfname} is down`];
  }

  async repairEndpoint(net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void> {
    const { dp } = this.ctx;
    const nst = net.driverState as BridgeNetworkState;
    const st = ep.driverState as BridgeEndpointState;
    const l = await dp.link(this.host, st.hostIfname);
    if (l) {
      await dp.apply(
        dp.batch(this.host).setMaster(st.hostIfname, nst.bridge).setHairpin(st.hostIfname, true).setIsolated(st.hostIfname, nst.icc === false).setUp(st.hostIfname),
      );
      return;
    }
    // the pair is gone (deleting either end deletes both): remove any remnant in the container, then rebuild
    if (!dp.netnsExists(sb.netns)) return;
    await dp.deleteLinks(sb.netns, [ep.ifname, st.peerIfname]);
    ep.driverState = await this.createEndpoint(net, ep, sb);
    await this.join(net, ep, sb);
  }

  async deleteNetwork(net: NetworkRecord): Promise<void> {
    const st = net.driverState as Partial<BridgeNetworkState>;
    // a create interrupted by a crash (record still marked) may have made the bridge before recording it
    const bridge = st.bridge ?? (net.pending === "create" ? parseBridgeOptions(net.options, net.id).bridgeName : undefined);
    if (!bridge) return;
    const errors = await this.ctx.dp.deleteLinks(this.host, [bridge]);
    if (errors[0]) throw errors[0];
  }

  validateEndpoint(net: NetworkRecord, ep: EndpointRecord): void {
    if (net.internal && ep.ports.length > 0) {
      throw invalid("ports-internal", `network ${net.name} is internal: it cannot publish ports`, "ports");
    }
  }

  async createEndpoint(net: NetworkRecord, ep: EndpointRecord, sb?: Sandbox): Promise<BridgeEndpointState> {
    const st = net.driverState as BridgeNetworkState;
    const { hostIfname, peerIfname } = vethNames(ep);
    const { dp, faults } = this.ctx;
    if (sb) dp.requireNetns(sb.netns);
    const b = dp
      .batch(this.host)
      .addVeth(hostIfname, peerIfname, { mtu: st.mtu, peerMac: ep.mac, ...(sb ? { peerNetns: sb.netns } : {}) })
      .setMaster(hostIfname, st.bridge)
      .setHairpin(hostIfname, true)
      .setIsolated(hostIfname, st.icc === false)
      .setUp(hostIfname);
    try {
      await dp.apply(b);
      faults.hit("bridge.createEndpoint:after-veth");
    } catch (e) {
      await dp.deleteLinks(this.host, [hostIfname]);
      throw e;
    }
    return { hostIfname, peerIfname, ...(sb ? { peerInSandbox: true } : {}) };
  }

  /** The container end of the veth pair, still in the host namespace after createEndpoint. */
  containerLink(_net: NetworkRecord, ep: EndpointRecord): string {
    return (ep.driverState as BridgeEndpointState).peerIfname;
  }

  async deleteEndpoint(_net: NetworkRecord, ep: EndpointRecord): Promise<void> {
    const st = ep.driverState as Partial<BridgeEndpointState>;
    // a connect interrupted by a crash may have made the pair before recording it: the names follow from the id
    const hostIfname = st.hostIfname ?? (ep.pending === "connect" ? vethNames(ep).hostIfname : undefined);
    if (!hostIfname) return;
    const errors = await this.ctx.dp.deleteLinks(this.host, [hostIfname]);
    if (errors[0]) throw errors[0];
  }

  async join(net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void> {
    const st = ep.driverState as BridgeEndpointState;
    const { dp, faults } = this.ctx;
    dp.requireNetns(sb.netns);
    // the container's first network with a gateway provides its default route (like Docker)
    const needDefault = new Set<4 | 6>();
    const gwFams = net.internal ? [] : ([4, 6] as const).filter((f) => ep.gateways.some((g) => g.family === f));
    // one `ip` process answers both "is the name free" and the first family's "is there a default route"
    const probe = await dp.linkAndDefaultRoute(sb.netns, ep.ifname, gwFams[0] ?? 4);
    if (probe.linkExists) {
      throw conflict("ifname-in-use", `interface ${ep.ifname} already exists in the container`, "ifname");
    }
    if (gwFams[0] !== undefined && !probe.hasDefault) needDefault.add(gwFams[0]);
    for (const fam of gwFams.slice(1)) {
      if (!(await dp.routes(sb.netns, fam)).some((r) => r.dst === "default")) needDefault.add(fam);
    }
    if (!st.peerInSandbox) await dp.apply(dp.batch(this.host).moveToNetns(st.peerIfname, sb.netns));
    try {
      faults.hit("bridge.join:after-move");
      await prepareContainerInterface(dp, sb.netns, st.peerIfname, ep);
      const b = dp.batch(sb.netns).rename(st.peerIfname, ep.ifname);
      for (const a of ep.addresses) b.addAddress(ep.ifname, a, { noDad: true });
      b.setUp(ep.ifname);
      for (const g of ep.gateways) if (needDefault.has(g.family)) b.addRoute({ family: g.family, via: g, dev: ep.ifname });
      await dp.apply(b);
      faults.hit("bridge.join:after-configure");
    } catch (e) {
      // deleting either end removes the pair; the host end is deleted by deleteEndpoint
      await dp.deleteLinks(sb.netns, [st.peerIfname, ep.ifname]);
      throw e;
    }
  }

  async leave(_net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void> {
    const st = ep.driverState as Partial<BridgeEndpointState>;
    if (!this.ctx.dp.netnsExists(sb.netns)) return;
    const peer = st.peerIfname ?? (ep.pending === "connect" ? vethNames(ep).peerIfname : undefined);
    const errors = await this.ctx.dp.deleteLinks(sb.netns, [ep.ifname, ...(peer ? [peer] : [])]);
    if (errors[0]) throw errors[0];
  }
}

/** The veth pair of an endpoint: both names follow from the endpoint id. */
function vethNames(ep: EndpointRecord): BridgeEndpointState {
  return { hostIfname: `vb${ep.id.slice(0, 11)}`, peerIfname: `vc${ep.id.slice(0, 11)}` };
}
