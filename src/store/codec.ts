/**
 * Record <-> JSON text for implementations that persist records as documents
 * (the SQLite store keeps one JSON column per row; etcd will keep one value per
 * key). Typed values become their canonical string forms.
 */
import { IP, IPNet, MAC, Prefix } from "../net/index.ts";
import type {
  ContainerRecord,
  EndpointRecord,
  IpamPoolConfig,
  NetworkRecord,
  StoredPortMapping,
} from "./types.ts";

interface PoolJson {
  subnet: string;
  ipRange?: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
  auxAddresses: Record<string, string>;
}
type NetworkJson = Omit<NetworkRecord, "ipam"> & {
  ipam: { driver: string; options: Record<string, string>; pools: PoolJson[] };
};
interface PortJson {
  hostIP?: string;
  hostPort: number;
  containerPort: number;
  protocol: StoredPortMapping["protocol"];
}
type EndpointJson = Omit<EndpointRecord, "mac" | "addresses" | "gateways" | "ports"> & {
  mac: string;
  addresses: string[];
  gateways: string[];
  ports: PortJson[];
};

function mapValues<A, B>(o: Record<string, A>, f: (a: A) => B): Record<string, B> {
  const out: Record<string, B> = {};
  for (const [k, v] of Object.entries(o)) out[k] = f(v);
  return out;
}

function poolToJson(p: IpamPoolConfig): PoolJson {
  const j: PoolJson = { subnet: p.subnet.toString(), auxAddresses: mapValues(p.auxAddresses, (ip) => ip.toString()) };
  if (p.ipRange) j.ipRange = p.ipRange.toString();
  if (p.rangeStart) j.rangeStart = p.rangeStart.toString();
  if (p.rangeEnd) j.rangeEnd = p.rangeEnd.toString();
  if (p.gateway) j.gateway = p.gateway.toString();
  return j;
}

function poolFromJson(j: PoolJson): IpamPoolConfig {
  const p: IpamPoolConfig = { subnet: Prefix.parse(j.subnet), auxAddresses: mapValues(j.auxAddresses, (s) => IP.parse(s)) };
  if (j.ipRange !== undefined) p.ipRange = Prefix.parse(j.ipRange);
  if (j.rangeStart !== undefined) p.rangeStart = IP.parse(j.rangeStart);
  if (j.rangeEnd !== undefined) p.rangeEnd = IP.parse(j.rangeEnd);
  if (j.gateway !== undefined) p.gateway = IP.parse(j.gateway);
  return p;
}

export function encodeNetwork(r: NetworkRecord): string {
  const j: NetworkJson = { ...r, ipam: { ...r.ipam, pools: r.ipam.pools.map(poolToJson) } };
  return JSON.stringify(j);
}

export function decodeNetwork(text: string): NetworkRecord {
  const j = JSON.parse(text) as NetworkJson;
  return { ...j, ipam: { ...j.ipam, pools: j.ipam.pools.map(poolFromJson) } };
}

function portToJson(p: StoredPortMapping): PortJson {
  const j: PortJson = { hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol };
  if (p.hostIP) j.hostIP = p.hostIP.toString();
  return j;
}

function portFromJson(j: PortJson): StoredPortMapping {
  const p: StoredPortMapping = { hostPort: j.hostPort, containerPort: j.containerPort, protocol: j.protocol };
  if (j.hostIP !== undefined) p.hostIP = IP.parse(j.hostIP);
  return p;
}

export function encodeEndpoint(r: EndpointRecord): string {
  const j: EndpointJson = {
    ...r,
    mac: r.mac.toString(),
    addresses: r.addresses.map((a) => a.toString()),
    gateways: r.gateways.map((g) => g.toString()),
    ports: r.ports.map(portToJson),
  };
  return JSON.stringify(j);
}

export function decodeEndpoint(text: string): EndpointRecord {
  const j = JSON.parse(text) as EndpointJson;
  return {
    ...j,
    mac: MAC.parse(j.mac),
    addresses: j.addresses.map((a) => IPNet.parse(a)),
    gateways: j.gateways.map((g) => IP.parse(g)),
    ports: j.ports.map(portFromJson),
  };
}

export function encodeContainer(r: ContainerRecord): string {
  return JSON.stringify(r);
}

export function decodeContainer(text: string): ContainerRecord {
  return JSON.parse(text) as ContainerRecord;
}
