/**
 * IPAM: pools, subnets, ranges, reservations and GC, as pure logic over a Store.
 *
 *   const ipam = new Ipam(store, { defaultPools?, ulaGlobalId?, now? });
 *
 *   ipam.using(tx): Ipam
 *       The same Ipam working on another store handle (a transaction's `tx`).
 *   ipam.validatePools(req: PoolsRequest): ParsedSpec[]
 *       Syntax and containment only, no store access: subnet parses, ip-range,
 *       gateway and aux addresses lie inside it, gateway is not the network or
 *       broadcast address. Errors are `invalid` and name the field
 *       ("IPAM.Config[0].IPRange").
 *   ipam.preparePools(req: PoolsRequest): Promise<IpamPoolConfig[]>
 *       validatePools + no overlap with other networks (forbidden "pool-overlap",
 *       Docker's message) + a subnet chosen from the default pools for each
 *       enabled family that has none + default gateways filled in. Writes
 *       nothing but the ULA global id. Run it in the same transaction that
 *       creates the network: `store.transaction(tx => ipam.using(tx).preparePools(..) ...)`.
 *   ipam.chooseSubnet(family, taken?): Promise<Prefix>
 *       The first default subnet overlapping no network (and none of `taken`).
 *   ipam.allocate(req: AllocateRequest): Promise<Allocation>
 *       One address for (networkId, containerId, ifname, family), in ONE store
 *       transaction. Idempotent per key. `requested` = static address (inside a
 *       subnet; conflict "address-in-use" if taken or reserved); otherwise the
 *       next free address after the last one handed out (round-robin), from the
 *       ip-range if set. Nothing left: unavailable "pool-exhausted".
 *   ipam.release(key, family?): Promise<AllocationRecord[]>   what was released
 *   ipam.releaseNetwork(networkId): Promise<AllocationRecord[]>
 *   ipam.utilisation(networkId, pools?): Promise<PoolUsage[]>
 *   ipam.gc(live: Iterable<AllocationKey>, scope?: { networkId? }): Promise<AllocationRecord[]>
 *       Releases every allocation (in scope) whose key is not live.
 *
 * Addresses never handed out: IPv4 network and broadcast (subnets up to /30),
 * the IPv6 subnet-router anycast address (up to /126), the gateway, and the
 * auxiliary addresses. The default gateway is the subnet's first usable address.
 */
import { conflict, invalid, notFound, unavailable } from "../errors.ts";
import { type Family, IP, IPNet, type Prefix } from "../net/index.ts";
import type { AllocationKey, AllocationRecord, IpamPoolConfig, Store } from "../store/types.ts";
import {
  type DefaultPool,
  type DefaultPoolSpec,
  DOCKER_DEFAULT_POOLS,
  firstFreeSubnet,
  parseDefaultPools,
  randomUlaGlobalId,
  ulaPool,
} from "./defaults.ts";
import { nextFree, type PoolUsage, storeLookup, usage } from "./allocator.ts";
import {
  checkOverlap,
  edgeReservations,
  type ParsedSpec,
  type PoolSpec,
  parseIPField,
  parseSpec,
  reservedAddresses,
} from "./pools.ts";

export type { PoolUsage } from "./allocator.ts";

export interface IpamOptions {
  /** Default pools. IPv4 entries replace Docker's defaults, IPv6 entries replace the ULA /48. */
  defaultPools?: readonly DefaultPoolSpec[];
  /** The 40-bit ULA global id; otherwise random, made once and kept in meta "ipam.ula-global-id". */
  ulaGlobalId?: bigint;
  now?: () => Date;
}

export interface PoolsRequest {
  pools: readonly PoolSpec[];
  /** Choose an IPv4 subnet if none is given (default true). */
  ipv4?: boolean;
  /** Choose an IPv6 subnet if none is given; IPv6 pools are refused without it (default false). */
  ipv6?: boolean;
  /** Field prefix for errors (default "IPAM.Config"). */
  field?: string;
  /** A network being re-validated: its own subnets are not overlaps. */
  networkId?: string;
  /** Subnets automatic choice must avoid too (e.g. the host's routes). */
  avoid?: readonly Prefix[];
}

export interface AllocateRequest extends AllocationKey {
  family: Family;
  /** A static address: inside one of the family's subnets (the ip-range only limits dynamic ones). */
  requested?: IP | string;
  /** Field named in errors about `requested`. */
  field?: string;
  /** Pools to use instead of the network record's (callers without one, e.g. CNI host-local). */
  pools?: readonly IpamPoolConfig[];
}

export interface Allocation extends AllocationRecord {
  /** The address with its subnet's length, e.g. 10.0.0.2/24. */
  ipnet: IPNet;
  gateway?: IP;
}

