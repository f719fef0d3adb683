/**
 * The Store: Berth's single source of truth for desired state.
 *
 * The interface speaks typed values (IP, Prefix, MAC, IPNet) and knows nothing
 * about SQL, so an etcd implementation can sit behind it later. Every method
 * is async for the same reason.
 *
 * Conventions:
 * - `get(id)` is an exact id lookup; `find(term)` resolves like Docker: exact
 *   id, then exact name, then a unique id prefix. Both return `undefined` when
 *   nothing matches (callers raise their own not-found error); an ambiguous
 *   term throws `invalid`/"ambiguous".
 * - `create` throws `conflict` on a duplicate; `update` replaces the whole
 *   record and throws `not-found` if it is gone; `delete` returns false when
 *   there was nothing to delete (teardown is idempotent).
 * - `transaction(fn)` runs `fn` with a Store whose writes commit or roll back
 *   together (the SQLite store holds the database write lock for the whole of
 *   `fn`). Use only the `tx` handed to `fn` inside it. `fn` may be retried by
 *   optimistic implementations (etcd), so it must have no other side effects.
 *   A transaction started on a `tx` joins the outer transaction.
 */
import type { IP, IPNet, MAC, Prefix } from "../net/index.ts";

export type Labels = Record<string, string>;

export interface IpamPoolConfig {
  subnet: Prefix;
  ipRange?: Prefix;
  /** First/last address dynamic allocation may hand out (inclusive; CNI host-local rangeStart/rangeEnd). */
  rangeStart?: IP;
  rangeEnd?: IP;
  gateway?: IP;
  auxAddresses: Record<string, IP>;
}

export interface NetworkIpam {
  driver: string;
  options: Record<string, string>;
  pools: IpamPoolConfig[];
}

export interface NetworkRecord {
  /** 64 lowercase hex characters. */
  id: string;
  name: string;
  driver: string;
  scope: "local" | "global";
  internal: boolean;
  enableIPv6: boolean;
  attachable: boolean;
  options: Record<string, string>;
  labels: Labels;
  ipam: NetworkIpam;
  /** ISO 8601 */
  created: string;
  /** Driver-private state (e.g. the bridge's name). JSON-serialisable. */
  driverState: Record<string, unknown>;
  /**
   * Who manages the network's lifecycle when it is not Berth's own API, e.g.
   * "docker" for networks created by dockerd through the remote driver plugin:
   * only that manager may remove it, and prune leaves it alone.
   */
  managedBy?: string;
  /**
   * Set while a multi-step create or delete is in flight ("create"/"delete"):
   * a network still marked at daemon start was interrupted by a crash and is
   * removed by recovery (src/controller/recovery.ts).
   */
  pending?: "create" | "delete";
}

export interface StoredPortMapping {
  hostIP?: IP;
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp" | "sctp";
}

export interface EndpointRecord {
  id: string;
  networkId: string;
  containerId: string;
  ifname: string;
  mac: MAC;
  addresses: IPNet[];
  gateways: IP[];
  hostIfname?: string;
  ports: StoredPortMapping[];
  aliases: string[];
  created: string;
  driverState: Record<string, unknown>;
  /**
   * Set when an external runtime (dockerd through the plugin protocol) owns the
   * sandbox: Berth creates the endpoint's links, the runtime moves the container
   * end into its namespace and configures it. `sandboxKey` is the runtime's
   * namespace path while joined.
   */
  external?: { sandboxKey?: string };
  /** Set while connect/disconnect is in flight; recovery removes an endpoint still marked at start. */
  pending?: "connect" | "disconnect";
  /**
   * Multi-host stores (etcd): the host the endpoint lives on, set for endpoints
   * of global-scope networks, which every host sees. Only that host programs
   * its kernel objects; the others program forwarding (FDB/neighbours) to it.
   */
  host?: string;
}

export interface ContainerLimits {
  memoryBytes?: number;
  cpus?: number;
  pids?: number;
  /** bits/s into / out of the container (tc), bursts in bits */
  ingressRate?: number;
  egressRate?: number;
  ingressBurst?: number;
  egressBurst?: number;
}

export interface ContainerRecord {
  id: string;
  name: string;
  netns: string;
  command: string[];
  pid?: number;
  state: "created" | "running" | "exited";
  /** Set while `rm` tears the container down; recovery finishes the removal at start. */
  pending?: "remove";
  exitCode?: number;
  cgroup?: string;
  limits: ContainerLimits;
  created: string;
  labels: Labels;
}

