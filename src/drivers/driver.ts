/**
 * The Driver interface: what the controller needs from a network type. Small and
 * symmetric (create/delete network, create/delete endpoint, join/leave a
 * sandbox). The `null` driver is the executable spec of the minimum.
 *
 * Contract:
 *  - `validate*` are pure: they throw `invalid` for bad options and change nothing.
 *  - `create*`/`join` either complete or undo what they did before throwing.
 *  - `delete*`/`leave` are idempotent and best effort: a missing kernel object is
 *    success; they collect errors and throw one at the end.
 *  - Drivers receive everything through `DriverContext` (no driver imports another).
 */
import type { Dataplane } from "../dataplane/dataplane.ts";
import type { Faults } from "../controller/faults.ts";
import type { EndpointRecord, NetworkRecord } from "../store/types.ts";

export interface DriverContext {
  dp: Dataplane;
  faults: Faults;
  /** Asks the controller to re-render the firewall from the store (after the store changed). */
  syncFirewall(): Promise<void>;
}

/** A container's network sandbox: its namespace. */
export interface Sandbox {
  containerId: string;
  /** Named netns under /run/netns, or null for the host driver's "shared stack". */
  netns: string;
}

export type DriverState = Record<string, unknown>;

export interface Driver {
  readonly name: string;
  readonly scope: "local" | "global";
  /** Whether endpoints need IP addresses from IPAM. */
  readonly needsAddresses: boolean;
  /** Whether the network may have at most one endpoint per sandbox that owns the whole stack. */
  validateNetwork(net: NetworkRecord): void;
  createNetwork(net: NetworkRecord): Promise<DriverState>;
  deleteNetwork(net: NetworkRecord): Promise<void>;
  validateEndpoint(net: NetworkRecord, ep: EndpointRecord): void;
  /**
   * `sb`: the sandbox `join` will put the endpoint into (absent for an external
   * runtime's endpoint); a driver may create the container end there at once, which
   * spares the kernel a namespace move (15-30 ms each).
   */
  createEndpoint(net: NetworkRecord, ep: EndpointRecord, sb?: Sandbox): Promise<DriverState>;
  deleteEndpoint(net: NetworkRecord, ep: EndpointRecord): Promise<void>;
  join(net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void>;
  leave(net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void>;
}

/** Optional capability: publishing ports (checked with `canPublishPorts`). */
export interface PortPublishing {
  readonly publishesPorts: true;
}

export function canPublishPorts(d: Driver): d is Driver & PortPublishing {
  return (d as Partial<PortPublishing>).publishesPorts === true;
}

/**
 * Optional capability: the driver can find and repair drift between the store
 * and the kernel (a deleted bridge or veth, a link set down). `check*` only
 * reads; `repair*` recreates what is missing from the records, never touching
 * objects the driver did not create.
 */
export interface Reconcilable {
  /** One dump of the host's links, shared by all checks of one pass. */
  checkNetwork(net: NetworkRecord, hostLinks: ReadonlyMap<string, LinkSnapshot>): string[];
  repairNetwork(net: NetworkRecord): Promise<void>;
  checkEndpoint(net: NetworkRecord, ep: Readonly<EndpointRecord>, hostLinks: ReadonlyMap<string, LinkSnapshot>): string[];
  repairEndpoint(net: NetworkRecord, ep: EndpointRecord, sb: Sandbox): Promise<void>;
}

export interface LinkSnapshot {
  kind: string | undefined;
  up: boolean;
  master: string | undefined;
}

export function isReconcilable(d: Driver): d is Driver & Reconcilable {
  return typeof (d as Partial<Reconcilable>).checkNetwork === "function";
}

/**
 * Optional capability: endpoints whose sandbox belongs to an external runtime
 * (dockerd through the remote driver protocol). For these the controller calls
 * `createEndpoint` but never `join`/`leave`: the container end must then be a
 * link in the host namespace, which the runtime moves into its sandbox, renames
 * and configures itself. `containerLink` names that link.
 */
export interface ExternalSandboxes {
  containerLink(net: NetworkRecord, ep: EndpointRecord): string;
}

export function supportsExternalSandboxes(d: Driver): d is Driver & ExternalSandboxes {
  return typeof (d as Partial<ExternalSandboxes>).containerLink === "function";
}

/**
 * Optional capability: the driver's endpoints have no way out of their network
 * by themselves (overlay); the controller also attaches their container to the
 * host's gateway bridge (src/controller/gateway-bridge.ts) when this says so.
 */
export interface GatewayBridged {
  needsGatewayBridge(net: NetworkRecord): boolean;
}

export function isGatewayBridged(d: Driver): d is Driver & GatewayBridged {
  return typeof (d as Partial<GatewayBridged>).needsGatewayBridge === "function";
}
