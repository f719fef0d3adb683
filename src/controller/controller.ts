/**
 * The network controller (CNM): pairs each network with its driver and runs the
 * network and endpoint lifecycles over the store, IPAM and the drivers.
 *
 * Every setup is "validate everything, then apply step by step with an undo per
 * step": a failure at any step (including an injected fault) rolls back what was
 * done, so nothing is left half-applied in the store or the kernel. Teardown is
 * idempotent and best effort.
 */
import type { Dataplane } from "../dataplane/dataplane.ts";
import { BridgeDriver } from "../drivers/bridge/bridge-driver.ts";
import { parseBridgeOptions } from "../drivers/bridge/options.ts";
import type { Driver, DriverContext } from "../drivers/driver.ts";
import { canPublishPorts, isGatewayBridged, supportsExternalSandboxes } from "../drivers/driver.ts";
import { HostDriver } from "../drivers/host/host-driver.ts";
import { IpvlanDriver } from "../drivers/ipvlan/ipvlan-driver.ts";
import { MacvlanDriver } from "../drivers/macvlan/macvlan-driver.ts";
import { NullDriver } from "../drivers/null/null-driver.ts";
import { type OverlayCluster, OverlayDriver } from "../drivers/overlay/overlay-driver.ts";
import { BerthError, conflict, forbidden, invalid, notFound, unavailable } from "../errors.ts";
import { flattenState } from "../firewall/desired.ts";
import { Firewall, type FirewallChange } from "../firewall/firewall.ts";
import type { FirewallState } from "../firewall/ruleset.ts";
import type { Ipam } from "../ipam/index.ts";
import { IP, MAC, type PortMapping, type Prefix, validateContainerId, validateDnsLabel, validateIfName, validateNetworkName } from "../net/index.ts";
import { EventBus } from "../observe/events.ts";
import { Loopback6Proxy, type LoopbackForward } from "../proxy/loopback6.ts";
import { endpointOn, isId, nameTaken, newId, nowIso } from "../store/index.ts";
import type { EndpointRecord, NetworkRecord, Store, StoredPortMapping } from "../store/types.ts";
import { Faults } from "./faults.ts";
import { readFirewallState, StoreFirewall } from "./firewall-state.ts";
import { attachGatewayBridge, detachGatewayBridgeIfUnused } from "./gateway-bridge.ts";
import type { ConnectRequest, CreateNetworkRequest, NetworkFilter } from "./types.ts";
import { UndoStack } from "./undo.ts";

export const PREDEFINED = ["bridge", "host", "none"] as const;
export const DEFAULT_BRIDGE_NAME = "berth0";

export interface ControllerOptions {
  store: Store;
  ipam: Ipam;
  dp: Dataplane;
  faults?: Faults;
  events?: EventBus;
  /** Multi-host: this host in the cluster (overlay networks need it). */
  cluster?: OverlayCluster;
}

export class Controller {
  readonly store: Store;
  readonly ipam: Ipam;
  readonly dp: Dataplane;
  readonly faults: Faults;
  readonly firewall: Firewall;
  /** Published ports on [::1] (the kernel cannot DNAT IPv6 loopback traffic; see proxy/loopback6.ts). */
  readonly loopback6: Loopback6Proxy;
  readonly events: EventBus;
  private readonly drivers = new Map<string, Driver>();

  constructor(o: ControllerOptions) {
    this.store = o.store;
    this.ipam = o.ipam;
    this.dp = o.dp;
    this.faults = o.faults ?? new Faults();
    this.events = o.events ?? new EventBus();
    this.loopback6 = new Loopback6Proxy(this.dp, this.dp.hostNs, (msg) => this.events.emit("network", "warning", "", { message: msg }));
    this.firewall = new Firewall(this.dp, this.dp.hostNs, new StoreFirewall(this.store, this.loopback6));
    const ctx: DriverContext = { dp: this.dp, faults: this.faults, syncFirewall: () => this.syncFirewall() };
    for (const d of [new NullDriver(), new HostDriver(), new BridgeDriver(ctx), new MacvlanDriver(ctx, this.store), new IpvlanDriver(ctx, this.store), new OverlayDriver(ctx, this.store, o.cluster)]) {
      this.drivers.set(d.name, d);
    }
  }

