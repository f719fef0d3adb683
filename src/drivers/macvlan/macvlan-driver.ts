/**
 * The `macvlan` driver: each endpoint is a macvlan child of the network's parent
 * interface, with its own MAC address, straight on the parent's segment. No
 * bridge, no NAT, no published ports, nothing in Berth's nftables table; the
 * gateway is a router on that segment (not created by Berth).
 *
 * Modes (`-o macvlan_mode=`, Docker's key; per child in the kernel):
 *  - bridge (default): children of one parent reach each other directly and the segment;
 *  - private: children of one parent cannot reach each other, only the segment;
 *  - vepa: child-to-child traffic goes out to the segment and needs a hairpinning switch;
 *  - passthru: the single child takes over the parent (one endpoint per network, and
 *    the parent carries no other macvlan network); setting its MAC sets the parent's,
 *    and the kernel restores the parent's own MAC when the child goes.
 * As with any macvlan, the host itself cannot talk to its children through the parent.
 *
 * Endpoint: the child is created in the host namespace (`mv<id11>`), then `join`
 * moves it into the container, renames it, sets the endpoint's MAC, addresses and
 * the default route via the gateway (none on internal networks).
 */
import { conflict, unavailable } from "../../errors.ts";
import type { MacvlanMode } from "../../dataplane/ipbatch.ts";
import type { EndpointRecord, NetworkRecord } from "../../store/types.ts";
import type { Driver, DriverContext, ExternalSandboxes, Sandbox } from "../driver.ts";
import {
  applyParentPlan,
  childCreateError,
  childrenOf,
  deleteChild,
  joinChild,
  leaveChild,
  type NetworkStore,
  networksOnParent,
  PARENT_FIELD,
  type ParentEndpointState,
  type ParentNetworkState,
  parentOf,
  planParent,
  releaseParent,
  tmpIfname,
} from "../lowerdev.ts";
import { OPT_MACVLAN_MODE, parseMacvlanOptions } from "./options.ts";

export interface MacvlanNetworkState extends ParentNetworkState {
  mode: MacvlanMode;
}

export type MacvlanEndpointState = ParentEndpointState;

export class MacvlanDriver implements Driver, ExternalSandboxes {
  readonly name = "macvlan";
  readonly scope = "local" as const;
  readonly needsAddresses = true;
  private readonly ctx: DriverContext;
  private readonly store: NetworkStore;

  constructor(ctx: DriverContext, store: NetworkStore) {
    this.ctx = ctx;
    this.store = store;
  }

  validateNetwork(net: NetworkRecord): void {
    parseMacvlanOptions(net.options);
  }

  async createNetwork(net: NetworkRecord): Promise<MacvlanNetworkState> {
    const { mode } = parseMacvlanOptions(net.options);
    const { dp } = this.ctx;
    const parent = parentOf(net);
    const peers = await networksOnParent(this.store, net, parent);
    for (const p of peers) {
      if (p.driver !== "macvlan") {
        throw conflict("parent-in-use", `parent ${parent} is used by ${p.driver} network ${p.name}; macvlan and ipvlan cannot share a parent`, PARENT_FIELD);
      }
      const other = (p.driverState as Partial<MacvlanNetworkState>).mode ?? parseMacvlanOptions(p.options).mode;
      if (mode === "passthru" || other === "passthru") {
        throw conflict(
          "parent-in-use",
          `parent ${parent} is used by macvlan network ${p.name} (mode ${other}); a passthru network needs the parent to itself`,
          PARENT_FIELD,
        );
      }
    }
    const plan = await planParent(this.ctx, net, peers, this.name);
    if (!plan.create) {
      // links on the parent that are not (or not yet) in Berth's containers
      for (const c of await childrenOf(dp, dp.hostNs, parent)) {
        if (c.kind === "ipvlan") {
          throw conflict("parent-in-use", `parent ${parent} already has ipvlan link ${c.name}; macvlan and ipvlan cannot share a parent`, PARENT_FIELD);
        }
        if (c.kind === "macvlan" && (mode === "passthru" || c.mode === "passthru")) {
          throw conflict("parent-in-use", `parent ${parent} already has macvlan link ${c.name} (mode ${c.mode}); passthru needs the parent to itself`, PARENT_FIELD);
        }
      }
    }
    if (!(await dp.linkKindSupported("macvlan"))) throw unavailable("macvlan-unsupported", "this kernel cannot create macvlan links", "Driver");
    return { ...(await applyParentPlan(this.ctx, plan)), mode };
  }

  async deleteNetwork(net: NetworkRecord): Promise<void> {
    await releaseParent(this.ctx, this.store, net);
  }

  validateEndpoint(): void {}

  async createEndpoint(net: NetworkRecord, ep: EndpointRecord): Promise<MacvlanEndpointState> {
    const st = net.driverState as MacvlanNetworkState;
    const { dp, faults } = this.ctx;
    if (st.mode === "passthru") {
      const other = (await this.store.endpoints.listByNetwork(net.id)).find((e) => e.id !== ep.id);
      if (other) {
        throw conflict(
          "passthru-single-endpoint",
          `macvlan network ${net.name} is in passthru mode (${OPT_MACVLAN_MODE}): it takes exactly one endpoint, and container ${other.containerId.slice(0, 12)} is connected`,
          "network",
        );
      }
    }
    const tmp = tmpIfname("mv", ep);
    try {
      // the MAC is set at creation too, for runtimes that move the child themselves (passthru inherits the parent's)
      await dp.apply(dp.batch(dp.hostNs).addMacvlan(tmp, st.parent, st.mode, st.mode === "passthru" ? {} : { mac: ep.mac }));
      faults.hit("macvlan.createEndpoint:after-link");
    } catch (e) {
      await dp.deleteLinks(dp.hostNs, [tmp]);
      throw childCreateError(e, "macvlan", st.parent);
    }
    return { tmpIfname: tmp };
  }

  /** The child, still in the host namespace after createEndpoint (an external runtime moves it itself). */
  containerLink(_net: NetworkRecord, ep: EndpointRecord): string {
    return (ep.driverState as ParentEndpointState).tmpIfname;
  }

  async deleteEndpoint(_net: NetworkRecord, ep: EndpointRecord): Promise<void> {
    await deleteChild(this.ctx, ep);
  }

  async join(net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void> {
    const st = ep.driverState as MacvlanEndpointState;
    await joinChild(this.ctx, net, ep, sb, st.tmpIfname, { setMac: true, defaultRoute: "gateway" });
  }

  async leave(_net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void> {
    await leaveChild(this.ctx, ep, sb);
  }
}