const ULA_META_KEY = "ipam.ula-global-id";

function keyString(k: AllocationKey): string {
  return `${k.networkId}\u0000${k.containerId}\u0000${k.ifname}`;
}

export class Ipam {
  private readonly defaults: DefaultPool[];

  constructor(
    private readonly store: Store,
    private readonly options: IpamOptions = {},
    defaults?: DefaultPool[],
  ) {
    this.defaults = defaults ?? parseDefaultPools(options.defaultPools ?? []);
  }

  using(store: Store): Ipam {
    return new Ipam(store, this.options, this.defaults);
  }

  validatePools(req: PoolsRequest): ParsedSpec[] {
    const field = req.field ?? "IPAM.Config";
    const specs = req.pools.map((p, i) => parseSpec(p, `${field}[${i}]`));
    for (const s of specs) {
      if (s.subnet && s.family === 6 && req.ipv6 !== true) {
        throw invalid("ipv6-not-enabled", `IPv6 subnet ${s.subnet} given but IPv6 is not enabled`, `${s.field}.Subnet`);
      }
      if (s.subnet && s.family === 4 && req.ipv4 === false) {
        throw invalid("ipv4-not-enabled", `IPv4 subnet ${s.subnet} given but IPv4 is not enabled`, `${s.field}.Subnet`);
      }
    }
    return specs;
  }

  async preparePools(req: PoolsRequest): Promise<IpamPoolConfig[]> {
    const specs = this.validatePools(req);
    const others = (await this.store.networks.list())
      .filter((n) => n.id !== req.networkId)
      .flatMap((n) => n.ipam.pools.map((p) => ({ subnet: p.subnet, owner: `network ${n.name}` })));
    const out: IpamPoolConfig[] = [];
    const mine: { subnet: Prefix; owner: string }[] = [];
    for (const s of specs) {
      if (!s.subnet || !s.pool) continue;
      checkOverlap(s.subnet, [...others, ...mine], `${s.field}.Subnet`);
      mine.push({ subnet: s.subnet, owner: s.field });
      out.push(s.pool);
    }
    const avoid = [...others.map((o) => o.subnet), ...(req.avoid ?? [])];
    for (const family of [4, 6] as const) {
      const wanted = family === 4 ? req.ipv4 !== false : req.ipv6 === true;
      if (!wanted || out.some((p) => p.subnet.family === family)) continue;
      const subnet = await this.chooseSubnet(family, avoid);
      out.push(parseSpec({ subnet: subnet.toString() }, "auto").pool ?? { subnet, auxAddresses: {} });
    }
    return out;
  }

  async chooseSubnet(family: Family, taken: readonly Prefix[] = []): Promise<Prefix> {
    const existing = (await this.store.networks.list()).flatMap((n) => n.ipam.pools.map((p) => p.subnet));
    const subnet = firstFreeSubnet(await this.defaultsFor(family), family, [...existing, ...taken]);
    if (!subnet) {
      throw unavailable(
        "no-available-pool",
        `could not find an available, non-overlapping IPv${family} address pool among the defaults to assign to the network`,
      );
    }
    return subnet;
  }

  private async defaultsFor(family: Family): Promise<DefaultPool[]> {
    const own = this.defaults.filter((p) => p.base.family === family);
    if (own.length > 0) return own;
    if (family === 4) return parseDefaultPools(DOCKER_DEFAULT_POOLS);
    return [ulaPool(await this.ulaGlobalId())];
  }

  private ulaGlobalId(): Promise<bigint> {
    const fixed = this.options.ulaGlobalId;
    if (fixed !== undefined) return Promise.resolve(fixed);
    return this.store.transaction(async (tx) => {
      const saved = await tx.meta.get(ULA_META_KEY);
      if (saved !== undefined) return BigInt(`0x${saved}`);
      const id = randomUlaGlobalId();
      await tx.meta.set(ULA_META_KEY, id.toString(16).padStart(10, "0"));
      return id;
    });
  }