  private teardownLock: Promise<unknown> = Promise.resolve();

  /**
   * Runs `fn` alone among `exclusive` calls: teardown (kernel objects, then the
   * record) and the reconciler's repairs (which re-check the record inside), so
   * a repair can never recreate what a teardown is removing.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.teardownLock.then(fn);
    this.teardownLock = next.catch(() => undefined);
    return next;
  }

  driverNames(): string[] {
    return [...this.drivers.keys()];
  }

  driver(name: string): Driver {
    const d = this.drivers.get(name);
    if (!d) {
      throw notFound("unknown-driver", `unknown network driver ${JSON.stringify(name)}; available: ${this.driverNames().join(", ")}`, "Driver");
    }
    return d;
  }

  // ---------------- networks ----------------

  /** Creates the predefined networks (none, host, default bridge) if missing. */
  async ensurePredefined(): Promise<void> {
    for (const [name, driver] of [
      ["none", "null"],
      ["host", "host"],
    ] as const) {
      if (!(await this.store.networks.find(name))) await this.createNetwork({ name, driver }, { predefined: true });
    }
    if (!(await this.store.networks.find("bridge"))) {
      await this.createNetwork(
        { name: "bridge", driver: "bridge", options: { "com.docker.network.bridge.name": DEFAULT_BRIDGE_NAME } },
        { predefined: true },
      );
    }
  }

  async createNetwork(req: CreateNetworkRequest, o: { predefined?: boolean } = {}): Promise<NetworkRecord> {
    validateNetworkName(req.name, "Name");
    if (!o.predefined && (PREDEFINED as readonly string[]).includes(req.name)) {
      throw forbidden("predefined", `${req.name} is a pre-defined network and cannot be created`, "Name");
    }
    const driverName = req.driver ?? "bridge";
    const driver = this.driver(driverName);
    if ((driverName === "host" || driverName === "null") && !o.predefined) {
      throw forbidden("singleton-driver", `only one instance of "${driverName}" network is allowed`, "Driver");
    }
    if (req.ipam?.driver && req.ipam.driver !== "default") {
      throw notFound("unknown-ipam-driver", `unknown IPAM driver ${JSON.stringify(req.ipam.driver)}; available: default`, "IPAM.Driver");
    }
    if (await nameTaken(this.store.networks, req.name)) {
      throw conflict("network-exists", `network with name ${req.name} already exists`, "Name");
    }
    if (req.id !== undefined) {
      if (!isId(req.id)) throw invalid("bad-network-id", `network id ${JSON.stringify(req.id)} must be 64 lowercase hex digits`, "NetworkID");
      if (await this.store.networks.get(req.id)) throw conflict("network-exists", `network with id ${req.id} already exists`, "NetworkID");
    }
    const id = req.id ?? newId();
    const net: NetworkRecord = {
      id,
      name: req.name,
      driver: driverName,
      scope: driver.scope,
      internal: req.internal ?? false,
      enableIPv6: req.enableIPv6 ?? false,
      attachable: req.attachable ?? false,
      options: { ...(req.options ?? {}) },
      labels: { ...(req.labels ?? {}) },
      ipam: { driver: "default", options: { ...(req.ipam?.options ?? {}) }, pools: [] },
      created: nowIso(),
      driverState: {},
      ...(req.managedBy ? { managedBy: req.managedBy } : {}),
      // until the driver's state is recorded: a crash before that leaves a marked record for recovery
      pending: "create",
    };
    if (!driver.needsAddresses && (req.ipam?.config ?? []).length > 0) {
      throw invalid("ipam-unsupported", `the ${driverName} driver does not use IP addresses`, "IPAM.Config");
    }
    if (driver.needsAddresses && req.enableIPv4 === false && !net.enableIPv6) {
      throw invalid("no-ip-family", "IPv4 and IPv6 cannot both be disabled: an IPv6-only network needs EnableIPv6 (--ipv6)", "EnableIPv4");
    }
    if (driverName === "bridge") await this.checkBridgeNameFree(net);

    const undo = new UndoStack();
    try {
      // pools are chosen and checked for overlap in the transaction that records the network,
      // so two concurrent creates cannot take the same subnet
      await this.store.transaction(async (tx) => {
        if (driver.needsAddresses) {
          net.ipam.pools = await this.ipam.using(tx).preparePools({
            pools: req.ipam?.config ?? [],
            ipv4: req.enableIPv4 ?? true,
            ipv6: net.enableIPv6,
            field: "IPAM.Config",
            ...(req.ipam?.claimReserved ? { claimReserved: true } : {}),
          });
        }
        driver.validateNetwork(net);
        await tx.networks.create(net);
      });
      undo.push("store record", () => this.store.networks.delete(id).then(() => undefined));
      this.faults.hit("createNetwork:after-store");
      net.driverState = await driver.createNetwork(net);
      undo.push("driver network", () => driver.deleteNetwork(net));
      this.faults.hit("createNetwork:after-driver");
      delete net.pending;
      await this.store.networks.update(net);
      await this.syncFirewall();
      this.faults.hit("createNetwork:after-firewall");
      undo.commit();
      // a network definition outlives a reboot (endpoints do not): durable before the answer
      await this.store.sync();
      this.events.emit("network", "create", net.id, { name: net.name, type: net.driver });
      return net;
    } catch (e) {
      await undo.rollback();
      await this.syncFirewall().catch(() => undefined);
      throw e;
    }
  }

