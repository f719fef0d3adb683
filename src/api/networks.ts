/**
 * The Docker Engine /networks API (the subset the docker CLI and compose use),
 * with Docker's JSON shapes and status codes. The berth CLI uses it too.
 */
import type { Controller } from "../controller/controller.ts";
import { PREDEFINED } from "../controller/controller.ts";
import type { CreateNetworkRequest, NetworkFilter } from "../controller/types.ts";
import { invalid } from "../errors.ts";
import type { PoolSpec } from "../ipam/index.ts";
import type { NetworkRecord } from "../store/types.ts";
import {
  type ApiRequest,
  type ApiResponse,
  asObject,
  type Json,
  ok,
  optBool,
  optString,
  optStringMap,
  parseFilters,
  rejectUnknown,
} from "./http.ts";

const CREATE_FIELDS = [
  "Name", "CheckDuplicate", "Driver", "Scope", "Internal", "Attachable", "Ingress", "IPAM", "EnableIPv4", "EnableIPv6",
  "Options", "Labels", "ConfigOnly", "ConfigFrom",
];
const POOL_FIELDS = ["Subnet", "IPRange", "Gateway", "AuxiliaryAddresses", "AuxAddress"];

/** Parses Docker's create body into a typed request (errors name Docker's field). */
export function parseCreateBody(body: unknown): CreateNetworkRequest {
  const b = asObject(body, "body");
  rejectUnknown(b, CREATE_FIELDS, "network create request");
  const name = optString(b, "Name");
  if (!name) throw invalid("missing-name", "network name (Name) is required", "Name");
  // accepted for Docker compatibility but unused: still type-checked, so a malformed body is a 400
  optBool(b, "CheckDuplicate");
  optString(b, "Scope");
  if (optBool(b, "Ingress")) throw invalid("unsupported", "ingress networks are not supported", "Ingress");
  if (optBool(b, "ConfigOnly")) throw invalid("unsupported", "config-only networks are not supported", "ConfigOnly");
  const cf = b.ConfigFrom;
  if (cf !== undefined && cf !== null && optString(asObject(cf, "ConfigFrom"), "Network")) {
    throw invalid("unsupported", "ConfigFrom is not supported", "ConfigFrom");
  }
  const ipamIn = asObject(b.IPAM, "IPAM");
  rejectUnknown(ipamIn, ["Driver", "Config", "Options"], "IPAM");
  const cfgRaw = ipamIn.Config;
  if (cfgRaw !== undefined && cfgRaw !== null && !Array.isArray(cfgRaw)) throw invalid("bad-type", "IPAM.Config must be a list", "IPAM.Config");
  const config: PoolSpec[] = ((cfgRaw as unknown[] | null | undefined) ?? []).map((c, i) => {
    const f = `IPAM.Config[${i}]`;
    const o = asObject(c, f);
    rejectUnknown(o, POOL_FIELDS, f);
    const spec: PoolSpec = {};
    const subnet = optString(o, "Subnet", `${f}.Subnet`);
    const range = optString(o, "IPRange", `${f}.IPRange`);
    const gw = optString(o, "Gateway", `${f}.Gateway`);
    const aux = optStringMap(o, "AuxiliaryAddresses", `${f}.AuxiliaryAddresses`) ?? optStringMap(o, "AuxAddress", `${f}.AuxAddress`);
    if (subnet) spec.subnet = subnet;
    if (range) spec.ipRange = range;
    if (gw) spec.gateway = gw;
    if (aux) spec.auxAddresses = aux;
    return spec;
  });
  const driver = optString(b, "Driver");
  const ipamDriver = optString(ipamIn, "Driver", "IPAM.Driver");
  const ipamOptions = optStringMap(ipamIn, "Options", "IPAM.Options");
  const options = optStringMap(b, "Options");
  const labels = optStringMap(b, "Labels");
  const req: CreateNetworkRequest = {
    name,
    driver: driver === undefined || driver === "" ? "bridge" : driver,
    internal: optBool(b, "Internal") ?? false,
    enableIPv6: optBool(b, "EnableIPv6") ?? false,
    enableIPv4: optBool(b, "EnableIPv4") ?? true,
    attachable: optBool(b, "Attachable") ?? false,
    options: options ?? {},
    labels: labels ?? {},
    ipam: { config, ...(ipamDriver ? { driver: ipamDriver } : {}), ...(ipamOptions ? { options: ipamOptions } : {}) },
  };
  return req;
}

