/**
 * Docker's remote NetworkDriver and IpamDriver plugin protocol (libnetwork),
 * as pure handlers over the controller. berthd serves them on a unix socket in
 * /run/docker/plugins, so dockerd finds Berth as driver "berth" (the socket's
 * basename) for `docker network create -d berth` and `--ipam-driver berth`.
 *
 * Mapping onto Berth:
 *  - CreateNetwork makes a Berth network with Docker's NetworkID as its id,
 *    named `docker-<id12>` and marked managedBy "docker" (Berth's own API cannot
 *    remove it and prune leaves it alone). The Berth driver behind it is the
 *    generic option `berth.driver` (default bridge); the other generic options
 *    are the driver's options. Pools and gateways are exactly Docker's.
 *  - CreateEndpoint makes an *external* endpoint with exactly Docker's address:
 *    the driver creates its links in the host namespace but does not join;
 *    Join returns the container end as SrcName and dockerd moves, renames and
 *    configures it (it must therefore run in dockerd's network namespace).
 *  - Program/RevokeExternalConnectivity publish the port map through Berth's
 *    nftables table (DNAT, no proxy).
 *  - The IPAM side reserves pools in Berth's IPAM (so Berth's own networks and
 *    Docker's plugin networks never overlap) and allocates addresses from them.
 *
 * Errors: a body that cannot be read (bad JSON, a missing or mistyped field) is
 * HTTP 400; an unknown method 404 (libnetwork treats that as "not
 * implemented"); both carry `Err`, the field dockerd's plugin client reads for
 * non-200 answers (IPAM answers carry `Error` too). A request that is well
 * formed but refused is HTTP 200 with `{"Err": ...}` from the NetworkDriver and
 * `{"Error": ...}` from the IpamDriver, which dockerd shows as "remote: ...".
 */
import { randomBytes } from "node:crypto";
import type { Controller } from "../controller/controller.ts";
import { asBerthError, conflict, forbidden, invalid, notFound } from "../errors.ts";
import { defaultGateway, edgeReservations, type PoolSpec } from "../ipam/index.ts";
import { IP, IPNet, MAC, type PortMapping, type Protocol } from "../net/index.ts";
import { isId, newId } from "../store/index.ts";
import type { EndpointRecord, NetworkRecord } from "../store/types.ts";
import { asObject, type Json, optBool, optString } from "./http.ts";

export const PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json";
/** Generic option (`docker network create -o berth.driver=...`) choosing the Berth driver. */
export const DRIVER_OPTION = "berth.driver";
/** NetworkRecord.managedBy of networks created through the plugin. */
export const DOCKER_MANAGER = "docker";
export const LOCAL_ADDRESS_SPACE = "berth-local";
export const GLOBAL_ADDRESS_SPACE = "berth-global";

const OPT_GENERIC = "com.docker.network.generic";
const OPT_ENABLE_IPV6 = "com.docker.network.enable_ipv6";
const OPT_INTERNAL = "com.docker.network.internal";
const OPT_PORTMAP = "com.docker.network.portmap";
const OPT_MAC = "com.docker.network.endpoint.macaddress";
const REQUEST_ADDRESS_TYPE = "RequestAddressType";
const GATEWAY_TYPE = "com.docker.network.gateway";

export interface PluginResponse {
  status: number;
  body: Json;
}

type Subsystem = "Plugin" | "NetworkDriver" | "IpamDriver";

/** A request that cannot be read: HTTP 400. */
class BadRequest extends Error {}

type Handler = (ctl: Controller, body: Json) => Promise<Json>;

/** A method whose body is parsed first (failures are protocol errors), then run (failures are refusals). */
function method<T>(parse: (b: Json) => T, run: (ctl: Controller, req: T) => Promise<Json>): Handler {
  return async (ctl, body) => {
    let req: T;
    try {
      req = parse(body);
    } catch (e) {
      throw new BadRequest(asBerthError(e).message);
    }
    return run(ctl, req);
  };
}

const noBody = (_: Json): undefined => undefined;
const noop: Handler = method(noBody, async () => ({}));