  private async checkBridgeNameFree(net: NetworkRecord): Promise<void> {
    const name = parseBridgeOptions(net.options, net.id).bridgeName;
    for (const other of await this.store.networks.list()) {
      if (other.driver === "bridge" && (other.driverState as { bridge?: string }).bridge === name) {
        throw conflict("bridge-exists", `bridge ${name} is already used by network ${other.name}`, "Options.com.docker.network.bridge.name");
      }
    }
  }

  async getNetwork(idOrName: string): Promise<NetworkRecord> {
    const n = await this.store.networks.find(idOrName);
    if (!n) throw notFound("network-not-found", `network ${idOrName} not found`, "network");
    return n;
  }

  async listNetworks(f: NetworkFilter = {}): Promise<NetworkRecord[]> {
    const all = await this.store.networks.list();
    return all.filter((n) => matchesFilter(n, f)).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** `o.managedBy` must name the network's manager when it has one (see NetworkRecord.managedBy). */
  async deleteNetwork(idOrName: string, o: { managedBy?: string } = {}): Promise<void> {
    const net = await this.getNetwork(idOrName);
    if ((PREDEFINED as readonly string[]).includes(net.name)) {
      throw forbidden("predefined", `${net.name} is a pre-defined network and cannot be removed`, "network");
    }
    if (net.managedBy !== undefined && net.managedBy !== o.managedBy) {
      throw forbidden("managed-network", `network ${net.name} is managed by ${net.managedBy}; remove it there (e.g. docker network rm)`, "network");
    }
    const eps = await this.store.endpoints.listByNetwork(net.id);
    if (eps.length > 0) {
      throw forbidden("network-in-use", `error while removing network: network ${net.name} id ${net.id} has active endpoints`, "network");
    }
    // kernel objects and the record go together, never interleaved with a reconciler repair
    // (which would recreate the bridge from a record about to disappear)
    await this.exclusive(() => this.teardownNetwork(net));
    await this.syncFirewall();
    await this.store.sync();
    this.events.emit("network", "destroy", net.id, { name: net.name, type: net.driver });
  }

  /**
   * Removes a network's kernel objects, addresses and record (idempotent). Marked
   * "delete" first, so a crash half-way is finished by recovery at the next start.
   */
  async teardownNetwork(net: NetworkRecord): Promise<void> {
    if (net.pending !== "create") {
      net.pending = "delete";
      await this.store.networks.update(net);
    }
    this.faults.checkpoint("deleteNetwork:after-mark");
    await this.driver(net.driver).deleteNetwork(net);
    this.faults.checkpoint("deleteNetwork:after-driver");
    await this.ipam.releaseNetwork(net.id);
    this.faults.checkpoint("deleteNetwork:after-release");
    await this.store.networks.delete(net.id);
  }

  /** Removes every user network without endpoints; returns their names. */
  async pruneNetworks(f: NetworkFilter = {}): Promise<string[]> {
    const removed: string[] = [];
    for (const n of await this.listNetworks(f)) {
      if ((PREDEFINED as readonly string[]).includes(n.name)) continue;
      if (n.managedBy !== undefined) continue;
      if ((await this.store.endpoints.listByNetwork(n.id)).length > 0) continue;
      await this.deleteNetwork(n.id);
      removed.push(n.name);
    }
    return removed;
  }

  // ---------------- endpoints ----------------

  async connect(req: ConnectRequest): Promise<EndpointRecord> {
    validateContainerId(req.containerId, "Container");
    const net = await this.getNetwork(req.network);
    const driver = this.driver(net.driver);
    const ifname = validateIfName(req.ifname ?? (await this.nextIfname(req.containerId)), "ifname");
    for (const a of req.aliases ?? []) validateDnsLabel(a, "Aliases");
    const ports = req.ports ?? [];
    if (req.external && !supportsExternalSandboxes(driver)) {
      throw invalid("external-unsupported", `the ${net.driver} driver cannot hand endpoints to an external runtime`, "Driver");
    }
    if (req.endpointId !== undefined && !isId(req.endpointId)) {
      throw invalid("bad-endpoint-id", `endpoint id ${JSON.stringify(req.endpointId)} must be 64 lowercase hex digits`, "EndpointID");
    }
    if (ports.length > 0 && !canPublishPorts(driver)) {
      throw invalid("ports-unsupported", `the ${net.driver} driver cannot publish ports`, "ports");
    }
    for (const fam of [4, 6] as const) {
      const ip = fam === 4 ? req.ipv4 : req.ipv6;
      if (ip && ip.family !== fam) throw invalid("bad-ip-family", `${ip} is not an IPv${fam} address`, `IPAMConfig.IPv${fam}Address`);
    }
    const existing = await this.store.endpoints.listByContainer(req.containerId);
    if (existing.some((e) => e.networkId === net.id)) {
      throw forbidden("endpoint-exists", `endpoint with name ${req.containerId} already exists in network ${net.name}`, "Container");
    }
    if (net.driver === "host" || net.driver === "null") {
      if (existing.length > 0) {
        throw forbidden("exclusive-network", `a container on the ${net.name} network cannot be connected to other networks`, "network");
      }
    } else {
      for (const e of existing) {
        const other = await this.store.networks.get(e.networkId);
        if (other && (other.driver === "host" || other.driver === "null")) {
          throw forbidden("exclusive-network", `container is attached to the ${other.name} network, which cannot be combined with others`, "network");
        }
      }
    }
    // a host-network container's sandbox is the host namespace itself; an external one is the runtime's business
    if (net.driver !== "host" && !req.external) this.dp.requireNetns(req.netns);

    const ep: EndpointRecord = {
      id: req.endpointId ?? newId(),
      networkId: net.id,
      containerId: req.containerId,
      ifname,
      mac: req.mac ?? MAC.random(),
      addresses: [],
      gateways: [],
      ports: ports.map((p) => ({ ...(p.hostIP ? { hostIP: p.hostIP } : {}), hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol })),
      aliases: [...(req.aliases ?? [])],
      created: nowIso(),
      driverState: {},
      ...(req.external ? { external: {} } : {}),
      // cleared when connect completes: a crash before that leaves a marked record for recovery
      pending: "connect",
    };
    driver.validateEndpoint(net, ep);
    const sb = { containerId: req.containerId, netns: req.netns };
    const undo = new UndoStack();
    try {
      if (driver.needsAddresses) {
        // pushed before allocating: when the second family fails, the first family's address
        // must be released too (release is idempotent); the round-robin cursor is rewound so a
        // failed connect does not shift the next container's address
        const cursors: { subnet: Prefix; prev: IP | undefined; mine: IP }[] = [];
        undo.push("addresses", async () => {
          await this.ipam.release({ networkId: net.id, containerId: req.containerId, ifname });
          for (const c of cursors.reverse()) {
            const cur = await this.store.allocations.getCursor(net.id, c.subnet);
            // only when nobody allocated since; a cursor before the range means "from the start", like none
            if (cur?.equals(c.mine)) await this.store.allocations.setCursor(net.id, c.subnet, c.prev ?? IP.fromBigInt(c.mine.family, 0n));
          }
        });
        for (const pool of net.ipam.pools) {
          const fam = pool.subnet.family;
          if (ep.addresses.some((a) => a.ip.family === fam)) continue;
          const requested = fam === 4 ? req.ipv4 : req.ipv6;
          const prev = requested ? undefined : await this.store.allocations.getCursor(net.id, pool.subnet);
          const a = await this.ipam.allocate({
            networkId: net.id,
            containerId: req.containerId,
            ifname,
            family: fam,
            field: `IPAMConfig.IPv${fam}Address`,
            ...(requested ? { requested } : {}),
          });
          if (!requested) cursors.push({ subnet: a.subnet, prev, mine: a.address });
          ep.addresses.push(a.ipnet);
          if (a.gateway && !net.internal) ep.gateways.push(a.gateway);
        }
        // like Docker: the MAC follows the IPv4 address, so when an address is re-used its peers'
        // cached neighbour entries stay right (with a random MAC they blackhole it for seconds)
        const v4 = ep.addresses.find((a) => a.ip.family === 4);
        if (!req.mac && v4) ep.mac = MAC.fromIPv4(v4.ip);
        for (const fam of [4, 6] as const) {
          const r = fam === 4 ? req.ipv4 : req.ipv6;
          if (r && !ep.addresses.some((a) => a.ip.equals(r))) {
            throw invalid("ip-not-in-network", `requested address ${r} is not in any subnet of network ${net.name}`, `IPAMConfig.IPv${fam}Address`);
          }
        }
      }
      this.faults.hit("connect:after-ipam");
      await this.store.transaction(async (tx) => {
        if (ep.ports.length > 0) await assertPortsFree(tx, ep);
        await tx.endpoints.create(ep);
      });
      undo.push("endpoint record", () => this.store.endpoints.delete(ep.id).then(() => undefined));
      this.faults.hit("connect:after-store");
      ep.driverState = await driver.createEndpoint(net, ep, req.external ? undefined : sb);
      undo.push("driver endpoint", () => driver.deleteEndpoint(net, ep));
      await this.store.endpoints.update(ep);
      this.faults.hit("connect:after-create-endpoint");
      // the firewall learns the endpoint (its bridge port's source addresses for anti-spoofing, its
      // published ports) before the container's side comes up: no packet of it is ever unpoliced
      if (inFirewall(net, ep)) {
        await this.syncFirewall({ endpoint: ep.id });
        this.faults.hit("connect:after-firewall");
      }
      if (!req.external) {
        await driver.join(net, ep, sb);
        undo.push("join", () => driver.leave(net, ep, sb));
        this.faults.hit("connect:after-join");
      }
      // overlay: the way out is a second endpoint on the host's gateway bridge
      if (!req.external && isGatewayBridged(driver) && driver.needsGatewayBridge(net)) {
        if (await attachGatewayBridge(this, req.containerId, req.netns)) {
          undo.push("gateway bridge", () => detachGatewayBridgeIfUnused(this, req.containerId, req.netns, ep.id));
        }
      }
      delete ep.pending;
      await this.store.endpoints.update(ep);
      undo.commit();
      this.events.emit("network", "connect", net.id, { name: net.name, type: net.driver, container: ep.containerId, endpoint: ep.id });
      return ep;
    } catch (e) {
      await undo.rollback();
      if (inFirewall(net, ep)) await this.syncFirewall({ endpoint: ep.id }).catch(() => undefined);
      throw e;
    }
  }

  /** Detaches a container from a network. Missing kernel objects are fine (idempotent). */
  async disconnect(network: string, containerId: string, netns: string): Promise<void> {
    const net = await this.getNetwork(network);
    const ep = await endpointOn(this.store, net.id, containerId);
    if (!ep) {
      throw notFound("endpoint-not-found", `container ${containerId} is not connected to network ${net.name}`, "Container");
    }
    if (ep.external) {
      throw forbidden("external-endpoint", `endpoint ${ep.id} of network ${net.name} belongs to an external runtime (docker); disconnect it there`, "Container");
    }
    await this.removeEndpoint(net, ep, netns);
  }

  /** Tears down one endpoint: leave, delete, release, forget. Collects errors and throws the first. */
  async removeEndpoint(net: NetworkRecord, ep: EndpointRecord, netns: string): Promise<void> {
    const driver = this.driver(net.driver);
    const errors: Error[] = [];
    const step = async (f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        errors.push(e as Error);
      }
    };
    await this.exclusive(async () => {
      // marked first: a crash half-way leaves a record that recovery finishes removing at the next start
      if (ep.pending !== "connect") {
        ep.pending = "disconnect";
        await this.store.endpoints.update(ep).catch(() => undefined); // gone already: nothing to mark
      }
      this.faults.checkpoint("disconnect:after-mark");
      if (!ep.external) await step(() => driver.leave(net, ep, { containerId: ep.containerId, netns }));
      this.faults.checkpoint("disconnect:after-leave");
      await step(() => driver.deleteEndpoint(net, ep));
      this.faults.checkpoint("disconnect:after-delete-endpoint");
      await step(() => this.ipam.release({ networkId: net.id, containerId: ep.containerId, ifname: ep.ifname }));
      this.faults.checkpoint("disconnect:after-release");
      await step(() => this.store.endpoints.delete(ep.id));
    });
    if (inFirewall(net, ep)) await step(() => this.syncFirewall({ endpoint: ep.id }));
    if (!ep.external && isGatewayBridged(driver) && driver.needsGatewayBridge(net)) {
      await step(() => detachGatewayBridgeIfUnused(this, ep.containerId, netns));
    }
    this.events.emit("network", "disconnect", net.id, { name: net.name, type: net.driver, container: ep.containerId, endpoint: ep.id });
    if (errors[0]) throw errors[0];
  }

