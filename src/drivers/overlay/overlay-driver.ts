/**
 * The `overlay` driver (scope global): one subnet spanning hosts. On each host
 * that has endpoints of the network: a bridge `bo<id12>` with a VXLAN device
 * `vx<id12>` as a port (the network's VNI, UDP 4789, from the host's advertise
 * address over its underlay device, no learning, ARP/ND proxy), and a veth per
 * endpoint like the bridge driver. The VXLAN device's forwarding entries (remote
 * MAC -> remote VTEP, remote IP -> MAC) are programmed by the agent
 * (agent.ts) from the shared endpoint registry. The bridge has no address:
 * containers leave through their host's gateway bridge (the controller attaches
 * them to it, see GatewayBridged), so two overlays never meet on a host.
 *
 * Needs a multi-host store and an advertise address (`OverlayCluster`). Through
 * Docker's remote driver the container end is handed to dockerd (ExternalSandboxes).
 */
import { prepareContainerInterface } from "../container-iface.ts";
import { conflict, invalid, systemError, unavailable } from "../../errors.ts";
import type { IP } from "../../net/index.ts";
import type { EndpointRecord, NetworkRecord, Store } from "../../store/types.ts";
import type { Driver, DriverContext, DriverState, ExternalSandboxes, GatewayBridged, Sandbox } from "../driver.ts";
import { bridgeName, FIRST_VNI, MAX_VNI, OPT_MTU, OPT_VNI, parseOverlayOptions, VXLAN_OVERHEAD, VXLAN_PORT, vxlanName } from "./options.ts";

/** What the overlay needs to know about the cluster: who this host is and who is alive. */
export interface OverlayCluster {
  readonly host: string;
  /** This host's underlay (VTEP) address. */
  readonly advertise: IP;
  /** Live hosts and their VTEP addresses; throws when the registry cannot be read. */
  liveHosts(): Promise<Map<string, IP>>;
  /** Calls `cb` whenever shared state may have changed (and after reconnects). */
  onChange(cb: () => void): void;
}

export interface OverlayNetworkState extends DriverState {
  vni: number;
  mtu: number;
  bridge: string;
  vxlan: string;
}

export interface OverlayEndpointState extends DriverState {
  hostIfname: string;
  peerIfname: string;
}

const vniKey = (vni: number): string => `overlay.vni.${vni}`;

export class OverlayDriver implements Driver, GatewayBridged, ExternalSandboxes {
  readonly name = "overlay";
  readonly scope = "global" as const;
  readonly needsAddresses = true;

  constructor(
    private readonly ctx: DriverContext,
    private readonly store: Store,
    readonly cluster: OverlayCluster | undefined,
  ) {}

  private get host(): string | null {
    return this.ctx.dp.hostNs;
  }

  private requireCluster(): OverlayCluster {
    if (!this.cluster) {
      throw unavailable(
        "overlay-needs-cluster",
        "overlay networks need a shared store and this host's underlay address: start berthd with --store etcd://HOST:PORT --advertise-addr IP",
        "Driver",
      );
    }
    return this.cluster;
  }

  needsGatewayBridge(net: NetworkRecord): boolean {
    return !net.internal;
  }

  validateNetwork(net: NetworkRecord): void {
    parseOverlayOptions(net.options);
    this.requireCluster();
    if (net.ipam.pools.length === 0) throw invalid("no-subnet", "an overlay network needs at least one subnet", "IPAM.Config");
  }

  /** The device holding the advertise address in the host namespace, and its MTU. */
  async underlay(): Promise<{ dev: string; mtu: number }> {
    const c = this.requireCluster();
    const a = (await this.ctx.dp.addresses(this.host)).find((x) => x.addr.ip.equals(c.advertise));
    if (!a) {
      throw unavailable("no-underlay", `advertise address ${c.advertise} is not on any interface of this host`, "advertise-addr");
    }
    const l = await this.ctx.dp.link(this.host, a.dev);
    if (!l) throw systemError("no-underlay", `underlay interface ${a.dev} vanished`);
    return { dev: a.dev, mtu: l.mtu };
  }

  async createNetwork(net: NetworkRecord): Promise<OverlayNetworkState> {
    const opts = parseOverlayOptions(net.options);
    const under = await this.underlay();
    const mtu = opts.mtu ?? under.mtu - VXLAN_OVERHEAD;
    const vni = await this.store.transaction(async (tx) => {
      if (opts.vni !== undefined) {
        const holder = await tx.meta.get(vniKey(opts.vni));
        if (holder !== undefined && holder !== net.id) {
          throw conflict("vni-in-use", `VXLAN id ${opts.vni} is used by another overlay network`, `Options.${OPT_VNI}`);
        }
        await tx.meta.set(vniKey(opts.vni), net.id);
        return opts.vni;
      }
      for (let v = FIRST_VNI; v <= MAX_VNI; v++) {
        if ((await tx.meta.get(vniKey(v))) === undefined) {
          await tx.meta.set(vniKey(v), net.id);
          return v;
        }
      }
      throw unavailable("no-vni", "no free VXLAN id");
    });
    // like Docker, the chosen VNI and MTU become the network's options (inspect shows them; every host uses them)
    net.options[OPT_VNI] = String(vni);
    net.options[OPT_MTU] = String(mtu);
    return { vni, mtu, bridge: bridgeName(net.id), vxlan: vxlanName(net.id) };
  }