/** Who holds an address: one interface of one container on one network. */
export interface AllocationKey {
  networkId: string;
  containerId: string;
  ifname: string;
}

/** One address handed out by IPAM. A key holds at most one address per family. */
export interface AllocationRecord extends AllocationKey {
  family: 4 | 6;
  address: IP;
  /** The pool (by subnet) the address came from. */
  subnet: Prefix;
  created: string;
}

export interface NetworkTable {
  /** Throws conflict "network-exists" if the name (or id) is taken. */
  create(rec: NetworkRecord): Promise<void>;
  get(id: string): Promise<NetworkRecord | undefined>;
  find(idOrName: string): Promise<NetworkRecord | undefined>;
  list(): Promise<NetworkRecord[]>;
  update(rec: NetworkRecord): Promise<void>;
  /**
   * Deletes the network and its address allocations. Throws conflict
   * "network-in-use" while endpoints remain.
   */
  delete(id: string): Promise<boolean>;
}

export interface EndpointTable {
  /** Throws conflict "endpoint-exists" if the container already has an endpoint on the network. */
  create(rec: EndpointRecord): Promise<void>;
  get(id: string): Promise<EndpointRecord | undefined>;
  listByNetwork(networkId: string): Promise<EndpointRecord[]>;
  listByContainer(containerId: string): Promise<EndpointRecord[]>;
  update(rec: EndpointRecord): Promise<void>;
  delete(id: string): Promise<boolean>;
}

export interface ContainerTable {
  /** Throws conflict "container-exists" if the name (or id) is taken. */
  create(rec: ContainerRecord): Promise<void>;
  get(id: string): Promise<ContainerRecord | undefined>;
  find(idOrName: string): Promise<ContainerRecord | undefined>;
  list(): Promise<ContainerRecord[]>;
  update(rec: ContainerRecord): Promise<void>;
  delete(id: string): Promise<boolean>;
}

export interface AllocationFilter {
  networkId?: string;
  containerId?: string;
}

/**
 * IPAM persistence. Only bookkeeping: choosing addresses is the job of
 * src/ipam, which calls these inside one `transaction`.
 */
export interface AllocationTable {
  list(filter?: AllocationFilter): Promise<AllocationRecord[]>;
  /** The allocations held by one key (at most one per family). */
  get(key: AllocationKey): Promise<AllocationRecord[]>;
  byAddress(networkId: string, address: IP): Promise<AllocationRecord | undefined>;
  /** Allocated addresses of a network from `first` to `last` (inclusive, one family), ascending, at most `limit`. */
  addressesIn(networkId: string, first: IP, last: IP, limit: number): Promise<IP[]>;
  /** Throws conflict "address-in-use" / "allocation-exists" on a duplicate. */
  insert(rec: AllocationRecord): Promise<void>;
  /** Deletes the key's allocations (one family, or all); returns what was deleted. */
  delete(key: AllocationKey, family?: 4 | 6): Promise<AllocationRecord[]>;
  /** Deletes every allocation and cursor of a network; returns what was deleted. */
  deleteNetwork(networkId: string): Promise<AllocationRecord[]>;
  /** The last address handed out from a pool (for round-robin allocation). */
  getCursor(networkId: string, subnet: Prefix): Promise<IP | undefined>;
  setCursor(networkId: string, subnet: Prefix, last: IP): Promise<void>;
}

/** A small key/value area (schema version, ULA global id, ...). */
export interface MetaTable {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<boolean>;
}

export interface Store {
  readonly networks: NetworkTable;
  readonly endpoints: EndpointTable;
  readonly containers: ContainerTable;
  readonly allocations: AllocationTable;
  readonly meta: MetaTable;
  /**
   * Multi-host stores: the name of the host this view belongs to (its local
   * networks and containers; global networks are shared). Undefined for the
   * single-host SQLite store.
   */
  readonly host?: string;
  transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T>;
  /**
   * Makes every transaction committed so far durable on disk (power loss). A
   * no-op for stores whose every commit already is (etcd, SQLite "full"). Called
   * after the changes that must outlive a reboot: network and pool definitions.
   */
  sync(): Promise<void>;
  close(): Promise<void>;
}