// ---------------- body readers ----------------

function need(o: Json, key: string): string {
  const v = optString(o, key);
  if (v === undefined || v === "") throw invalid("missing-field", `${key} is required`, key);
  return v;
}

function needId(o: Json, key: string): string {
  const v = need(o, key);
  if (!isId(v)) throw invalid("bad-id", `${key} ${JSON.stringify(v)} must be 64 lowercase hex digits`, key);
  return v;
}

/** "10.0.0.1/24" or "10.0.0.1" -> the address. */
function addressPart(s: string, field: string): IP {
  return s.includes("/") ? IPNet.parse(s, field).ip : IP.parse(s, field);
}

function optMap(o: Json, key: string): Json {
  return asObject(o[key], key);
}

interface NetworkIds {
  networkId: string;
}
interface EndpointIds extends NetworkIds {
  endpointId: string;
}

const networkIds = (b: Json): NetworkIds => ({ networkId: needId(b, "NetworkID") });
const endpointIds = (b: Json): EndpointIds => ({ networkId: needId(b, "NetworkID"), endpointId: needId(b, "EndpointID") });

function parsePoolData(v: unknown, field: string): { spec: PoolSpec; berthSpace: boolean }[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid("bad-type", `${field} must be a list`, field);
  return v.map((x, i) => {
    const f = `${field}[${i}]`;
    const o = asObject(x, f);
    const pool = optString(o, "Pool", `${f}.Pool`);
    if (!pool) throw invalid("missing-field", `${f}.Pool is required`, `${f}.Pool`);
    const spec: PoolSpec = { subnet: pool };
    const gw = optString(o, "Gateway", `${f}.Gateway`);
    if (gw) spec.gateway = addressPart(gw, `${f}.Gateway`).toString();
    const aux = asObject(o.AuxAddresses, `${f}.AuxAddresses`);
    if (Object.keys(aux).length > 0) {
      spec.auxAddresses = {};
      for (const [k, a] of Object.entries(aux)) {
        if (typeof a !== "string") throw invalid("bad-type", `${f}.AuxAddresses.${k} must be a string`, `${f}.AuxAddresses.${k}`);
        spec.auxAddresses[k] = addressPart(a, `${f}.AuxAddresses.${k}`).toString();
      }
    }
    const space = optString(o, "AddressSpace", `${f}.AddressSpace`) ?? "";
    return { spec, berthSpace: space === LOCAL_ADDRESS_SPACE || space === GLOBAL_ADDRESS_SPACE };
  });
}

const PROTOCOL_NUMBERS: Record<number, Protocol> = { 6: "tcp", 17: "udp", 132: "sctp" };

function parsePortMap(v: unknown): PortMapping[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid("bad-type", `${OPT_PORTMAP} must be a list`, OPT_PORTMAP);
  return v.map((x, i) => {
    const f = `${OPT_PORTMAP}[${i}]`;
    const o = asObject(x, f);
    const protoRaw = o.Proto;
    const protocol = typeof protoRaw === "number" ? PROTOCOL_NUMBERS[protoRaw] : typeof protoRaw === "string" ? (protoRaw as Protocol) : undefined;
    if (protocol === undefined || !["tcp", "udp", "sctp"].includes(protocol)) {
      throw invalid("bad-protocol", `${f}.Proto ${JSON.stringify(protoRaw)} is not tcp (6), udp (17) or sctp (132)`, `${f}.Proto`);
    }
    const port = (key: string, min: number): number => {
      const n = o[key] ?? 0;
      if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > 65535) {
        throw invalid("bad-port", `${f}.${key} must be an integer ${min}-65535`, `${f}.${key}`);
      }
      return n;
    };
    const hostIPText = optString(o, "HostIP", `${f}.HostIP`);
    const hostIP = hostIPText ? IP.parse(hostIPText, `${f}.HostIP`) : undefined;
    // an unspecified address means every address, like Docker
    const any = hostIP !== undefined && hostIP.value === 0n;
    // a range (HostPort-HostPortEnd) publishes on its first port; 0 = a free one
    return { hostIP: any ? undefined : hostIP, hostPort: port("HostPort", 0), containerPort: port("Port", 1), protocol };
  });
}