  /** Removes every endpoint of a container (used when the container goes away). */
  async disconnectAll(containerId: string, netns: string): Promise<void> {
    const errors: Error[] = [];
    for (const ep of await this.store.endpoints.listByContainer(containerId)) {
      // gone meanwhile: an overlay endpoint's removal takes the gateway-bridge endpoint along
      if (!(await this.store.endpoints.get(ep.id))) continue;
      const net = await this.store.networks.get(ep.networkId);
      if (!net) {
        await this.store.endpoints.delete(ep.id);
        continue;
      }
      await this.removeEndpoint(net, ep, netns).catch((e: Error) => errors.push(e));
    }
    if (errors[0]) throw errors[0];
  }

  // ---------------- endpoints of external sandboxes (dockerd) ----------------

  /** Whether networks of this driver can hand endpoints to an external runtime (throws for an unknown driver). */
  supportsExternalSandboxes(driverName: string): boolean {
    return supportsExternalSandboxes(this.driver(driverName));
  }

  /**
   * Whether the network's containers leave through a gateway bridge rather than
   * a gateway on the network itself (overlay): an external runtime must then
   * provide that way out itself (dockerd attaches docker_gwbridge).
   */
  leavesThroughGatewayBridge(net: NetworkRecord): boolean {
    const driver = this.driver(net.driver);
    return isGatewayBridged(driver) && driver.needsGatewayBridge(net);
  }

