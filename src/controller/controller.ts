/**
 * The network controller (CNM): pairs each network with its driver and runs the
 * network and endpoint lifecycles over the store, IPAM and the drivers.
 *
 * Every setup is "validate everything, then apply step by step with an undo per
 * step": a failure at any step (including an injected fault) rolls back what was
 * done, so nothing is left half-applied in the store or the kernel. Teardown is
 * idempotent and best effort.
 */
import { Dataplane } from "../dataplane/dataplane.ts";
import type { Driver, DriverContext } from "../drivers/driver.ts";
import { canPublishPorts } from "../drivers/driver.ts";
import { BridgeDriver } from "../drivers/bridge/bridge-driver.ts";
import { parseBridgeOptions } from "../drivers/bridge/options.ts";
import { HostDriver } from "../drivers/host/host-driver.ts";
import { NullDriver } from "../drivers/null/null-driver.ts";
import { BerthError, conflict, forbidden, invalid, notFound } from "../errors.ts";
import { Firewall } from "../firewall/firewall.ts";
import type { FirewallNetwork, FirewallPort, FirewallState } from "../firewall/ruleset.ts";
import { type Ipam } from "../ipam/index.ts";
import { MAC, type IP, validateContainerId, validateIfName, validateNetworkName, validateDnsLabel } from "../net/index.ts";
import { newId, nowIso } from "../store/index.ts";
import type { EndpointRecord, NetworkRecord, Store, StoredPortMapping } from "../store/types.ts";
import { Faults } from "./faults.ts";
import type { ConnectRequest, CreateNetworkRequest, NetworkFilter } from "./types.ts";
import { UndoStack } from "./undo.ts";

export const PREDEFINED = ["bridge", "host", "none"] as const;
export const DEFAULT_BRIDGE_NAME = "berth0";

export interface ControllerOptions {
  store: Store;
  ipam: Ipam;
  dp: Dataplane;
  faults?: Faults;
}

export class Controller {
  readonly store: Store;
  readonly ipam: Ipam;
  readonly dp: Dataplane;
  readonly faults: Faults;
  readonly firewall: Firewall;
  private readonly drivers = new Map<string, Driver>();

