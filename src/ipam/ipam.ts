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
 *   ipam.reservePool(req) / updateReservedPool(id, f) / releaseReservedPool(id) / reservedPools()
 *       Pools held outside any network (Docker's IPAM plugin hands out a pool
 *       before the network exists, or for networks Berth does not own). They
 *       count as taken for overlap checks and automatic choice; their addresses
 *       are allocations whose networkId is the reservation id.
 *
 * Addresses never handed out: IPv4 network and broadcast (subnets up to /30),
 * the IPv6 subnet-router anycast address (up to /126), the gateway, and the
 * auxiliary addresses. The default gateway is the subnet's first usable address.
 */
import { conflict, invalid, notFound, unavailable } from "../errors.ts";
import { type Family, IP, IPNet, Prefix } from "../net/index.ts";
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
  parsePrefixField,
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
  /** A reserved pool with exactly the same subnet as a requested one belongs to this network (not an overlap). */
  claimReserved?: boolean;
}

/** A pool reserved outside any network (see reservePool). */
export interface PoolReservation {
  /** Not a network id: allocations from the pool use it as their networkId. */
  id: string;
  /** Who asked for it, e.g. "docker". */
  owner: string;
  pool: IpamPoolConfig;
  created: string;
}

export interface ReservePoolRequest {
  id: string;
  owner: string;
  family: Family;
  /** A given subnet (checked for overlap), or chosen from the default pools when missing. */
  subnet?: string;
  /** Dynamic addresses come only from here (inside subnet). */
  ipRange?: string;
  field?: string;
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
const RESERVED_META_KEY = "ipam.reserved-pools";

interface ReservationJson {
  id: string;
  owner: string;
  created: string;
  subnet: string;
  ipRange?: string;
  gateway?: string;
  auxAddresses: Record<string, string>;
}

function reservationToJson(r: PoolReservation): ReservationJson {
  const j: ReservationJson = {
    id: r.id,
    owner: r.owner,
    created: r.created,
    subnet: r.pool.subnet.toString(),
    auxAddresses: Object.fromEntries(Object.entries(r.pool.auxAddresses).map(([k, v]) => [k, v.toString()])),
  };
  if (r.pool.ipRange) j.ipRange = r.pool.ipRange.toString();
  if (r.pool.gateway) j.gateway = r.pool.gateway.toString();
  return j;
}

function reservationFromJson(j: ReservationJson): PoolReservation {
  const pool: IpamPoolConfig = {
    subnet: Prefix.parse(j.subnet),
    auxAddresses: Object.fromEntries(Object.entries(j.auxAddresses).map(([k, v]) => [k, IP.parse(v)])),
  };
  if (j.ipRange !== undefined) pool.ipRange = Prefix.parse(j.ipRange);
  if (j.gateway !== undefined) pool.gateway = IP.parse(j.gateway);
  return { id: j.id, owner: j.owner, created: j.created, pool };
}

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
    const requested = specs.flatMap((x) => (x.subnet ? [x.subnet] : []));
    const reserved = (await this.reservedPools())
      .filter((r) => !(req.claimReserved && requested.some((x) => x.equals(r.pool.subnet))))
      .map((r) => ({ subnet: r.pool.subnet, owner: `reserved pool ${r.id} (${r.owner})` }));
    const others = (await this.store.networks.list())
      .filter((n) => n.id !== req.networkId)
      .flatMap((n) => n.ipam.pools.map((p) => ({ subnet: p.subnet, owner: `network ${n.name}` })))
      .concat(reserved);
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
    const existing = (await this.store.networks.list())
      .flatMap((n) => n.ipam.pools.map((p) => p.subnet))
      .concat((await this.reservedPools()).map((r) => r.pool.subnet));
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

  // ---------- reserved pools ----------

  async reservedPools(): Promise<PoolReservation[]> {
    const raw = await this.store.meta.get(RESERVED_META_KEY);
    return raw ? (JSON.parse(raw) as ReservationJson[]).map(reservationFromJson) : [];
  }