  /** One endpoint of a network, by endpoint id. */
  async getEndpoint(network: string, endpointId: string): Promise<{ net: NetworkRecord; ep: EndpointRecord }> {
    const net = await this.getNetwork(network);
    const ep = await this.store.endpoints.get(endpointId);
    if (!ep || ep.networkId !== net.id) {
      throw notFound("endpoint-not-found", `endpoint ${endpointId} not found in network ${net.name}`, "EndpointID");
    }
    return { net, ep };
  }

  /**
   * The external runtime is putting the endpoint into its sandbox `sandboxKey`:
   * records that and returns the link (in the host namespace) it must move.
   */
  async joinExternal(network: string, endpointId: string, sandboxKey: string): Promise<{ net: NetworkRecord; ep: EndpointRecord; link: string }> {
    const { net, ep } = await this.getEndpoint(network, endpointId);
    const driver = this.driver(net.driver);
    if (!ep.external || !supportsExternalSandboxes(driver)) {
      throw forbidden("not-external", `endpoint ${endpointId} belongs to a Berth container, not to an external runtime`, "EndpointID");
    }
    if (ep.external.sandboxKey !== undefined && ep.external.sandboxKey !== sandboxKey) {
      throw forbidden("endpoint-joined", `endpoint ${endpointId} is already in sandbox ${ep.external.sandboxKey}`, "EndpointID");
    }
    ep.external = { sandboxKey };
    await this.store.endpoints.update(ep);
    return { net, ep, link: driver.containerLink(net, ep) };
  }

