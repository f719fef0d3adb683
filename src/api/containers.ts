/**
 * Berth's container API (`berth run/ps/rm/exec`) under /berth/containers, and
 * Docker's POST /networks/{id}/connect|disconnect for Berth containers.
 */
import { readFileSync } from "node:fs";
import { invalid } from "../errors.ts";
import { IP, MAC, parsePort, parsePortMappings, type PortMapping, PROTOCOLS, type Protocol } from "../net/index.ts";
import { trace } from "../controller/trace.ts";
import type { ContainerRuntime, ContainerView, IoLimit, NetworkAttachment } from "../runtime/containers.ts";
import type { Controller } from "../controller/controller.ts";
import {
  type ApiRequest,
  type ApiResponse,
  asObject,
  type Json,
  ok,
  optNumber,
  optString,
  optStringArray,
  optStringMap,
  rejectUnknown,
} from "./http.ts";

export function containerJson(c: ContainerView): Json {
  return {
    Id: c.id,
    Name: c.name,
    Command: c.command,
    State: c.state,
    ExitCode: c.exitCode ?? null,
    Pid: c.pid ?? null,
    Created: c.created,
    NetnsName: c.netns,
    NetnsPath: c.netnsPath,
    Cgroup: c.cgroup ?? null,
    CgroupProcs: c.cgroupProcs,
    Limits: c.limits,
    LogPath: c.logPath,
    ResolvConfPath: c.resolvConfPath,
    Labels: c.labels,
    Networks: c.endpoints.map((e) => ({
      NetworkID: e.networkId,
      EndpointID: e.id,
      Ifname: e.ifname,
      MacAddress: e.mac.toString(),
      Addresses: e.addresses.map((a) => a.toString()),
      Gateways: e.gateways.map((g) => g.toString()),
      Ports: e.ports.map((p) => ({ HostIp: p.hostIP?.toString() ?? "", HostPort: p.hostPort, ContainerPort: p.containerPort, Protocol: p.protocol })),
      Aliases: e.aliases,
    })),
  };
}

function parseAttachment(v: unknown, field: string): NetworkAttachment {
  const o = asObject(v, field);
  rejectUnknown(o, ["Network", "Ports", "IPv4Address", "IPv6Address", "Aliases"], field);
  const network = optString(o, "Network", `${field}.Network`);
  if (!network) throw invalid("missing-network", `${field}.Network is required`, `${field}.Network`);
  const ports: PortMapping[] = (optStringArray(o, "Ports", `${field}.Ports`) ?? []).flatMap((p) => parsePortMappings(p, `${field}.Ports`));
  const v4 = optString(o, "IPv4Address", `${field}.IPv4Address`);
  const v6 = optString(o, "IPv6Address", `${field}.IPv6Address`);
  const aliases = optStringArray(o, "Aliases", `${field}.Aliases`);
  return {
    network,
    ports,
    ...(v4 ? { ipv4: IP.parse(v4, `${field}.IPv4Address`) } : {}),
    ...(v6 ? { ipv6: IP.parse(v6, `${field}.IPv6Address`) } : {}),
    ...(aliases ? { aliases } : {}),
  };
}

