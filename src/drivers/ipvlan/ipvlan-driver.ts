/**
 * The `ipvlan` driver: each endpoint is an ipvlan child of the network's parent
 * interface. Children share the parent's MAC address (the endpoint record is
 * updated to it) and are told apart by IP address. No bridge, no NAT, no
 * published ports, nothing in Berth's nftables table.
 *
 * Modes (`-o ipvlan_mode=`, Docker's key): l2 (default; ARP on the segment,
 * default route via the gateway), l3 and l3s (routed by the parent; no ARP, no
 * broadcast; default route straight through the device, no gateway). Flags
 * (`-o ipvlan_flag=`): bridge (default), private, vepa.
 *
 * The kernel keeps the mode and flags per PARENT, not per child: creating a
 * child with another mode silently switches every other child of that parent.
 * So createNetwork refuses (conflict) a network whose mode or flag differs from
 * another Berth ipvlan network on the same parent, or from ipvlan links already
 * on it; and macvlan and ipvlan cannot share a parent at all.
 *
 * Endpoint: the child is created in the host namespace (`iv<id11>`), then `join`
 * moves it into the container, renames it, adds the addresses and the default
 * route (none on internal networks).
 */
import { conflict, unavailable } from "../../errors.ts";
import type { IpvlanFlag, IpvlanMode } from "../../dataplane/ipbatch.ts";
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
import { OPT_IPVLAN_FLAG, OPT_IPVLAN_MODE, parseIpvlanOptions } from "./options.ts";

export interface IpvlanNetworkState extends ParentNetworkState {
  mode: IpvlanMode;
  flag: IpvlanFlag;
}

export type IpvlanEndpointState = ParentEndpointState;

export class IpvlanDriver implements Driver, ExternalSandboxes {
  readonly name = "ipvlan";
  readonly scope = "local" as const;
  readonly needsAddresses = true;
  private readonly ctx: DriverContext;
  private readonly store: NetworkStore;

  constructor(ctx: DriverContext, store: NetworkStore) {
    this.ctx = ctx;
    this.store = store;
  }

  validateNetwork(net: NetworkRecord): void {
    parseIpvlanOptions(net.options);
  }

  async createNetwork(net: NetworkRecord): Promise<IpvlanNetworkState> {
    const { mode, flag } = parseIpvlanOptions(net.options);
    const { dp } = this.ctx;
    const parent = parentOf(net);
    const peers = await networksOnParent(this.store, net, parent);
    const mismatch = (name: string, m: string | undefined, f: string | undefined) => {
      if (m !== undefined && m !== mode) {
        return conflict(
          "ipvlan-mode-conflict",
          `parent ${parent} already carries ${name} in ipvlan mode ${m}; the kernel keeps one mode per parent (creating ${mode} would switch it), so use mode ${m} or another parent`,
          `Options.${OPT_IPVLAN_MODE}`,
        );
      }
      if (f !== undefined && f !== flag) {
        return conflict(
          "ipvlan-mode-conflict",
          `parent ${parent} already carries ${name} with ipvlan flag ${f}; the kernel keeps one flag per parent, so use ${f} or another parent`,
          `Options.${OPT_IPVLAN_FLAG}`,
        );
      }
      return undefined;
    };
    for (const p of peers) {
      if (p.driver !== "ipvlan") {
        throw conflict("parent-in-use", `parent ${parent} is used by ${p.driver} network ${p.name}; macvlan and ipvlan cannot share a parent`, PARENT_FIELD);
      }
      const o = p.driverState as Partial<IpvlanNetworkState>;
      const po = o.mode && o.flag ? { mode: o.mode, flag: o.flag } : parseIpvlanOptions(p.options);
      const err = mismatch(`ipvlan network ${p.name}`, po.mode, po.flag);
      if (err) throw err;
    }
    const plan = await planParent(this.ctx, net, peers, this.name);
    if (!plan.create) {
      // links on the parent that are not (or not yet) in Berth's containers
      for (const c of await childrenOf(dp, dp.hostNs, parent)) {
        if (c.kind === "macvlan") {
          throw conflict("parent-in-use", `parent ${parent} already has macvlan link ${c.name}; macvlan and ipvlan cannot share a parent`, PARENT_FIELD);
        }
        if (c.kind === "ipvlan") {
          const err = mismatch(`ipvlan link ${c.name}`, c.mode, c.flag);
          if (err) throw err;
        }
      }
    }
    // the user's input first (parent, conflicts), then what this kernel can do
    if (!(await dp.linkKindSupported("ipvlan"))) {
      throw unavailable("ipvlan-unsupported", "this kernel cannot create ipvlan links (no ipvlan module); use the macvlan or bridge driver", "Driver");
    }
    return { ...(await applyParentPlan(this.ctx, plan)), mode, flag };
  }

  async deleteNetwork(net: NetworkRecord): Promise<void> {
    await releaseParent(this.ctx, this.store, net);
  }

  validateEndpoint(): void {}

  async createEndpoint(net: NetworkRecord, ep: EndpointRecord): Promise<IpvlanEndpointState> {
    const st = net.driverState as IpvlanNetworkState;
    const { dp, faults } = this.ctx;
    const tmp = tmpIfname("iv", ep);
    try {
      await dp.apply(dp.batch(dp.hostNs).addIpvlan(tmp, st.parent, st.mode, st.flag));
      faults.hit("ipvlan.createEndpoint:after-link");
      // ipvlan children carry the parent's MAC and cannot change it: record the real one
      const l = await dp.link(dp.hostNs, tmp);
      if (l?.mac) ep.mac = l.mac;
    } catch (e) {
      await dp.deleteLinks(dp.hostNs, [tmp]);
      throw childCreateError(e, "ipvlan", st.parent);
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
    const st = ep.driverState as IpvlanEndpointState;
    const nst = net.driverState as IpvlanNetworkState;
    await joinChild(this.ctx, net, ep, sb, st.tmpIfname, { setMac: false, defaultRoute: nst.mode === "l2" ? "gateway" : "device" });
  }

  async leave(_net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void> {
    await leaveChild(this.ctx, ep, sb);
  }
}
