/**
 * Default address pools: where subnets come from when a network is created
 * without one. Same shape as Docker's `default-address-pools`: a base prefix
 * split into subnets of `size`.
 */
import { invalid } from "../errors.ts";
import { type Family, IP, Prefix } from "../net/index.ts";

export interface DefaultPool {
  base: Prefix;
  /** Prefix length of the subnets cut from base. */
  size: number;
}

export interface DefaultPoolSpec {
  base: string | Prefix;
  size: number;
}

/** Docker's defaults: 172.17-31.0.0/16 as /16s, then 192.168.0.0/16 as /20s. */
export const DOCKER_DEFAULT_POOLS: readonly DefaultPoolSpec[] = [
  ...Array.from({ length: 15 }, (_, i) => ({ base: `172.${17 + i}.0.0/16`, size: 16 })),
  { base: "192.168.0.0/16", size: 20 },
];

export function parseDefaultPools(specs: readonly DefaultPoolSpec[], field = "defaultPools"): DefaultPool[] {
  return specs.map((s, i) => {
    const f = `${field}[${i}]`;
    const base = typeof s.base === "string" ? Prefix.parse(s.base, `${f}.base`) : s.base;
    if (!Number.isInteger(s.size) || s.size < base.length || s.size > base.ip.bits) {
      throw invalid(
        "default-pool-size",
        `default pool ${base}: size ${s.size} must be an integer ${base.length}-${base.ip.bits}`,
        `${f}.size`,
      );
    }
    return { base, size: s.size };
  });
}

export const ULA_GLOBAL_ID_BITS = 40n;

export function randomUlaGlobalId(): bigint {
  return BigInt(`0x${Buffer.from(crypto.getRandomValues(new Uint8Array(5))).toString("hex")}`);
}

/** The RFC 4193 ULA /48 fdXX:XXXX:XXXX::/48 for a 40-bit global id, split into /64s. */
export function ulaPool(globalId: bigint): DefaultPool {
  if (globalId < 0n || globalId >> ULA_GLOBAL_ID_BITS !== 0n) {
    throw invalid("ula-global-id", `ULA global id ${globalId} does not fit in 40 bits`);
  }
  const value = (0xfdn << 120n) | (globalId << 80n);
  return { base: Prefix.of(IP.fromBigInt(6, value), 48), size: 64 };
}

/** The first subnet of the pools (of one family) that overlaps none of `taken`. */
export function firstFreeSubnet(pools: readonly DefaultPool[], family: Family, taken: readonly Prefix[]): Prefix | undefined {
  for (const pool of pools) {
    if (pool.base.family !== family) continue;
    const near = taken.filter((t) => t.overlaps(pool.base));
    for (const candidate of pool.base.subnets(pool.size)) {
      if (!near.some((t) => t.overlaps(candidate))) return candidate;
    }
  }
  return undefined;
}