export async function handleContainers(rt: ContainerRuntime, ctl: Controller, req: ApiRequest): Promise<ApiResponse | undefined> {
  const parts = req.path.split("/").filter(Boolean);
  const m = req.method;
  // Docker: POST /networks/{id}/connect|disconnect
  if (parts[0] === "networks" && parts.length === 3 && m === "POST" && (parts[2] === "connect" || parts[2] === "disconnect")) {
    const net = decodeURIComponent(parts[1]!);
    const b = asObject(req.body, "body");
    const cref = optString(b, "Container");
    if (!cref) throw invalid("missing-container", "Container is required", "Container");
    const c = await rt.find(cref);
    if (parts[2] === "connect") {
      rejectUnknown(b, ["Container", "EndpointConfig"], "connect request");
      const ec = asObject(b.EndpointConfig, "EndpointConfig");
      const ipam = asObject(ec.IPAMConfig, "EndpointConfig.IPAMConfig");
      const v4 = optString(ipam, "IPv4Address", "EndpointConfig.IPAMConfig.IPv4Address");
      const v6 = optString(ipam, "IPv6Address", "EndpointConfig.IPAMConfig.IPv6Address");
      const mac = optString(ec, "MacAddress", "EndpointConfig.MacAddress");
      const aliases = optStringArray(ec, "Aliases", "EndpointConfig.Aliases") ?? [];
      if (c.netns === "" || c.netns === ctl.dp.hostNs) {
        throw invalid("host-network", `container ${c.name} uses the host network and cannot be connected to others`, "Container");
      }
      await ctl.connect({
        network: net,
        containerId: c.id,
        netns: c.netns,
        aliases: [c.name, ...aliases],
        ...(v4 ? { ipv4: IP.parse(v4, "EndpointConfig.IPAMConfig.IPv4Address") } : {}),
        ...(v6 ? { ipv6: IP.parse(v6, "EndpointConfig.IPAMConfig.IPv6Address") } : {}),
        ...(mac ? { mac: MAC.parse(mac, "EndpointConfig.MacAddress") } : {}),
      });
    } else {
      rejectUnknown(b, ["Container", "Force"], "disconnect request");
      await ctl.disconnect(net, c.id, c.netns);
    }
    return ok();
  }
  if (parts[0] === "berth" && parts[1] === "trace" && parts.length === 2 && m === "GET") {
    const src = req.query.get("src") ?? "";
    const dst = req.query.get("dst") ?? "";
    const proto = (req.query.get("proto") ?? "tcp") as Protocol;
    if (!PROTOCOLS.includes(proto)) throw invalid("bad-protocol", `protocol ${JSON.stringify(proto)} must be one of ${PROTOCOLS.join(", ")}`, "proto");
    return ok(await trace(ctl, src, dst, parsePort(req.query.get("port") ?? "", "port"), proto));
  }
  if (parts[0] !== "berth" || parts[1] !== "containers") return undefined;
  const rest = parts.slice(2);
  if (rest.length === 0 && m === "GET") {
    const all = req.query.get("all") !== "0";
    return ok((await rt.list(all)).map(containerJson));
  }
  if (rest.length === 1 && rest[0] === "run" && m === "POST") {
    const b = asObject(req.body, "body");
    rejectUnknown(b, ["Name", "Command", "Networks", "Memory", "Cpus", "Pids", "Labels", "IngressRate", "EgressRate", "IngressBurst", "EgressBurst", ...IO_FIELDS.map(([f]) => f)], "run request");
    const command = optStringArray(b, "Command") ?? [];
    const nets = b.Networks;
    if (nets !== undefined && !Array.isArray(nets)) throw invalid("bad-type", "Networks must be a list", "Networks");
    const name = optString(b, "Name");
    const memory = optNumber(b, "Memory");
    const cpus = optNumber(b, "Cpus");
    const pids = optNumber(b, "Pids");
    // Labels was accepted but never read: a wrong type passed silently and the labels were dropped
    const labels = optStringMap(b, "Labels");
    const view = await rt.run({
      command,
      networks: ((nets as unknown[] | undefined) ?? []).map((n, i) => parseAttachment(n, `Networks[${i}]`)),
      limits: {
        ...(memory !== undefined ? { memoryBytes: memory } : {}),
        ...(cpus !== undefined ? { cpus } : {}),
        ...(pids !== undefined ? { pids } : {}),
        ...bandwidthFields(b),
        ...ioFields(b),
      },
      ...(name ? { name } : {}),
      ...(labels ? { labels } : {}),
    });
    return ok(containerJson(view), 201);
  }
  if (rest.length === 1 && m === "GET") return ok(containerJson(await rt.inspect(decodeURIComponent(rest[0]!))));
  if (rest.length === 1 && m === "DELETE") {
    const force = req.query.get("force") === "1" || req.query.get("force") === "true";
    await rt.remove(decodeURIComponent(rest[0]!), force);
    return ok(undefined, 204);
  }
  if (rest.length === 2 && rest[1] === "wait" && m === "POST") {
    return ok({ StatusCode: await rt.wait(decodeURIComponent(rest[0]!)) });
  }
  if (rest.length === 2 && rest[1] === "logs" && m === "GET") {
    const c = await rt.inspect(decodeURIComponent(rest[0]!));
    let text = "";
    try {
      text = readFileSync(c.logPath, "utf8");
    } catch {
      /* no output yet */
    }
    return { status: 200, text };
  }
  return undefined;
}

/** IngressRate/EgressRate (bit/s) and IngressBurst/EgressBurst (bits) of a run request. */
/** Docker's HostConfig block I/O throttle fields, each a list of {Path, Rate}. */
const IO_FIELDS = [
  ["BlkioDeviceReadBps", "readBps"],
  ["BlkioDeviceWriteBps", "writeBps"],
  ["BlkioDeviceReadIOps", "readIops"],
  ["BlkioDeviceWriteIOps", "writeIops"],
] as const;

function ioFields(b: Json): { io?: IoLimit[] } {
  const byPath = new Map<string, IoLimit>();
  for (const [api, key] of IO_FIELDS) {
    const v = b[api];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v)) throw invalid("bad-type", `${api} must be a list of {Path, Rate}`, api);
    v.forEach((item, i) => {
      const o = asObject(item, `${api}[${i}]`);
      rejectUnknown(o, ["Path", "Rate"], `${api}[${i}]`);
      const path = optString(o, "Path", `${api}[${i}].Path`);
      const rate = optNumber(o, "Rate", `${api}[${i}].Rate`);
      if (!path || rate === undefined) throw invalid("bad-io-limit", `${api}[${i}] needs Path and Rate`, api);
      const cur = byPath.get(path) ?? { path };
      if (cur[key] !== undefined) throw invalid("duplicate-device", `${api} names ${path} twice`, api);
      cur[key] = rate;
      byPath.set(path, cur);
    });
  }
  return byPath.size > 0 ? { io: [...byPath.values()] } : {};
}

function bandwidthFields(b: Json): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [api, key] of [
    ["IngressRate", "ingressRate"],
    ["EgressRate", "egressRate"],
    ["IngressBurst", "ingressBurst"],
    ["EgressBurst", "egressBurst"],
  ] as const) {
    const v = optNumber(b, api);
    if (v !== undefined) out[key] = v;
  }
  return out;
}