  /** Deletes an external runtime's endpoint (Docker's DeleteEndpoint). Idempotent: a missing endpoint is success. */
  async removeExternalEndpoint(network: string, endpointId: string): Promise<void> {
    const net = await this.store.networks.find(network);
    const ep = await this.store.endpoints.get(endpointId);
    if (!net || !ep || ep.networkId !== net.id) return;
    if (!ep.external) {
      throw forbidden("not-external", `endpoint ${endpointId} belongs to a Berth container, not to an external runtime`, "EndpointID");
    }
    await this.removeEndpoint(net, ep, "");
  }

  /** The external runtime took the endpoint out of its sandbox. Idempotent. */
  async leaveExternal(network: string, endpointId: string): Promise<void> {
    const { ep } = await this.getEndpoint(network, endpointId);
    if (!ep.external) {
      throw forbidden("not-external", `endpoint ${endpointId} belongs to a Berth container, not to an external runtime`, "EndpointID");
    }
    if (ep.external.sandboxKey === undefined) return;
    ep.external = {};
    await this.store.endpoints.update(ep);
  }

  /**
   * Replaces the ports an endpoint publishes (Docker's Program/RevokeExternalConnectivity).
   * A host port of 0 gets a free one from `ephemeral`. On failure the old ports stay.
   */
  async setEndpointPorts(
    network: string,
    endpointId: string,
    ports: readonly PortMapping[],
    ephemeral: { first: number; last: number } = { first: 49153, last: 60999 },
  ): Promise<EndpointRecord> {
    const { net, ep } = await this.getEndpoint(network, endpointId);
    if (ports.length > 0 && !canPublishPorts(this.driver(net.driver))) {
      throw invalid("ports-unsupported", `the ${net.driver} driver cannot publish ports`, "ports");
    }
    const next: EndpointRecord = { ...ep };
    await this.store.transaction(async (tx) => {
      const taken = new Set<string>();
      for (const n of await tx.networks.list()) {
        for (const other of await tx.endpoints.listByNetwork(n.id)) {
          if (other.id !== ep.id) for (const p of other.ports) taken.add(`${p.protocol}/${p.hostPort}`);
        }
      }
      const chosen: StoredPortMapping[] = [];
      for (const p of ports) {
        let hostPort = p.hostPort;
        if (hostPort === 0) {
          for (let c = ephemeral.first; c <= ephemeral.last && hostPort === 0; c++) {
            const k = `${p.protocol}/${c}`;
            if (!taken.has(k) && !chosen.some((q) => q.protocol === p.protocol && q.hostPort === c)) hostPort = c;
          }
          if (hostPort === 0) throw unavailable("no-free-port", `no free host port for ${p.containerPort}/${p.protocol}`, "ports");
        }
        chosen.push({ ...(p.hostIP ? { hostIP: p.hostIP } : {}), hostPort, containerPort: p.containerPort, protocol: p.protocol });
      }
      next.ports = chosen;
      this.driver(net.driver).validateEndpoint(net, next);
      if (chosen.length > 0) await assertPortsFree(tx, next);
      await tx.endpoints.update(next);
    });
    try {
      await this.syncFirewall({ endpoint: ep.id });
    } catch (e) {
      await this.store.endpoints.update(ep);
      await this.syncFirewall({ endpoint: ep.id }).catch(() => undefined);
      throw e;
    }
    return next;
  }