/** Docker's network JSON. `withContainers` for inspect (list leaves Containers empty like Docker). */
export async function networkJson(ctl: Controller, n: NetworkRecord, withContainers: boolean): Promise<Json> {
  const containers: Json = {};
  if (withContainers) {
    for (const ep of await ctl.store.endpoints.listByNetwork(n.id)) {
      const c = await ctl.store.containers.get(ep.containerId);
      const v4 = ep.addresses.find((a) => a.ip.family === 4);
      const v6 = ep.addresses.find((a) => a.ip.family === 6);
      // endpoints of other hosts (overlay) have no local container record: their first alias is the container's name
      const remote = ep.host !== undefined && ep.host !== ctl.store.host;
      containers[ep.containerId] = {
        Name: c?.name ?? (remote ? ep.aliases[0] : undefined) ?? ep.containerId.slice(0, 12),
        EndpointID: ep.id,
        MacAddress: ep.mac.toString(),
        IPv4Address: v4 ? v4.toString() : "",
        IPv6Address: v6 ? v6.toString() : "",
      };
    }
  }
  const util = n.ipam.pools.length > 0 ? await ctl.ipam.utilisation(n.id) : [];
  return {
    Name: n.name,
    Id: n.id,
    Created: n.created,
    Scope: n.scope,
    Driver: n.driver,
    EnableIPv4: n.ipam.pools.some((p) => p.subnet.family === 4) || n.ipam.pools.length === 0,
    EnableIPv6: n.enableIPv6,
    IPAM: {
      Driver: n.ipam.driver,
      Options: n.ipam.options,
      Config: n.ipam.pools.map((p) => ({
        Subnet: p.subnet.toString(),
        ...(p.ipRange ? { IPRange: p.ipRange.toString() } : {}),
        ...(p.gateway ? { Gateway: p.gateway.toString() } : {}),
        ...(Object.keys(p.auxAddresses).length > 0
          ? { AuxiliaryAddresses: Object.fromEntries(Object.entries(p.auxAddresses).map(([k, v]) => [k, v.toString()])) }
          : {}),
      })),
    },
    Internal: n.internal,
    Attachable: n.attachable,
    Ingress: false,
    ConfigFrom: { Network: "" },
    ConfigOnly: false,
    Containers: containers,
    Options: n.options,
    Labels: n.labels,
    // Berth extension: address usage per pool
    IPAMUtilisation: util.map((u) => ({
      Subnet: u.subnet.toString(),
      Size: Number(u.size),
      Allocated: u.allocated,
      Reserved: u.reserved,
    })),
    BerthDriverState: n.driverState,
  };
}

function toFilter(f: Record<string, string[]>): NetworkFilter {
  const known = ["name", "id", "driver", "label", "scope", "type", "dangling"];
  const out: NetworkFilter = {};
  for (const [k, v] of Object.entries(f)) {
    if (!known.includes(k)) throw invalid("bad-filter", `invalid filter '${k}'`, `filters.${k}`);
    if (k === "dangling") {
      for (const t of v) if (!["true", "false", "1", "0"].includes(t)) throw invalid("bad-filter", `invalid filter 'dangling=${t}'`, "filters.dangling");
    } else if (k === "type") {
      for (const t of v) if (t !== "custom" && t !== "builtin") throw invalid("bad-filter", `invalid filter: 'type'='${t}'`, "filters.type");
      out.type = v as ("custom" | "builtin")[];
    } else {
      (out as Record<string, string[]>)[k] = v;
    }
  }
  return out;
}

export async function handleNetworks(ctl: Controller, req: ApiRequest): Promise<ApiResponse | undefined> {
  const parts = req.path.split("/").filter(Boolean);
  if (parts[0] !== "networks") return undefined;
  const m = req.method;
  if (parts.length === 1 && m === "GET") {
    const filters = parseFilters(req.query.get("filters"));
    const nets = await ctl.listNetworks(toFilter(filters));
    let list = nets;
    const dangling = filters.dangling;
    if (dangling && dangling.length > 0) {
      // Docker: dangling=true -> user networks without endpoints; false -> the others (predefined or in use)
      const only = dangling.includes("true") || dangling.includes("1");
      const used = await Promise.all(nets.map(async (n) => (await ctl.store.endpoints.listByNetwork(n.id)).length > 0));
      const isDangling = (n: NetworkRecord, i: number) => !used[i] && !(PREDEFINED as readonly string[]).includes(n.name);
      list = nets.filter((n, i) => isDangling(n, i) === only);
    }
    return ok(await Promise.all(list.map((n) => networkJson(ctl, n, false))));
  }
  if (parts.length === 2 && parts[1] === "create" && m === "POST") {
    const net = await ctl.createNetwork(parseCreateBody(req.body));
    return ok({ Id: net.id, Warning: "" }, 201);
  }
  if (parts.length === 2 && parts[1] === "prune" && m === "POST") {
    const removed = await ctl.pruneNetworks(toFilter(parseFilters(req.query.get("filters"))));
    return ok({ NetworksDeleted: removed });
  }
  if (parts.length === 2 && m === "GET") {
    return ok(await networkJson(ctl, await ctl.getNetwork(decodeURIComponent(parts[1]!)), true));
  }
  if (parts.length === 2 && m === "DELETE") {
    await ctl.deleteNetwork(decodeURIComponent(parts[1]!));
    return ok(undefined, 204);
  }
  return undefined;
}