  async deleteNetwork(net: NetworkRecord): Promise<void> {
    const st = net.driverState as Partial<OverlayNetworkState>;
    const errors = await this.removeLocal(net.id);
    if (st.vni !== undefined) {
      await this.store.transaction(async (tx) => {
        if ((await tx.meta.get(vniKey(st.vni ?? 0))) === net.id) await tx.meta.delete(vniKey(st.vni ?? 0));
      });
    }
    if (errors[0]) throw errors[0];
  }

  /** Removes this host's bridge and VXLAN device of a network (idempotent). */
  removeLocal(networkId: string): Promise<Error[]> {
    return this.ctx.dp.deleteLinks(this.host, [vxlanName(networkId), bridgeName(networkId)]);
  }

  /** Creates this host's bridge + VXLAN device of the network unless they exist. */
  async ensureLocal(net: NetworkRecord): Promise<void> {
    const st = net.driverState as OverlayNetworkState;
    const { dp } = this.ctx;
    const [br, vx] = await Promise.all([dp.link(this.host, st.bridge), dp.link(this.host, st.vxlan)]);
    if (br && vx && vx.master === st.bridge && br.up && vx.up) return;
    const c = this.requireCluster();
    const under = await this.underlay();
    const b = dp.batch(this.host);
    if (!br) b.addBridge(st.bridge, { mtu: st.mtu });
    if (!vx) b.addVxlan(st.vxlan, { vni: st.vni, local: c.advertise, dev: under.dev, dstport: VXLAN_PORT, mtu: st.mtu, proxy: true });
    b.setMaster(st.vxlan, st.bridge).setUp(st.vxlan).setUp(st.bridge);
    try {
      await dp.apply(b);
    } catch (e) {
      // a concurrent connect on this host may have made them first
      const [br2, vx2] = await Promise.all([dp.link(this.host, st.bridge), dp.link(this.host, st.vxlan)]);
      if (!(br2 && vx2 && vx2.master === st.bridge)) throw e;
    }
  }

  validateEndpoint(net: NetworkRecord, ep: EndpointRecord): void {
    if (ep.ports.length > 0) throw invalid("ports-unsupported", `overlay network ${net.name} cannot publish ports`, "ports");
  }

  async createEndpoint(net: NetworkRecord, ep: EndpointRecord): Promise<OverlayEndpointState> {
    const st = net.driverState as OverlayNetworkState;
    await this.ensureLocal(net);
    const hostIfname = `vo${ep.id.slice(0, 11)}`;
    const peerIfname = `vp${ep.id.slice(0, 11)}`;
    const { dp } = this.ctx;
    const b = dp
      .batch(this.host)
      .addVeth(hostIfname, peerIfname, { mtu: st.mtu, peerMac: ep.mac })
      .setMaster(hostIfname, st.bridge)
      .setUp(hostIfname);
    try {
      await dp.apply(b);
    } catch (e) {
      await dp.deleteLinks(this.host, [hostIfname]);
      throw e;
    }
    return { hostIfname, peerIfname };
  }

  /**
   * For dockerd (remote driver): the container end, still in the host namespace
   * after createEndpoint. Join gives Docker no gateway, so Docker attaches the
   * container to its own docker_gwbridge for the way out, as with its overlay.
   */
  containerLink(_net: NetworkRecord, ep: EndpointRecord): string {
    return (ep.driverState as OverlayEndpointState).peerIfname;
  }

  async deleteEndpoint(_net: NetworkRecord, ep: EndpointRecord): Promise<void> {
    const st = ep.driverState as Partial<OverlayEndpointState>;
    const names = st.hostIfname ? [st.hostIfname] : [`vo${ep.id.slice(0, 11)}`];
    const errors = await this.ctx.dp.deleteLinks(this.host, names);
    if (errors[0]) throw errors[0];
  }

  async join(_net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void> {
    const st = ep.driverState as OverlayEndpointState;
    const { dp } = this.ctx;
    dp.requireNetns(sb.netns);
    if (await dp.link(sb.netns, ep.ifname)) {
      throw conflict("ifname-in-use", `interface ${ep.ifname} already exists in the container`, "ifname");
    }
    await dp.apply(dp.batch(this.host).moveToNetns(st.peerIfname, sb.netns));
    try {
      await prepareContainerInterface(dp, sb.netns, st.peerIfname, ep);
      // no default route here: the gateway bridge endpoint provides it
      const b = dp.batch(sb.netns).rename(st.peerIfname, ep.ifname);
      for (const a of ep.addresses) b.addAddress(ep.ifname, a, { noDad: true });
      b.setUp(ep.ifname);
      await dp.apply(b);
    } catch (e) {
      await dp.deleteLinks(sb.netns, [st.peerIfname, ep.ifname]);
      throw e;
    }
  }

  async leave(_net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void> {
    const st = ep.driverState as Partial<OverlayEndpointState>;
    if (!this.ctx.dp.netnsExists(sb.netns)) return;
    const errors = await this.ctx.dp.deleteLinks(sb.netns, [ep.ifname, ...(st.peerIfname ? [st.peerIfname] : [])]);
    if (errors[0]) throw errors[0];
  }
}