// ---------------- helpers over the controller ----------------

async function dockerNetwork(ctl: Controller, networkId: string): Promise<NetworkRecord> {
  const net = await ctl.store.networks.get(networkId);
  if (!net) throw notFound("network-not-found", `network ${networkId} not found`, "NetworkID");
  if (net.managedBy !== DOCKER_MANAGER) {
    throw forbidden("not-docker-network", `network ${net.name} was not created through the Docker plugin`, "NetworkID");
  }
  return net;
}

function isNotFound(e: unknown): boolean {
  return asBerthError(e).kind === "not-found";
}

function dockerPortMap(ep: EndpointRecord): Json[] {
  const nums: Record<Protocol, number> = { tcp: 6, udp: 17, sctp: 132 };
  const ip = ep.addresses.find((a) => a.ip.family === 4)?.ip ?? ep.addresses[0]?.ip;
  return ep.ports.map((p) => ({
    Proto: nums[p.protocol],
    IP: ip?.toString() ?? "",
    Port: p.containerPort,
    HostIP: p.hostIP?.toString() ?? "",
    HostPort: p.hostPort,
    HostPortEnd: p.hostPort,
  }));
}

// ---------------- NetworkDriver ----------------

const createNetwork = method(
  (b) => {
    const opts = optMap(b, "Options");
    const genericRaw = optMap(opts, OPT_GENERIC);
    const generic: Record<string, string> = {};
    for (const [k, v] of Object.entries(genericRaw)) {
      if (v === null || typeof v === "object") throw invalid("bad-type", `option ${k} must be a string`, `${OPT_GENERIC}.${k}`);
      generic[k] = String(v);
    }
    const v4 = parsePoolData(b.IPv4Data, "IPv4Data");
    const v6 = parsePoolData(b.IPv6Data, "IPv6Data");
    return {
      networkId: needId(b, "NetworkID"),
      generic,
      internal: optBool(opts, OPT_INTERNAL, OPT_INTERNAL) ?? false,
      enableIPv6: optBool(opts, OPT_ENABLE_IPV6, OPT_ENABLE_IPV6) ?? false,
      v4,
      v6,
    };
  },
  async (ctl, r) => {
    const existing = await ctl.store.networks.get(r.networkId);
    if (existing?.managedBy === DOCKER_MANAGER) return {}; // a replayed create
    if (r.v6.length > 0 && !r.enableIPv6) throw invalid("ipv6-not-enabled", "IPv6 pools given but IPv6 is not enabled", "IPv6Data");
    const { [DRIVER_OPTION]: driver, ...options } = r.generic;
    const driverName = driver ?? "bridge";
    // refuse now rather than at the first CreateEndpoint
    if (!ctl.supportsExternalSandboxes(driverName)) {
      throw invalid("external-unsupported", `the ${driverName} driver cannot be used through Docker (it cannot hand endpoints to dockerd)`, DRIVER_OPTION);
    }
    const pools = [...r.v4, ...r.v6];
    await ctl.createNetwork({
      id: r.networkId,
      name: `docker-${r.networkId.slice(0, 12)}`,
      managedBy: DOCKER_MANAGER,
      driver: driverName,
      internal: r.internal,
      enableIPv4: r.v4.length > 0,
      enableIPv6: r.v6.length > 0,
      options,
      ipam: { config: pools.map((p) => p.spec), ...(pools.some((p) => p.berthSpace) ? { claimReserved: true } : {}) },
    });
    return {};
  },
);

const deleteNetwork = method(networkIds, async (ctl, r) => {
  try {
    await dockerNetwork(ctl, r.networkId);
  } catch (e) {
    if (isNotFound(e)) return {}; // teardown is idempotent
    throw e;
  }
  await ctl.deleteNetwork(r.networkId, { managedBy: DOCKER_MANAGER });
  return {};
});