  private async nextIfname(containerId: string): Promise<string> {
    const used = new Set((await this.store.endpoints.listByContainer(containerId)).map((e) => e.ifname));
    for (let i = 0; ; i++) if (!used.has(`eth${i}`)) return `eth${i}`;
  }

  // ---------------- firewall ----------------

  /**
   * Brings Berth's nftables tables (and the [::1] forwarders) to the state in the store, in
   * one atomic transaction: `change` names the one endpoint whose record changed (only its
   * elements are recomputed), none means anything may have (networks, start, repairs).
   */
  syncFirewall(change?: FirewallChange): Promise<void> {
    return this.firewall.sync(change);
  }

  /** The whole firewall state the store describes (as the firewall renders it), with the [::1] forwards. */
  async firewallState(): Promise<FirewallState & { loopback6: LoopbackForward[] }> {
    const s = await readFirewallState(this.store);
    return { ...flattenState(s), loopback6: [...s.loopback6.values()].flat() };
  }
}

/** Whether Berth's nftables tables hold something of the endpoint: published ports, or (bridge) its source addresses. */
function inFirewall(net: NetworkRecord, ep: EndpointRecord): boolean {
  return ep.ports.length > 0 || net.driver === "bridge";
}

function overlapsHost(a: IP | undefined, b: IP | undefined): boolean {
  // no host address means every address of the host, which overlaps everything;
  // 0.0.0.0 / :: mean every address of their family
  if (a === undefined || b === undefined) return true;
  if (a.family !== b.family) return false;
  return a.isUnspecified() || b.isUnspecified() || a.equals(b);
}

