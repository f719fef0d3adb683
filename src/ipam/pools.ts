/**
 * Pool configuration: parsing the user's strings, checking them, and the
 * address arithmetic every allocation relies on (which addresses of a pool are
 * reserved, how many are usable). No store access here.
 */
import { BerthError, forbidden, invalid } from "../errors.ts";
import { type Family, IP, Prefix } from "../net/index.ts";
import type { IpamPoolConfig } from "../store/types.ts";

/** A pool as the user wrote it (Docker's IPAM.Config entry). All fields optional. */
export interface PoolSpec {
  subnet?: string;
  ipRange?: string;
  gateway?: string;
  auxAddresses?: Record<string, string>;
}

/** A parsed spec; `subnet` is missing when the user wants one chosen. */
export interface ParsedSpec {
  field: string;
  family: Family;
  subnet?: Prefix;
  pool?: IpamPoolConfig;
}

/** Rewords a src/net parse error in the caller's terms ("invalid subnet ..."), keeping code and field. */
function reword(e: unknown, label: string, field: string): never {
  if (e instanceof BerthError) {
    throw invalid(e.code, e.message.replace(/^invalid [^"]*(?=")/, `invalid ${label} `), field);
  }
  throw e;
}

export function parsePrefixField(s: string, label: string, field: string): Prefix {
  try {
    return Prefix.parse(s, field);
  } catch (e) {
    return reword(e, label, field);
  }
}

export function parseIPField(s: string, label: string, field: string): IP {
  try {
    return IP.parse(s, field);
  } catch (e) {
    return reword(e, label, field);
  }
}

/** True when the subnet keeps its first (and for IPv4 last) address out of use. */
function hasEdgeReservations(subnet: Prefix): boolean {
  return subnet.length <= subnet.ip.bits - 2;
}

/**
 * Addresses of the subnet never handed out whatever the config: for IPv4 up to
 * /30 the network and broadcast addresses; for IPv6 up to /126 the
 * subnet-router anycast address. /31, /32, /127 and /128 have none (RFC 3021, 6164).
 */
export function edgeReservations(subnet: Prefix): Map<bigint, string> {
  const out = new Map<bigint, string>();
  if (!hasEdgeReservations(subnet)) return out;
  if (subnet.family === 4) {
    out.set(subnet.first().value, `the network address of ${subnet}`);
    out.set(subnet.last().value, `the broadcast address of ${subnet}`);
  } else {
    out.set(subnet.first().value, `the subnet-router anycast address of ${subnet}`);
  }
  return out;
}

/** Every address of the pool that is never handed out, with the reason. */
export function reservedAddresses(pool: IpamPoolConfig): Map<bigint, string> {
  const out = edgeReservations(pool.subnet);
  if (pool.gateway && !out.has(pool.gateway.value)) out.set(pool.gateway.value, `the gateway of ${pool.subnet}`);
  for (const [name, ip] of Object.entries(pool.auxAddresses)) {
    if (!out.has(ip.value)) out.set(ip.value, `auxiliary address ${name} of ${pool.subnet}`);
  }
  return out;
}

/** Where dynamic addresses come from: the ip-range if set, else the subnet. */
export function dynamicRange(pool: IpamPoolConfig): Prefix {
  return pool.ipRange ?? pool.subnet;
}

/**
 * The first and last address (inclusive) dynamic allocation may hand out: the
 * dynamic range narrowed by rangeStart/rangeEnd when set. `first > last` when
 * they leave nothing.
 */
export function dynamicBounds(pool: IpamPoolConfig): { first: bigint; last: bigint } {
  const range = dynamicRange(pool);
  let first = range.first().value;
  let last = range.last().value;
  if (pool.rangeStart && pool.rangeStart.family === range.family && pool.rangeStart.value > first) first = pool.rangeStart.value;
  if (pool.rangeEnd && pool.rangeEnd.family === range.family && pool.rangeEnd.value < last) last = pool.rangeEnd.value;
  return { first, last };
}

/** Number of addresses of `range` that are not reserved. */
export function usableIn(range: Prefix, reserved: Map<bigint, string>): bigint {
  return usableBetween(range.ip.value, range.last().value, reserved);
}

/** Number of addresses from first to last (inclusive) that are not reserved. */
export function usableBetween(first: bigint, last: bigint, reserved: Map<bigint, string>): bigint {
  if (first > last) return 0n;
  let n = last - first + 1n;
  for (const v of reserved.keys()) if (v >= first && v <= last) n--;
  return n;
}

/** The default gateway: the first usable address, when the subnet has room for one. */
export function defaultGateway(subnet: Prefix): IP | undefined {
  return hasEdgeReservations(subnet) ? subnet.nth(1) : undefined;
}

function checkInside(subnet: Prefix, ip: IP, label: string, field: string): void {
  if (!subnet.contains(ip)) throw invalid("pool-address-outside", `${label} is not inside subnet ${subnet}`, field);
}

/**
 * Parses and checks one spec. Errors name the field, e.g. "IPAM.Config[0].IPRange".
 * Without a subnet, the other fields must be empty (the caller chooses a subnet).
 */
export function parseSpec(spec: PoolSpec, field: string): ParsedSpec {
  const aux = spec.auxAddresses ?? {};
  if (spec.subnet === undefined || spec.subnet === "") {
    const extra = spec.ipRange ? "IPRange" : spec.gateway ? "Gateway" : Object.keys(aux).length ? "AuxiliaryAddresses" : "";
    if (extra) throw invalid("pool-subnet-required", `${field}.${extra} requires a subnet`, `${field}.${extra}`);
    return { field, family: 4 };
  }
  const subnet = parsePrefixField(spec.subnet, "subnet", `${field}.Subnet`);
  const pool: IpamPoolConfig = { subnet, auxAddresses: {} };
  if (spec.ipRange) {
    const f = `${field}.IPRange`;
    const range = parsePrefixField(spec.ipRange, "ip-range", f);
    if (!subnet.containsPrefix(range)) {
      throw invalid("pool-range-outside", `ip-range ${range} is not inside subnet ${subnet}`, f);
    }
    pool.ipRange = range;
  }
  if (spec.gateway) {
    const f = `${field}.Gateway`;
    const gw = parseIPField(spec.gateway, "gateway", f);
    checkInside(subnet, gw, `gateway ${gw}`, f);
    const edge = edgeReservations(subnet).get(gw.value);
    if (edge) throw invalid("pool-gateway-reserved", `gateway ${gw} is ${edge}`, f);
    pool.gateway = gw;
  } else {
    const gw = defaultGateway(subnet);
    if (gw) pool.gateway = gw;
  }
  for (const [name, value] of Object.entries(aux)) {
    const f = `${field}.AuxiliaryAddresses.${name}`;
    const ip = parseIPField(value, "auxiliary address", f);
    checkInside(subnet, ip, `auxiliary address ${name}=${ip}`, f);
    pool.auxAddresses[name] = ip;
  }
  return { field, family: subnet.family, subnet, pool };
}

export const OVERLAP_MESSAGE = "Pool overlaps with other one on this address space";

/** Throws forbidden "pool-overlap" if `subnet` overlaps any of `others`. */
export function checkOverlap(subnet: Prefix, others: Iterable<{ subnet: Prefix; owner: string }>, field: string): void {
  for (const o of others) {
    if (subnet.overlaps(o.subnet)) {
      throw forbidden(
        "pool-overlap",
        `${OVERLAP_MESSAGE}: ${subnet} overlaps with ${o.subnet} of ${o.owner}`,
        field,
      );
    }
  }
}
