/**
 * What the macvlan and ipvlan drivers have in common (drivers never import each
 * other, so it lives here): the parent ("lower") device of a network and the
 * life of an endpoint's child link.
 *
 * Parent (Docker's `-o parent=`):
 *  - an existing interface of the host namespace is used as it is (never changed);
 *  - `eth0.10` that does not exist yet is created as an 802.1Q sub-interface of
 *    `eth0` (VLAN 10), or refused with `unavailable` when the kernel has no vlan
 *    support;
 *  - no parent at all: a dummy device `dm-<id12>` is created (an isolated
 *    network, like Docker), or refused with `unavailable` without dummy support;
 *  - a parent Berth created is deleted with the last Berth network using it.
 *
 * Endpoint: `createEndpoint` makes the child in the host namespace under a
 * temporary name, `join` moves it into the container, renames it to the
 * requested ifname and configures it; `leave`/`deleteEndpoint` delete it
 * wherever it is (missing is success).
 */
import { prepareContainerInterface } from "./container-iface.ts";
import type { Dataplane, LinkKindInfo, ProbedLinkKind } from "../dataplane/dataplane.ts";
import { BerthError, conflict, invalid, notFound, unavailable } from "../errors.ts";
import { validateIfName } from "../net/index.ts";
import type { EndpointRecord, NetworkRecord, Store } from "../store/types.ts";
import type { DriverContext, Sandbox } from "./driver.ts";

export const OPT_PARENT = "parent";
export const PARENT_FIELD = `Options.${OPT_PARENT}`;
/** Drivers whose networks hang off a parent device. */
export const PARENT_DRIVERS: readonly string[] = ["macvlan", "ipvlan"];

/** The read access to the store the two drivers need (other networks on a parent, endpoint counts). */
export type NetworkStore = Pick<Store, "networks" | "endpoints">;

export interface ParentNetworkState {
  [k: string]: unknown;
  parent: string;
  /** Berth created the parent; it is deleted with the last Berth network on it. */
  createdParent?: "vlan" | "dummy";
}

export interface ParentEndpointState {
  [k: string]: unknown;
  /** The child's name in the host namespace until `join` renames it inside the container. */
  tmpIfname: string;
}

export type ParentPlan =
  | { parent: string; create?: undefined; inherited?: "vlan" | "dummy" }
  | { parent: string; create: { kind: "vlan"; base: string; id: number } | { kind: "dummy" } };

/** Syntax of the parent option (pure: for validateNetwork). Returns undefined when none was given. */
export function parentOption(options: Record<string, string>): string | undefined {
  const p = options[OPT_PARENT];
  if (p === undefined || p === "") return undefined;
  validateIfName(p, PARENT_FIELD);
  if (p === "lo") throw invalid("bad-parent", `the loopback interface cannot be the parent of a network`, PARENT_FIELD);
  return p;
}

/** Rejects option keys other than `known` (with Docker's key names in the message). */
export function rejectUnknownOptions(driver: string, options: Record<string, string>, known: readonly string[]): void {
  for (const k of Object.keys(options)) {
    if (!known.includes(k)) {
      throw invalid("unknown-option", `unknown ${driver} option ${JSON.stringify(k)}; known: ${known.join(", ")}`, `Options.${k}`);
    }
  }
}

export function oneOf<T extends string>(driver: string, options: Record<string, string>, key: string, allowed: readonly T[], dflt: T): T {
  const v = options[key];
  if (v === undefined || v === "") return dflt;
  if (!(allowed as readonly string[]).includes(v)) {
    throw invalid("bad-option", `${driver} option ${key}=${JSON.stringify(v)} is not one of ${allowed.join(", ")}`, `Options.${key}`);
  }
  return v as T;
}

export function dummyParentName(networkId: string): string {
  return `dm-${networkId.slice(0, 12)}`;
}

/** The parent a (possibly half-created) macvlan/ipvlan network uses. */
export function parentOf(n: NetworkRecord): string {
  const st = n.driverState as Partial<ParentNetworkState>;
  return st.parent ?? (n.options[OPT_PARENT] || dummyParentName(n.id));
}

/** The other Berth macvlan/ipvlan networks on `parent`. */
export async function networksOnParent(store: NetworkStore, self: NetworkRecord, parent: string): Promise<NetworkRecord[]> {
  return (await store.networks.list()).filter((n) => n.id !== self.id && PARENT_DRIVERS.includes(n.driver) && parentOf(n) === parent);
}

