/**
 * The address search behind dynamic allocation, and pool usage counts. Pure
 * over a TakenLookup, so tests can drive it without a store.
 */
import { type Family, IP, type Prefix } from "../net/index.ts";
import type { AllocationRecord, IpamPoolConfig, Store } from "../store/types.ts";
import { dynamicBounds, edgeReservations, reservedAddresses, usableBetween, usableIn } from "./pools.ts";

export interface PoolUsage {
  subnet: Prefix;
  ipRange?: Prefix;
  /** Usable addresses of the subnet (without network/broadcast/anycast). */
  size: bigint;
  /** Gateway and auxiliary addresses. */
  reserved: number;
  allocated: number;
  /** Addresses still available to dynamic allocation. */
  free: bigint;
}

/** What nextFree needs to know about addresses already taken (from the store, or a Set in tests). */
export interface TakenLookup {
  /** Taken addresses from first to last (inclusive), ascending, at most `limit`. */
  between(first: bigint, last: bigint, limit: number): Promise<bigint[]>;
}

export function storeLookup(store: Store, networkId: string, family: Family): TakenLookup {
  const ip = (v: bigint) => IP.fromBigInt(family, v);
  return {
    between: async (a, b, limit) =>
      (await store.allocations.addressesIn(networkId, ip(a), ip(b), limit)).map((x) => x.value),
  };
}

const CHUNK = 256;

/** The first address from a to b that is neither reserved nor taken. Reads taken addresses in chunks. */
async function firstFreeIn(
  a: bigint,
  b: bigint,
  reserved: ReadonlyMap<bigint, string>,
  taken: TakenLookup,
): Promise<bigint | undefined> {
  let v = a;
  while (v <= b) {
    const chunk = await taken.between(v, b, CHUNK);
    for (const t of chunk) {
      while (v < t && reserved.has(v)) v++;
      if (v < t) return v;
      v = t + 1n;
    }
    if (chunk.length < CHUNK) {
      while (v <= b && reserved.has(v)) v++;
      return v <= b ? v : undefined;
    }
  }
  return undefined;
}

/**
 * The first address after `cursor` (wrapping round) in the pool's dynamic range
 * that is neither reserved nor taken; undefined when there is none. The cost
 * depends on the run of used addresses after the cursor, not on the pool size
 * (except when the pool is full).
 */
export async function nextFree(pool: IpamPoolConfig, cursor: IP | undefined, taken: TakenLookup): Promise<bigint | undefined> {
  const { first, last } = dynamicBounds(pool);
  if (first > last) return undefined;
  const reserved = reservedAddresses(pool);
  const inside = cursor !== undefined && cursor.family === pool.subnet.family && cursor.value >= first;
  const start = inside && cursor.value < last ? cursor.value + 1n : first;
  const after = await firstFreeIn(start, last, reserved, taken);
  if (after !== undefined || start === first) return after;
  return firstFreeIn(first, start - 1n, reserved, taken);
}

export function usage(pool: IpamPoolConfig, allocs: readonly AllocationRecord[]): PoolUsage {
  const edge = edgeReservations(pool.subnet);
  const reserved = reservedAddresses(pool);
  const { first, last } = dynamicBounds(pool);
  const mine = allocs.filter((a) => pool.subnet.contains(a.address));
  const inRange = mine.filter((a) => a.address.value >= first && a.address.value <= last && !reserved.has(a.address.value)).length;
  const out: PoolUsage = {
    subnet: pool.subnet,
    size: usableIn(pool.subnet, edge),
    reserved: reserved.size - edge.size,
    allocated: mine.length,
    free: usableBetween(first, last, reserved) - BigInt(inRange),
  };
  if (pool.ipRange) out.ipRange = pool.ipRange;
  return out;
}