const createEndpoint = method(
  (b) => {
    const ids = endpointIds(b);
    const iface = optMap(b, "Interface");
    const v4 = optString(iface, "Address", "Interface.Address");
    const v6 = optString(iface, "AddressIPv6", "Interface.AddressIPv6");
    const mac = optString(iface, "MacAddress", "Interface.MacAddress");
    return {
      ...ids,
      ipv4: v4 ? IPNet.parse(v4, "Interface.Address").ip : undefined,
      ipv6: v6 ? IPNet.parse(v6, "Interface.AddressIPv6").ip : undefined,
      mac: mac ? MAC.parse(mac, "Interface.MacAddress") : undefined,
    };
  },
  async (ctl, r) => {
    const net = await dockerNetwork(ctl, r.networkId);
    const ep = await ctl.connect({
      network: net.id,
      containerId: r.endpointId,
      endpointId: r.endpointId,
      netns: "",
      external: true,
      ...(r.ipv4 ? { ipv4: r.ipv4 } : {}),
      ...(r.ipv6 ? { ipv6: r.ipv6 } : {}),
      ...(r.mac ? { mac: r.mac } : {}),
    });
    // Docker refuses a driver that changes what it already set, so only fill in the gaps
    const out: Json = {};
    const a4 = ep.addresses.find((a) => a.ip.family === 4);
    const a6 = ep.addresses.find((a) => a.ip.family === 6);
    if (!r.ipv4 && a4) out.Address = a4.toString();
    if (!r.ipv6 && a6) out.AddressIPv6 = a6.toString();
    if (!r.mac) out.MacAddress = ep.mac.toString();
    return { Interface: out };
  },
);

const endpointOperInfo = method(endpointIds, async (ctl, r) => {
  await dockerNetwork(ctl, r.networkId);
  const { ep } = await ctl.getEndpoint(r.networkId, r.endpointId);
  return {
    Value: {
      [OPT_MAC]: ep.mac.toString(),
      [OPT_PORTMAP]: dockerPortMap(ep),
      "berth.addresses": ep.addresses.map((a) => a.toString()),
      ...(typeof ep.driverState.hostIfname === "string" ? { "berth.host-interface": ep.driverState.hostIfname } : {}),
    },
  };
});

const deleteEndpoint = method(endpointIds, async (ctl, r) => {
  await ctl.removeExternalEndpoint(r.networkId, r.endpointId);
  return {};
});

const join = method(
  (b) => ({ ...endpointIds(b), sandboxKey: need(b, "SandboxKey") }),
  async (ctl, r) => {
    await dockerNetwork(ctl, r.networkId);
    const { net, ep, link } = await ctl.joinExternal(r.networkId, r.endpointId, r.sandboxKey);
    // overlay: no gateway on the network; without one Docker adds docker_gwbridge as the way out
    const gateways = ctl.leavesThroughGatewayBridge(net) ? [] : ep.gateways;
    const gw4 = gateways.find((g) => g.family === 4);
    const gw6 = gateways.find((g) => g.family === 6);
    return {
      InterfaceName: { SrcName: link, DstPrefix: "eth" },
      ...(gw4 ? { Gateway: gw4.toString() } : {}),
      ...(gw6 ? { GatewayIPv6: gw6.toString() } : {}),
      // an internal network has no way out: Docker must not add docker_gwbridge for it
      DisableGatewayService: net.internal,
    };
  },
);