/** Links of the host namespace whose lower device is `parent` (children visible there: not yet moved, or not Berth's). */
export async function childrenOf(dp: Dataplane, host: string | null, parent: string): Promise<LinkKindInfo[]> {
  return (await dp.linkKinds(host)).filter((l) => l.parent === parent);
}

async function requireKind(dp: Dataplane, kind: ProbedLinkKind, why: string): Promise<void> {
  if (!(await dp.linkKindSupported(kind))) {
    throw unavailable(`${kind}-unsupported`, `this kernel cannot create ${kind} links: ${why}`, PARENT_FIELD);
  }
}

/**
 * Works out the parent of a new network without changing anything: not-found
 * for an unknown interface, unavailable when it would need a vlan or dummy link
 * the kernel cannot make.
 */
export async function planParent(ctx: DriverContext, net: NetworkRecord, peers: NetworkRecord[], driver: string): Promise<ParentPlan> {
  const { dp } = ctx;
  const host = dp.hostNs;
  const given = parentOption(net.options);
  const parent = given ?? dummyParentName(net.id);
  const existing = await dp.link(host, parent);
  if (existing) {
    // a parent Berth created for another network stays Berth's: the last network on it deletes it
    const owned = peers.map((p) => (p.driverState as Partial<ParentNetworkState>).createdParent).find((c) => c !== undefined);
    return owned ? { parent, inherited: owned } : { parent };
  }
  if (given === undefined) {
    await requireKind(dp, "dummy", `a ${driver} network without -o parent needs a dummy parent device; name an existing interface with -o parent=IFACE`);
    return { parent, create: { kind: "dummy" } };
  }
  const m = /^(.+)\.(\d+)$/.exec(given);
  if (!m) {
    throw notFound("parent-not-found", `parent interface ${JSON.stringify(given)} does not exist in the host namespace`, PARENT_FIELD);
  }
  const base = m[1]!;
  const id = Number(m[2]);
  if (!(await dp.link(host, base))) {
    throw notFound(
      "parent-not-found",
      `parent interface ${JSON.stringify(given)} does not exist, and neither does ${JSON.stringify(base)} to create it on as VLAN ${id}`,
      PARENT_FIELD,
    );
  }
  if (id < 1 || id > 4094) {
    throw invalid("bad-vlan-id", `parent ${JSON.stringify(given)}: VLAN id ${m[2]} is not in 1-4094`, PARENT_FIELD);
  }
  await requireKind(dp, "vlan", `parent ${JSON.stringify(given)} would be an 802.1Q sub-interface of ${base} (VLAN ${id}); use an existing interface instead`);
  return { parent, create: { kind: "vlan", base, id } };
}

/** Creates the parent a plan calls for (up), or nothing. Returns the network state. */
export async function applyParentPlan(ctx: DriverContext, plan: ParentPlan): Promise<ParentNetworkState> {
  const { dp } = ctx;
  if (!plan.create) return plan.inherited ? { parent: plan.parent, createdParent: plan.inherited } : { parent: plan.parent };
  const b = dp.batch(dp.hostNs);
  if (plan.create.kind === "vlan") b.addVlan(plan.parent, plan.create.base, plan.create.id);
  else b.addDummy(plan.parent);
  b.setUp(plan.parent);
  try {
    await dp.apply(b);
  } catch (e) {
    await dp.deleteLinks(dp.hostNs, [plan.parent]);
    throw e;
  }
  return { parent: plan.parent, createdParent: plan.create.kind };
}

/** Deletes the parent when Berth created it and no other Berth network still uses it. */
export async function releaseParent(ctx: DriverContext, store: NetworkStore, net: NetworkRecord): Promise<void> {
  const st = net.driverState as Partial<ParentNetworkState>;
  if (!st.parent || !st.createdParent) return;
  if ((await networksOnParent(store, net, st.parent)).length > 0) return;
  const errors = await ctx.dp.deleteLinks(ctx.dp.hostNs, [st.parent]);
  if (errors[0]) throw errors[0];
}

/** Name of an endpoint's child in the host namespace before join ("mv…"/"iv…" + 11 hex). */
export function tmpIfname(prefix: "mv" | "iv", ep: EndpointRecord): string {
  return `${prefix}${ep.id.slice(0, 11)}`;
}