  async allocate(req: AllocateRequest): Promise<Allocation> {
    const field = req.field ?? "address";
    const requested =
      typeof req.requested === "string" ? parseIPField(req.requested, "address", field) : req.requested;
    if (requested && requested.family !== req.family) {
      throw invalid("address-family", `address ${requested} is not an IPv${req.family} address`, field);
    }
    return this.store.transaction(async (tx) => {
      const key: AllocationKey = { networkId: req.networkId, containerId: req.containerId, ifname: req.ifname };
      const pools = (req.pools ?? (await poolsOf(tx, req.networkId))).filter((p) => p.subnet.family === req.family);
      const held = (await tx.allocations.get(key)).find((a) => a.family === req.family);
      if (held) {
        if (requested && !requested.equals(held.address)) {
          throw conflict(
            "allocation-mismatch",
            `${req.containerId} ${req.ifname} already holds ${held.address} in network ${req.networkId}, not ${requested}`,
            field,
          );
        }
        return decorate(held, pools);
      }
      if (pools.length === 0) {
        throw invalid("no-pool", `network ${req.networkId} has no IPv${req.family} pool`, field);
      }
      const rec: AllocationRecord = { ...key, family: req.family, ...(await this.pick(tx, req, pools, requested)) };
      await tx.allocations.insert(rec);
      if (!requested) await tx.allocations.setCursor(req.networkId, rec.subnet, rec.address);
      return decorate(rec, pools);
    });
  }

  /** The address for a new allocation (inside the caller's transaction). */
  private async pick(
    tx: Store,
    req: AllocateRequest,
    pools: readonly IpamPoolConfig[],
    requested: IP | undefined,
  ): Promise<{ address: IP; subnet: Prefix; created: string }> {
    const created = (this.options.now?.() ?? new Date()).toISOString();
    const field = req.field ?? "address";
    if (requested) {
      const pool = pools.find((p) => p.subnet.contains(requested));
      if (!pool) {
        const subnets = pools.map((p) => p.subnet.toString()).join(", ");
        throw invalid("address-out-of-range", `address ${requested} is not inside subnet ${subnets}`, field);
      }
      const edge = edgeReservations(pool.subnet).get(requested.value);
      if (edge) throw invalid("address-reserved", `address ${requested} is ${edge}`, field);
      const why = reservedAddresses(pool).get(requested.value);
      if (why) throw conflict("address-in-use", `address ${requested} is already in use (${why})`, field);
      if (await tx.allocations.byAddress(req.networkId, requested)) {
        throw conflict("address-in-use", `address ${requested} is already in use`, field);
      }
      return { address: requested, subnet: pool.subnet, created };
    }
    const taken = storeLookup(tx, req.networkId, req.family);
    for (const pool of pools) {
      const cursor = await tx.allocations.getCursor(req.networkId, pool.subnet);
      const v = await nextFree(pool, cursor, taken);
      if (v !== undefined) return { address: IP.fromBigInt(req.family, v), subnet: pool.subnet, created };
    }
    const names = pools.map((p) => (p.ipRange ? `${p.subnet} (ip-range ${p.ipRange})` : p.subnet.toString()));
    throw unavailable("pool-exhausted", `no available IPv${req.family} addresses in subnet ${names.join(", ")}`);
  }

  release(key: AllocationKey, family?: Family): Promise<AllocationRecord[]> {
    return this.store.allocations.delete(key, family);
  }

  releaseNetwork(networkId: string): Promise<AllocationRecord[]> {
    return this.store.allocations.deleteNetwork(networkId);
  }

  utilisation(networkId: string, pools?: readonly IpamPoolConfig[]): Promise<PoolUsage[]> {
    return this.store.transaction(async (tx) => {
      const own = pools ?? (await poolsOf(tx, networkId));
      const allocs = await tx.allocations.list({ networkId });
      return own.map((pool) => usage(pool, allocs));
    });
  }

  gc(live: Iterable<AllocationKey>, scope: { networkId?: string } = {}): Promise<AllocationRecord[]> {
    const keep = new Set<string>();
    for (const k of live) keep.add(keyString(k));
    return this.store.transaction(async (tx) => {
      const filter = scope.networkId === undefined ? {} : { networkId: scope.networkId };
      const dead = new Map<string, AllocationKey>();
      for (const a of await tx.allocations.list(filter)) {
        const k = keyString(a);
        if (!keep.has(k)) dead.set(k, { networkId: a.networkId, containerId: a.containerId, ifname: a.ifname });
      }
      const released: AllocationRecord[] = [];
      for (const k of dead.values()) released.push(...(await tx.allocations.delete(k)));
      return released;
    });
  }
}

async function poolsOf(store: Store, networkId: string): Promise<IpamPoolConfig[]> {
  const net = await store.networks.get(networkId);
  if (!net) throw notFound("network-not-found", `network ${networkId} not found`);
  return net.ipam.pools;
}

function decorate(rec: AllocationRecord, pools: readonly IpamPoolConfig[]): Allocation {
  const out: Allocation = { ...rec, ipnet: IPNet.of(rec.address, rec.subnet.length) };
  const gw = pools.find((p) => p.subnet.equals(rec.subnet))?.gateway;
  if (gw) out.gateway = gw;
  return out;
}