  async reservedPool(id: string): Promise<PoolReservation | undefined> {
    return (await this.reservedPools()).find((r) => r.id === id);
  }

  private async saveReserved(list: readonly PoolReservation[]): Promise<void> {
    await this.store.meta.set(RESERVED_META_KEY, JSON.stringify(list.map(reservationToJson)));
  }

  /** Pool reservations outlive a reboot: durable before the answer (see Store.sync). */
  private async durable<T>(p: Promise<T>): Promise<T> {
    const out = await p;
    await this.store.sync();
    return out;
  }

  /**
   * Reserves a pool outside any network: the given subnet (no overlap with any
   * network or reservation: forbidden "pool-overlap") or the first free default
   * subnet of the family. The pool starts without a gateway (see updateReservedPool).
   */
  reservePool(req: ReservePoolRequest): Promise<PoolReservation> {
    const field = req.field ?? "Pool";
    return this.durable(this.store.transaction(async (tx) => {
      const ipam = this.using(tx);
      const list = await ipam.reservedPools();
      if (list.some((r) => r.id === req.id)) throw conflict("pool-exists", `address pool ${req.id} already exists`, field);
      let subnet: Prefix;
      if (req.subnet) {
        subnet = parsePrefixField(req.subnet, "pool", field);
        if (subnet.family !== req.family) {
          throw invalid("pool-family", `pool ${subnet} is not an IPv${req.family} subnet`, field);
        }
        const others = (await tx.networks.list())
          .flatMap((n) => n.ipam.pools.map((p) => ({ subnet: p.subnet, owner: `network ${n.name}` })))
          .concat(list.map((r) => ({ subnet: r.pool.subnet, owner: `reserved pool ${r.id} (${r.owner})` })));
        checkOverlap(subnet, others, field);
      } else {
        if (req.ipRange) throw invalid("pool-subnet-required", "a sub-pool (ip-range) requires a pool", field);
        subnet = await ipam.chooseSubnet(req.family);
      }
      const parsed = parseSpec({ subnet: subnet.toString(), ...(req.ipRange ? { ipRange: req.ipRange } : {}) }, field);
      const pool: IpamPoolConfig = { subnet, auxAddresses: {} };
      if (parsed.pool?.ipRange) pool.ipRange = parsed.pool.ipRange;
      const r: PoolReservation = { id: req.id, owner: req.owner, pool, created: (this.options.now?.() ?? new Date()).toISOString() };
      await ipam.saveReserved([...list, r]);
      return r;
    }));
  }

  /** Changes a reservation's pool (e.g. sets its gateway) in one transaction; `f` may throw to refuse. */
  updateReservedPool(id: string, f: (pool: IpamPoolConfig, tx: Store) => Promise<IpamPoolConfig> | IpamPoolConfig): Promise<PoolReservation> {
    return this.durable(this.store.transaction(async (tx) => {
      const ipam = this.using(tx);
      const list = await ipam.reservedPools();
      const r = list.find((x) => x.id === id);
      if (!r) throw notFound("pool-not-found", `address pool ${id} not found`, "PoolID");
      const pool = await f({ ...r.pool, auxAddresses: { ...r.pool.auxAddresses } }, tx);
      if (!pool.subnet.equals(r.pool.subnet)) throw invalid("pool-subnet-changed", `the subnet of pool ${id} cannot change`, "PoolID");
      const next = { ...r, pool };
      await ipam.saveReserved(list.map((x) => (x.id === id ? next : x)));
      return next;
    }));
  }

  /** Forgets a reservation and every address allocated from it. Idempotent: false when there was none. */
  releaseReservedPool(id: string): Promise<boolean> {
    return this.durable(this.store.transaction(async (tx) => {
      const ipam = this.using(tx);
      const list = await ipam.reservedPools();
      if (!list.some((r) => r.id === id)) return false;
      await tx.allocations.deleteNetwork(id);
      await ipam.saveReserved(list.filter((r) => r.id !== id));
      return true;
    }));
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