async function assertPortsFree(tx: Store, ep: EndpointRecord): Promise<void> {
  // mappings by protocol/port, so each check looks at the few sharing its port (was every mapping:
  // quadratic, 4.7 s to publish 10000 ports)
  const byPort = new Map<string, { p: StoredPortMapping; owner: EndpointRecord | undefined }[]>();
  const add = (p: StoredPortMapping, owner: EndpointRecord | undefined) => {
    const k = `${p.protocol}/${p.hostPort}`;
    byPort.set(k, [...(byPort.get(k) ?? []), { p, owner }]);
  };
  for (const net of await tx.networks.list()) {
    for (const other of await tx.endpoints.listByNetwork(net.id)) {
      // an endpoint's own (old) ports never conflict with its new ones
      if (other.id !== ep.id) for (const p of other.ports) add(p, other);
    }
  }
  for (const p of ep.ports) {
    for (const { p: q, owner } of byPort.get(`${p.protocol}/${p.hostPort}`) ?? []) {
      if (overlapsHost(q.hostIP, p.hostIP)) {
        throw conflict(
          "port-allocated",
          `Bind for ${p.hostIP ?? "0.0.0.0"}:${p.hostPort}/${p.protocol} failed: port is already allocated${owner ? ` (container ${owner.containerId.slice(0, 12)})` : ""}`,
          "ports",
        );
      }
    }
    add(p, undefined);
  }
}

/** Docker's name/id filter: the term is a regular expression searched in the value (plain substring if it is not one). */
function dockerMatch(term: string, value: string): boolean {
  try {
    return new RegExp(term).test(value);
  } catch {
    return value.includes(term);
  }
}

function matchesFilter(n: NetworkRecord, f: NetworkFilter): boolean {
  const predefined = (PREDEFINED as readonly string[]).includes(n.name);
  if (f.name && !f.name.some((x) => dockerMatch(x, n.name))) return false;
  if (f.id && !f.id.some((x) => dockerMatch(x, n.id))) return false;
  if (f.driver && !f.driver.includes(n.driver)) return false;
  if (f.scope && !f.scope.includes(n.scope)) return false;
  if (f.type && !f.type.includes(predefined ? "builtin" : "custom")) return false;
  if (f.label) {
    for (const l of f.label) {
      const [k, v] = l.split("=", 2) as [string, string | undefined];
      if (!(k in n.labels)) return false;
      if (v !== undefined && n.labels[k] !== v) return false;
    }
  }
  return true;
}

export { BerthError };