/** Turns a failed `ip link add … type macvlan|ipvlan` into an error that says what to do. */
export function childCreateError(e: unknown, kind: string, parent: string): unknown {
  if (!(e instanceof BerthError)) return e;
  const m = e.message;
  if (/Unknown device type/.test(m)) return unavailable(`${kind}-unsupported`, `this kernel cannot create ${kind} links`, PARENT_FIELD);
  if (/Cannot find device|does not exist/.test(m)) {
    return notFound("parent-not-found", `parent interface ${JSON.stringify(parent)} no longer exists in the host namespace`, PARENT_FIELD);
  }
  if (/Device or resource busy/.test(m)) {
    return conflict(
      "parent-in-use",
      `parent interface ${JSON.stringify(parent)} already carries links of another kind (macvlan and ipvlan cannot share a parent): ${m}`,
      PARENT_FIELD,
    );
  }
  return e;
}

export interface JoinOptions {
  /** Set the endpoint's MAC on the child (macvlan; ipvlan children share the parent's MAC). */
  setMac: boolean;
  /** Default route: via the gateway (L2 networks) or straight through the device (ipvlan l3/l3s). */
  defaultRoute: "gateway" | "device";
}

/** Moves the child into the container, renames it and configures MAC, addresses, link state and default route. */
export async function joinChild(ctx: DriverContext, net: NetworkRecord, ep: EndpointRecord, sb: Sandbox, tmp: string, o: JoinOptions): Promise<void> {
  const { dp, faults } = ctx;
  dp.requireNetns(sb.netns);
  if (await dp.link(sb.netns, ep.ifname)) {
    throw conflict("ifname-in-use", `interface ${ep.ifname} already exists in the container`, "ifname");
  }
  // like Docker: the container's first network that has a way out provides its default route
  const defaults: { family: 4 | 6; via?: (typeof ep.gateways)[number] }[] = [];
  if (!net.internal) {
    for (const fam of [4, 6] as const) {
      const via = ep.gateways.find((g) => g.family === fam);
      const wanted = o.defaultRoute === "gateway" ? via !== undefined : ep.addresses.some((a) => a.ip.family === fam);
      if (!wanted) continue;
      if ((await dp.routes(sb.netns, fam)).some((r) => r.dst === "default")) continue;
      defaults.push(o.defaultRoute === "gateway" && via ? { family: fam, via } : { family: fam });
    }
  }
  await dp.apply(dp.batch(dp.hostNs).moveToNetns(tmp, sb.netns));
  try {
    faults.hit(`${net.driver}.join:after-move`);
    await prepareContainerInterface(dp, sb.netns, tmp, ep);
    const b = dp.batch(sb.netns).rename(tmp, ep.ifname);
    if (o.setMac) b.setMac(ep.ifname, ep.mac);
    for (const a of ep.addresses) b.addAddress(ep.ifname, a, { noDad: true });
    b.setUp(ep.ifname);
    for (const d of defaults) b.addRoute({ family: d.family, dev: ep.ifname, ...(d.via ? { via: d.via } : {}) });
    await dp.apply(b);
    faults.hit(`${net.driver}.join:after-configure`);
  } catch (e) {
    // the child is ours under either name; deleteEndpoint finds nothing left in the host
    await dp.deleteLinks(sb.netns, [tmp, ep.ifname]);
    throw e;
  }
}

/** Deletes the child inside the container (idempotent; a vanished namespace took it along). */
export async function leaveChild(ctx: DriverContext, ep: EndpointRecord, sb: Sandbox): Promise<void> {
  const st = ep.driverState as Partial<ParentEndpointState>;
  if (!ctx.dp.netnsExists(sb.netns)) return;
  const errors = await ctx.dp.deleteLinks(sb.netns, [ep.ifname, ...(st.tmpIfname ? [st.tmpIfname] : [])]);
  if (errors[0]) throw errors[0];
}

/** Deletes the child if it is still in the host namespace (never joined, or join failed before the move). */
export async function deleteChild(ctx: DriverContext, ep: EndpointRecord): Promise<void> {
  const st = ep.driverState as Partial<ParentEndpointState>;
  if (!st.tmpIfname) return;
  const errors = await ctx.dp.deleteLinks(ctx.dp.hostNs, [st.tmpIfname]);
  if (errors[0]) throw errors[0];
}