  constructor(o: ControllerOptions) {
    this.store = o.store;
    this.ipam = o.ipam;
    this.dp = o.dp;
    this.faults = o.faults ?? new Faults();
    this.firewall = new Firewall(this.dp, this.dp.hostNs);
    const ctx: DriverContext = { dp: this.dp, faults: this.faults, syncFirewall: () => this.syncFirewall() };
    for (const d of [new NullDriver(), new HostDriver(), new BridgeDriver(ctx)]) this.drivers.set(d.name, d);
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
    if (await this.store.networks.find(req.name).then((n) => n?.name === req.name)) {
      throw conflict("network-exists", `network with name ${req.name} already exists`, "Name");
    }
    const id = newId();
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
    };
    if (!driver.needsAddresses && (req.ipam?.config ?? []).length > 0) {
      throw invalid("ipam-unsupported", `the ${driverName} driver does not use IP addresses`, "IPAM.Config");
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
      await this.store.networks.update(net);
      await this.syncFirewall();
      this.faults.hit("createNetwork:after-firewall");
      undo.commit();
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

  async deleteNetwork(idOrName: string): Promise<void> {
    const net = await this.getNetwork(idOrName);
    if ((PREDEFINED as readonly string[]).includes(net.name)) {
      throw forbidden("predefined", `${net.name} is a pre-defined network and cannot be removed`, "network");
    }
    const eps = await this.store.endpoints.listByNetwork(net.id);
    if (eps.length > 0) {
      throw forbidden("network-in-use", `error while removing network: network ${net.name} id ${net.id} has active endpoints`, "network");
    }
    const driver = this.driver(net.driver);
    await driver.deleteNetwork(net);
    await this.ipam.releaseNetwork(net.id);
    await this.store.networks.delete(net.id);
    await this.syncFirewall();
  }

  /** Removes every user network without endpoints; returns their names. */
  async pruneNetworks(f: NetworkFilter = {}): Promise<string[]> {
    const removed: string[] = [];
    for (const n of await this.listNetworks(f)) {
      if ((PREDEFINED as readonly string[]).includes(n.name)) continue;
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
    // a host-network container's sandbox is the host namespace itself
    if (net.driver !== "host") this.dp.requireNetns(req.netns);

    const ep: EndpointRecord = {
      id: newId(),
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
    };
    driver.validateEndpoint(net, ep);
    const sb = { containerId: req.containerId, netns: req.netns };
    const undo = new UndoStack();
    try {
      if (driver.needsAddresses) {
        for (const pool of net.ipam.pools) {
          const fam = pool.subnet.family;
          if (ep.addresses.some((a) => a.ip.family === fam)) continue;
          const requested = fam === 4 ? req.ipv4 : req.ipv6;
          const a = await this.ipam.allocate({
            networkId: net.id,
            containerId: req.containerId,
            ifname,
            family: fam,
            field: `IPAMConfig.IPv${fam}Address`,
            ...(requested ? { requested } : {}),
          });
          ep.addresses.push(a.ipnet);
          if (a.gateway && !net.internal) ep.gateways.push(a.gateway);
        }
        undo.push("addresses", () => this.ipam.release({ networkId: net.id, containerId: req.containerId, ifname }).then(() => undefined));
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
      ep.driverState = await driver.createEndpoint(net, ep);
      undo.push("driver endpoint", () => driver.deleteEndpoint(net, ep));
      await this.store.endpoints.update(ep);
      this.faults.hit("connect:after-create-endpoint");
      await driver.join(net, ep, sb);
      undo.push("join", () => driver.leave(net, ep, sb));
      this.faults.hit("connect:after-join");
      if (ep.ports.length > 0) {
        await this.syncFirewall();
        this.faults.hit("connect:after-firewall");
      }
      undo.commit();
      return ep;
    } catch (e) {
      await undo.rollback();
      if (ep.ports.length > 0) await this.syncFirewall().catch(() => undefined);
      throw e;
    }
  }

  /** Detaches a container from a network. Missing kernel objects are fine (idempotent). */
  async disconnect(network: string, containerId: string, netns: string): Promise<void> {
    const net = await this.getNetwork(network);
    const ep = (await this.store.endpoints.listByNetwork(net.id)).find((e) => e.containerId === containerId);
    if (!ep) {
      throw notFound("endpoint-not-found", `container ${containerId} is not connected to network ${net.name}`, "Container");
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
    await step(() => driver.leave(net, ep, { containerId: ep.containerId, netns }));
    await step(() => driver.deleteEndpoint(net, ep));
    await step(() => this.ipam.release({ networkId: net.id, containerId: ep.containerId, ifname: ep.ifname }));
    await step(() => this.store.endpoints.delete(ep.id));
    if (ep.ports.length > 0) await step(() => this.syncFirewall());
    if (errors[0]) throw errors[0];
  }

  /** Removes every endpoint of a container (used when the container goes away). */
  async disconnectAll(containerId: string, netns: string): Promise<void> {
    const errors: Error[] = [];
    for (const ep of await this.store.endpoints.listByContainer(containerId)) {
      const net = await this.store.networks.get(ep.networkId);
      if (!net) {
        await this.store.endpoints.delete(ep.id);
        continue;
      }
      await this.removeEndpoint(net, ep, netns).catch((e: Error) => errors.push(e));
    }
    if (errors[0]) throw errors[0];
  }

  private async nextIfname(containerId: string): Promise<string> {
    const used = new Set((await this.store.endpoints.listByContainer(containerId)).map((e) => e.ifname));
    for (let i = 0; ; i++) if (!used.has(`eth${i}`)) return `eth${i}`;
  }

  // ---------------- firewall ----------------

  /** Renders Berth's nftables table from the store and applies it atomically. */
  syncFirewall(): Promise<void> {
    return this.firewall.sync(() => this.firewallState());
  }

  async firewallState(): Promise<FirewallState> {
    const networks: FirewallNetwork[] = [];
    const ports: FirewallPort[] = [];
    for (const net of await this.store.networks.list()) {
      if (net.driver !== "bridge") continue;
      const st = net.driverState as { bridge?: string };
      if (!st.bridge) continue;
      const opts = parseBridgeOptions(net.options, net.id);
      networks.push({
        bridge: st.bridge,
        internal: net.internal,
        masquerade: net.internal || !opts.masquerade ? [] : net.ipam.pools.map((p) => p.subnet),
      });
      for (const ep of await this.store.endpoints.listByNetwork(net.id)) {
        for (const p of ep.ports) {
          for (const a of ep.addresses) {
            if (p.hostIP && p.hostIP.family !== a.ip.family) continue;
            ports.push({ hostIP: p.hostIP, protocol: p.protocol, hostPort: p.hostPort, target: a.ip, targetPort: p.containerPort });
          }
        }
      }
    }
    return { networks, ports };
  }
}

function overlapsHost(a: IP | undefined, b: IP | undefined): boolean {
  // no host address means every address of the host, which overlaps everything
  return a === undefined || b === undefined || a.equals(b);
}

async function assertPortsFree(tx: Store, ep: EndpointRecord): Promise<void> {
  const taken: { p: StoredPortMapping; owner: EndpointRecord }[] = [];
  for (const net of await tx.networks.list()) {
    for (const other of await tx.endpoints.listByNetwork(net.id)) for (const p of other.ports) taken.push({ p, owner: other });
  }
  const mine: StoredPortMapping[] = [];
  for (const p of ep.ports) {
    for (const q of [...mine, ...taken.map((t) => t.p)]) {
      if (q.protocol === p.protocol && q.hostPort === p.hostPort && overlapsHost(q.hostIP, p.hostIP)) {
        const owner = taken.find((t) => t.p === q)?.owner;
        throw conflict(
          "port-allocated",
          `Bind for ${p.hostIP ?? "0.0.0.0"}:${p.hostPort}/${p.protocol} failed: port is already allocated${owner ? ` (container ${owner.containerId.slice(0, 12)})` : ""}`,
          "ports",
        );
      }
    }
    mine.push(p);
  }
}

function matchesFilter(n: NetworkRecord, f: NetworkFilter): boolean {
  const predefined = (PREDEFINED as readonly string[]).includes(n.name);
  if (f.name && !f.name.some((x) => n.name.includes(x))) return false;
  if (f.id && !f.id.some((x) => n.id.startsWith(x))) return false;
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