const leave = method(endpointIds, async (ctl, r) => {
  try {
    await ctl.leaveExternal(r.networkId, r.endpointId);
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  return {};
});

const programExternalConnectivity = method(
  (b) => ({ ...endpointIds(b), ports: parsePortMap(optMap(b, "Options")[OPT_PORTMAP]) }),
  async (ctl, r) => {
    await dockerNetwork(ctl, r.networkId);
    await ctl.setEndpointPorts(r.networkId, r.endpointId, r.ports);
    return {};
  },
);

const revokeExternalConnectivity = method(endpointIds, async (ctl, r) => {
  try {
    await ctl.setEndpointPorts(r.networkId, r.endpointId, []);
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  return {};
});

// ---------------- IpamDriver ----------------

const requestPool = method(
  (b) => {
    const pool = optString(b, "Pool") ?? "";
    const subPool = optString(b, "SubPool") ?? "";
    if (subPool && !pool) throw invalid("bad-subpool", "SubPool requires Pool", "SubPool");
    optMap(b, "Options");
    return { addressSpace: optString(b, "AddressSpace") ?? LOCAL_ADDRESS_SPACE, pool, subPool, v6: optBool(b, "V6") ?? false };
  },
  async (ctl, r) => {
    if (r.addressSpace !== LOCAL_ADDRESS_SPACE && r.addressSpace !== GLOBAL_ADDRESS_SPACE) {
      throw invalid("unknown-address-space", `unknown address space ${JSON.stringify(r.addressSpace)}; Berth has ${LOCAL_ADDRESS_SPACE} and ${GLOBAL_ADDRESS_SPACE}`, "AddressSpace");
    }
    const res = await ctl.ipam.reservePool({
      id: `berthpool-${randomBytes(8).toString("hex")}`,
      owner: DOCKER_MANAGER,
      family: r.v6 ? 6 : 4,
      ...(r.pool ? { subnet: r.pool } : {}),
      ...(r.subPool ? { ipRange: r.subPool } : {}),
      field: "Pool",
    });
    return { PoolID: res.id, Pool: res.pool.subnet.toString(), Data: {} };
  },
);

const releasePool = method(
  (b) => ({ poolId: need(b, "PoolID") }),
  async (ctl, r) => {
    await ctl.ipam.releaseReservedPool(r.poolId);
    return {};
  },
);

const requestAddress = method(
  (b) => {
    const opts = asObject(b.Options, "Options");
    const address = optString(b, "Address") ?? "";
    return {
      poolId: need(b, "PoolID"),
      address: address ? addressPart(address, "Address") : undefined,
      gateway: opts[REQUEST_ADDRESS_TYPE] === GATEWAY_TYPE,
    };
  },
  async (ctl, r) => {
    const res = await ctl.ipam.reservedPool(r.poolId);
    if (!res) throw notFound("pool-not-found", `address pool ${r.poolId} not found`, "PoolID");
    const subnet = res.pool.subnet;
    if (r.gateway) {
      const updated = await ctl.ipam.updateReservedPool(r.poolId, async (pool, tx) => {
        const gw = r.address ?? defaultGateway(subnet);
        if (!gw) throw invalid("no-gateway", `subnet ${subnet} has no room for a gateway`, "Address");
        if (!subnet.contains(gw)) throw invalid("address-out-of-range", `gateway ${gw} is not inside subnet ${subnet}`, "Address");
        const edge = edgeReservations(subnet).get(gw.value);
        if (edge) throw invalid("address-reserved", `gateway ${gw} is ${edge}`, "Address");
        if (pool.gateway && !pool.gateway.equals(gw)) throw conflict("gateway-exists", `pool ${r.poolId} already has gateway ${pool.gateway}`, "Address");
        if (await tx.allocations.byAddress(r.poolId, gw)) throw conflict("address-in-use", `address ${gw} is already in use`, "Address");
        pool.gateway = gw;
        return pool;
      });
      return { Address: IPNet.of(updated.pool.gateway!, subnet.length).toString(), Data: {} };
    }
    const a = await ctl.ipam.allocate({
      networkId: r.poolId,
      containerId: newId(),
      ifname: "docker",
      family: subnet.family,
      pools: [res.pool],
      field: "Address",
      ...(r.address ? { requested: r.address } : {}),
    });
    return { Address: a.ipnet.toString(), Data: {} };
  },
);

const releaseAddress = method(
  (b) => ({ poolId: need(b, "PoolID"), address: addressPart(need(b, "Address"), "Address") }),
  async (ctl, r) => {
    const res = await ctl.ipam.reservedPool(r.poolId);
    if (!res) return {};
    if (res.pool.gateway?.equals(r.address)) {
      await ctl.ipam.updateReservedPool(r.poolId, (pool) => {
        const { gateway: _, ...rest } = pool;
        return rest;
      });
      return {};
    }
    const held = await ctl.store.allocations.byAddress(r.poolId, r.address);
    if (held) await ctl.ipam.release({ networkId: held.networkId, containerId: held.containerId, ifname: held.ifname });
    return {};
  },
);

// ---------------- dispatch ----------------

const METHODS: Record<string, Handler> = {
  "/Plugin.Activate": method(noBody, async () => ({ Implements: ["NetworkDriver", "IpamDriver"] })),
  "/NetworkDriver.GetCapabilities": method(noBody, async () => ({ Scope: "local", ConnectivityScope: "local" })),
  "/NetworkDriver.CreateNetwork": createNetwork,
  "/NetworkDriver.DeleteNetwork": deleteNetwork,
  "/NetworkDriver.CreateEndpoint": createEndpoint,
  "/NetworkDriver.EndpointOperInfo": endpointOperInfo,
  "/NetworkDriver.DeleteEndpoint": deleteEndpoint,
  "/NetworkDriver.Join": join,
  "/NetworkDriver.Leave": leave,
  "/NetworkDriver.ProgramExternalConnectivity": programExternalConnectivity,
  "/NetworkDriver.RevokeExternalConnectivity": revokeExternalConnectivity,
  "/NetworkDriver.DiscoverNew": noop,
  "/NetworkDriver.DiscoverDelete": noop,
  "/NetworkDriver.AllocateNetwork": noop,
  "/NetworkDriver.FreeNetwork": noop,
  "/IpamDriver.GetCapabilities": method(noBody, async () => ({ RequiresMACAddress: false, RequiresRequestReplay: false })),
  "/IpamDriver.GetDefaultAddressSpaces": method(noBody, async () => ({
    LocalDefaultAddressSpace: LOCAL_ADDRESS_SPACE,
    GlobalDefaultAddressSpace: GLOBAL_ADDRESS_SPACE,
  })),
  "/IpamDriver.RequestPool": requestPool,
  "/IpamDriver.ReleasePool": releasePool,
  "/IpamDriver.RequestAddress": requestAddress,
  "/IpamDriver.ReleaseAddress": releaseAddress,
};

export const PLUGIN_METHODS: readonly string[] = Object.keys(METHODS);

function subsystemOf(path: string): Subsystem | undefined {
  const m = /^\/(Plugin|NetworkDriver|IpamDriver)\./.exec(path);
  return m ? (m[1] as Subsystem) : undefined;
}

/** The error body of a subsystem: IPAM uses `Error`, everything else `Err`. */
function errorBody(sub: Subsystem | undefined, message: string, status: number): Json {
  if (sub === "IpamDriver") return status === 200 ? { Error: message } : { Err: message, Error: message };
  return { Err: message };
}

/**
 * Handles one plugin call: `path` like "/NetworkDriver.Join", `body` the raw
 * request text (empty for Activate and GetCapabilities).
 */
export async function handlePluginCall(ctl: Controller, path: string, body: string): Promise<PluginResponse> {
  const sub = subsystemOf(path);
  const h = METHODS[path];
  if (!h) return { status: 404, body: errorBody(sub, `unknown plugin method ${path}`, 404) };
  let parsed: unknown;
  if (body.trim() !== "") {
    try {
      parsed = JSON.parse(body);
    } catch (e) {
      return { status: 400, body: errorBody(sub, `invalid JSON body: ${(e as Error).message}`, 400) };
    }
  }
  try {
    if (parsed !== undefined && (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))) {
      throw new BadRequest("the request body must be a JSON object");
    }
    return { status: 200, body: await h(ctl, (parsed ?? {}) as Json) };
  } catch (e) {
    if (e instanceof BadRequest) return { status: 400, body: errorBody(sub, e.message, 400) };
    return { status: 200, body: errorBody(sub, asBerthError(e).message, 200) };
  }
}
