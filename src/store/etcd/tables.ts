/**
 * The record tables of the etcd store, written once over an STM context: the
 * root store runs each call as its own optimistic transaction, a transaction's
 * store runs them inside the one already open. Each method checks everything
 * before it buffers its first write, so a call that throws leaves no half-write
 * in the transaction.
 */
import type { StoreTables } from "../tables-store.ts";
import { conflict, invalid, notFound } from "../../errors.ts";
import { IP, Prefix } from "../../net/index.ts";
import { decodeContainer, decodeEndpoint, decodeNetwork, encodeContainer, encodeEndpoint, encodeNetwork } from "../codec.ts";
import { addrKey } from "../sqlite-alloc.ts";
import type {
  AllocationFilter,
  AllocationKey,
  AllocationRecord,
  AllocationTable,
  ContainerRecord,
  ContainerTable,
  EndpointRecord,
  EndpointTable,
  MetaTable,
  NetworkRecord,
  NetworkTable,
} from "../types.ts";
import { GLOBAL, GLOBAL_OWNER, localPrefix, NAMES } from "./keys.ts";
import type { StmCtx } from "./stm.ts";

/** How a table gets at a transaction: the root store opens one per call, a tx store passes its own. */
export type Run = <T>(f: (ctx: StmCtx) => Promise<T>) => Promise<T>;

const seg = (s: string): string => encodeURIComponent(s);

function byCreated<T extends { created: string; id: string }>(a: T, b: T): number {
  return a.created < b.created ? -1 : a.created > b.created ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Where a network's data lives (global or this host's prefix), found from the network's record. */
class Scopes {
  readonly local: string;
  constructor(readonly host: string) {
    this.local = localPrefix(host);
  }

  async ofNetwork(ctx: StmCtx, networkId: string): Promise<string> {
    return (await ctx.get(`${GLOBAL}networks/${seg(networkId)}`)) !== undefined ? GLOBAL : this.local;
  }

  async network(ctx: StmCtx, id: string): Promise<{ rec: NetworkRecord; base: string } | undefined> {
    for (const base of [this.local, GLOBAL]) {
      const v = await ctx.get(`${base}networks/${seg(id)}`);
      if (v !== undefined) return { rec: decodeNetwork(v), base };
    }
    return undefined;
  }
}

/** Docker-style lookup among `all`: exact id, exact name, then a unique id prefix. */
function resolve<T extends { id: string; name: string }>(all: T[], what: string, term: string): T | undefined {
  if (term === "") return undefined;
  const byId = all.find((r) => r.id === term);
  if (byId) return byId;
  const byName = all.find((r) => r.name === term);
  if (byName) return byName;
  const byPrefix = all.filter((r) => r.id.startsWith(term));
  if (byPrefix.length > 1) {
    throw invalid("ambiguous", `${what} ${term} is ambiguous (${byPrefix.length} matches found based on ID prefix)`);
  }
  return byPrefix[0];
}

class EtcdNetworks implements NetworkTable {
  constructor(
    private readonly run: Run,
    private readonly s: Scopes,
  ) {}

  private owner(r: NetworkRecord): string {
    return r.scope === "global" ? GLOBAL_OWNER : this.s.host;
  }

  /** Throws when `name` is taken by a network this host can see (its own locals, or a global one). */
  private async checkName(ctx: StmCtx, r: NetworkRecord): Promise<void> {
    const holders = await ctx.list(`${NAMES}${seg(r.name)}/`);
    const mine = this.owner(r);
    for (const h of holders) {
      const owner = decodeURIComponent(h.key.slice(h.key.lastIndexOf("/") + 1));
      if (h.value === r.id) continue;
      // a global name collides with every host's local one; a local name with the global one and this host's
      if (mine === GLOBAL_OWNER || owner === GLOBAL_OWNER || owner === mine) {
        throw conflict("network-exists", `network with name ${r.name} already exists`, "Name");
      }
    }
  }

  create(r: NetworkRecord): Promise<void> {
    return this.run(async (ctx) => {
      await this.checkName(ctx, r);
      if (await this.s.network(ctx, r.id)) {
        throw conflict("network-exists", `network with id ${r.id} already exists`, "Id");
      }
      const base = r.scope === "global" ? GLOBAL : this.s.local;
      ctx.put(`${NAMES}${seg(r.name)}/${seg(this.owner(r))}`, r.id);
      ctx.put(`${base}networks/${seg(r.id)}`, encodeNetwork(r));
    });
  }

  get(id: string): Promise<NetworkRecord | undefined> {
    return this.run(async (ctx) => (await this.s.network(ctx, id))?.rec);
  }

  private async all(ctx: StmCtx): Promise<NetworkRecord[]> {
    const out: NetworkRecord[] = [];
    for (const base of [this.s.local, GLOBAL]) {
      for (const e of await ctx.list(`${base}networks/`)) out.push(decodeNetwork(e.value));
    }
    return out.sort(byCreated);
  }

  find(term: string): Promise<NetworkRecord | undefined> {
    return this.run(async (ctx) => resolve(await this.all(ctx), "network", term));
  }

  list(): Promise<NetworkRecord[]> {
    return this.run((ctx) => this.all(ctx));
  }

  update(r: NetworkRecord): Promise<void> {
    return this.run(async (ctx) => {
      const cur = await this.s.network(ctx, r.id);
      if (!cur) throw notFound("network-not-found", `network ${r.id} not found`);
      const next: NetworkRecord = { ...r, scope: cur.rec.scope };
      if (cur.rec.name !== r.name) {
        await this.checkName(ctx, next);
        ctx.del(`${NAMES}${seg(cur.rec.name)}/${seg(this.owner(cur.rec))}`);
        ctx.put(`${NAMES}${seg(r.name)}/${seg(this.owner(next))}`, r.id);
      }
      ctx.put(`${cur.base}networks/${seg(r.id)}`, encodeNetwork(next));
    });
  }

  delete(id: string): Promise<boolean> {
    return this.run(async (ctx) => {
      const cur = await this.s.network(ctx, id);
      if (!cur) return false;
      const eps = await ctx.list(`${cur.base}epnet/${seg(id)}/`);
      if (eps.length > 0) throw conflict("network-in-use", `network ${cur.rec.name} id ${id} has active endpoints`);
      ctx.delPrefix(`${cur.base}alloc/${seg(id)}/`);
      ctx.delPrefix(`${cur.base}allockey/${seg(id)}/`);
      ctx.delPrefix(`${cur.base}cursor/${seg(id)}/`);
      ctx.del(`${NAMES}${seg(cur.rec.name)}/${seg(this.owner(cur.rec))}`);
      ctx.del(`${cur.base}networks/${seg(id)}`);
      return true;
    });
  }
}

/**
 * Endpoint records live at epnet/<networkId>/<containerId> (so a network's
 * endpoints are one range read, and the key itself enforces one endpoint per
 * container per network); endpoints/<id> points there.
 */
class EtcdEndpoints implements EndpointTable {
  constructor(
    private readonly run: Run,
    private readonly s: Scopes,
  ) {}

  private static recKey(base: string, networkId: string, containerId: string): string {
    return `${base}epnet/${seg(networkId)}/${seg(containerId)}`;
  }

  private async find(ctx: StmCtx, id: string): Promise<{ rec: EndpointRecord; base: string; key: string } | undefined> {
    for (const base of [this.s.local, GLOBAL]) {
      const ptr = await ctx.get(`${base}endpoints/${seg(id)}`);
      if (ptr === undefined) continue;
      const key = `${base}epnet/${ptr}`;
      const v = await ctx.get(key);
      if (v !== undefined) return { rec: decodeEndpoint(v), base, key };
    }
    return undefined;
  }

  create(r: EndpointRecord): Promise<void> {
    return this.run(async (ctx) => {
      const net = await this.s.network(ctx, r.networkId);
      if (!net) throw notFound("network-not-found", `network ${r.networkId} not found`);
      const key = EtcdEndpoints.recKey(net.base, r.networkId, r.containerId);
      if ((await ctx.get(key)) !== undefined) {
        const c = await ctx.get(`${this.s.local}containers/${seg(r.containerId)}`);
        const name = c ? decodeContainer(c).name : r.containerId;
        throw conflict("endpoint-exists", `endpoint with name ${name} already exists in network ${net.rec.name}`);
      }
      if (await this.find(ctx, r.id)) throw conflict("endpoint-exists", `endpoint with id ${r.id} already exists`);
      // endpoints of shared networks carry the host they live on: only that host programs them
      const rec = net.base === GLOBAL && r.host === undefined ? { ...r, host: this.s.host } : r;
      ctx.put(`${net.base}endpoints/${seg(r.id)}`, `${seg(r.networkId)}/${seg(r.containerId)}`);
      ctx.put(key, encodeEndpoint(rec));
    });
  }

  get(id: string): Promise<EndpointRecord | undefined> {
    return this.run(async (ctx) => (await this.find(ctx, id))?.rec);
  }

  listByNetwork(networkId: string): Promise<EndpointRecord[]> {
    return this.run(async (ctx) => {
      const base = await this.s.ofNetwork(ctx, networkId);
      return (await ctx.list(`${base}epnet/${seg(networkId)}/`)).map((e) => decodeEndpoint(e.value)).sort(byCreated);
    });
  }

  listByContainer(containerId: string): Promise<EndpointRecord[]> {
    return this.run(async (ctx) => {
      const out: EndpointRecord[] = [];
      const suffix = `/${seg(containerId)}`;
      for (const base of [this.s.local, GLOBAL]) {
        for (const e of await ctx.list(`${base}epnet/`)) if (e.key.endsWith(suffix)) out.push(decodeEndpoint(e.value));
      }
      return out.filter((e) => e.containerId === containerId).sort(byCreated);
    });
  }

  update(r: EndpointRecord): Promise<void> {
    return this.run(async (ctx) => {
      const cur = await this.find(ctx, r.id);
      if (!cur) throw notFound("endpoint-not-found", `endpoint ${r.id} not found`);
      if (cur.rec.networkId !== r.networkId || cur.rec.containerId !== r.containerId) {
        throw invalid("endpoint-immutable", `endpoint ${r.id}: network and container cannot change`);
      }
      const rec = cur.rec.host !== undefined && r.host === undefined ? { ...r, host: cur.rec.host } : r;
      ctx.put(cur.key, encodeEndpoint(rec));
    });
  }

  delete(id: string): Promise<boolean> {
    return this.run(async (ctx) => {
      const cur = await this.find(ctx, id);
      if (!cur) return false;
      ctx.del(cur.key);
      ctx.del(`${cur.base}endpoints/${seg(id)}`);
      return true;
    });
  }
}

class EtcdContainers implements ContainerTable {
  constructor(
    private readonly run: Run,
    private readonly s: Scopes,
  ) {}

  private key(id: string): string {
    return `${this.s.local}containers/${seg(id)}`;
  }

  private nameKey(name: string): string {
    return `${this.s.local}cnames/${seg(name)}`;
  }

  create(r: ContainerRecord): Promise<void> {
    return this.run(async (ctx) => {
      if ((await ctx.get(this.nameKey(r.name))) !== undefined) {
        throw conflict("container-exists", `container with name ${r.name} already exists`, "name");
      }
      if ((await ctx.get(this.key(r.id))) !== undefined) {
        throw conflict("container-exists", `container with id ${r.id} already exists`, "id");
      }
      ctx.put(this.nameKey(r.name), r.id);
      ctx.put(this.key(r.id), encodeContainer(r));
    });
  }

  get(id: string): Promise<ContainerRecord | undefined> {
    return this.run(async (ctx) => {
      const v = await ctx.get(this.key(id));
      return v === undefined ? undefined : decodeContainer(v);
    });
  }

  private async all(ctx: StmCtx): Promise<ContainerRecord[]> {
    return (await ctx.list(`${this.s.local}containers/`)).map((e) => decodeContainer(e.value)).sort(byCreated);
  }

  find(term: string): Promise<ContainerRecord | undefined> {
    return this.run(async (ctx) => resolve(await this.all(ctx), "container", term));
  }

  list(): Promise<ContainerRecord[]> {
    return this.run((ctx) => this.all(ctx));
  }

  update(r: ContainerRecord): Promise<void> {
    return this.run(async (ctx) => {
      const v = await ctx.get(this.key(r.id));
      if (v === undefined) throw notFound("container-not-found", `container ${r.id} not found`);
      const cur = decodeContainer(v);
      if (cur.name !== r.name) {
        const holder = await ctx.get(this.nameKey(r.name));
        if (holder !== undefined && holder !== r.id) {
          throw conflict("container-exists", `container with name ${r.name} already exists`, "name");
        }
        ctx.del(this.nameKey(cur.name));
        ctx.put(this.nameKey(r.name), r.id);
      }
      ctx.put(this.key(r.id), encodeContainer(r));
    });
  }

  delete(id: string): Promise<boolean> {
    return this.run(async (ctx) => {
      const v = await ctx.get(this.key(id));
      if (v === undefined) return false;
      const cur = decodeContainer(v);
      if ((await ctx.get(this.nameKey(cur.name))) === id) ctx.del(this.nameKey(cur.name));
      ctx.del(this.key(id));
      return true;
    });
  }
}

interface AllocJson {
  containerId: string;
  ifname: string;
  subnet: string;
  created: string;
}

class EtcdAllocations implements AllocationTable {
  constructor(
    private readonly run: Run,
    private readonly s: Scopes,
  ) {}

  private static rec(networkId: string, family: 4 | 6, key: string, j: AllocJson): AllocationRecord {
    return {
      networkId,
      containerId: j.containerId,
      ifname: j.ifname,
      family,
      address: IP.fromBigInt(family, BigInt(`0x${key}`)),
      subnet: Prefix.parse(j.subnet),
      created: j.created,
    };
  }

  /** Allocation entries under `prefix` (alloc/...), decoded. Key: .../alloc/<net>/<fam>/<addrKey>. */
  private static decode(entries: { key: string; value: string }[]): AllocationRecord[] {
    return entries.map((e) => {
      const parts = e.key.split("/");
      const key = parts[parts.length - 1] ?? "";
      const family = parts[parts.length - 2] === "6" ? 6 : 4;
      const net = decodeURIComponent(parts[parts.length - 3] ?? "");
      return EtcdAllocations.rec(net, family, key, JSON.parse(e.value) as AllocJson);
    });
  }

  list(filter: AllocationFilter = {}): Promise<AllocationRecord[]> {
    return this.run(async (ctx) => {
      const out: AllocationRecord[] = [];
      const bases = filter.networkId !== undefined ? [await this.s.ofNetwork(ctx, filter.networkId)] : [this.s.local, GLOBAL];
      for (const base of bases) {
        const prefix = filter.networkId !== undefined ? `${base}alloc/${seg(filter.networkId)}/` : `${base}alloc/`;
        for (const r of EtcdAllocations.decode(await ctx.list(prefix))) {
          if (filter.containerId === undefined || r.containerId === filter.containerId) out.push(r);
        }
      }
      return out.sort((a, b) =>
        a.networkId !== b.networkId ? (a.networkId < b.networkId ? -1 : 1) : a.family !== b.family ? a.family - b.family : a.address.compare(b.address),
      );
    });
  }

  private async keyAllocs(ctx: StmCtx, base: string, key: AllocationKey, family?: 4 | 6): Promise<AllocationRecord[]> {
    const out: AllocationRecord[] = [];
    for (const fam of family ? [family] : ([4, 6] as const)) {
      const k = await ctx.get(`${base}allockey/${seg(key.networkId)}/${seg(key.containerId)}/${seg(key.ifname)}/${fam}`);
      if (k === undefined) continue;
      const v = await ctx.get(`${base}alloc/${seg(key.networkId)}/${fam}/${k}`);
      if (v !== undefined) out.push(EtcdAllocations.rec(key.networkId, fam, k, JSON.parse(v) as AllocJson));
    }
    return out;
  }

  get(key: AllocationKey): Promise<AllocationRecord[]> {
    return this.run(async (ctx) => this.keyAllocs(ctx, await this.s.ofNetwork(ctx, key.networkId), key));
  }

  byAddress(networkId: string, address: IP): Promise<AllocationRecord | undefined> {
    return this.run(async (ctx) => {
      const base = await this.s.ofNetwork(ctx, networkId);
      const k = addrKey(address);
      const v = await ctx.get(`${base}alloc/${seg(networkId)}/${address.family}/${k}`);
      return v === undefined ? undefined : EtcdAllocations.rec(networkId, address.family, k, JSON.parse(v) as AllocJson);
    });
  }

  addressesIn(networkId: string, first: IP, last: IP, limit: number): Promise<IP[]> {
    return this.run(async (ctx) => {
      const base = await this.s.ofNetwork(ctx, networkId);
      const lo = addrKey(first);
      const hi = addrKey(last);
      // fixed-width hex keys sort like addresses: the prefix list is in address order
      const out: IP[] = [];
      for (const e of await ctx.list(`${base}alloc/${seg(networkId)}/${first.family}/`)) {
        const k = e.key.slice(e.key.lastIndexOf("/") + 1);
        if (k < lo || k > hi) continue;
        out.push(IP.fromBigInt(first.family, BigInt(`0x${k}`)));
        if (out.length >= limit) break;
      }
      return out;
    });
  }

  insert(r: AllocationRecord): Promise<void> {
    return this.run(async (ctx) => {
      const base = await this.s.ofNetwork(ctx, r.networkId);
      const k = addrKey(r.address);
      const akey = `${base}alloc/${seg(r.networkId)}/${r.family}/${k}`;
      if ((await ctx.get(akey)) !== undefined) {
        throw conflict("address-in-use", `address ${r.address.toString()} is already in use`);
      }
      const ikey = `${base}allockey/${seg(r.networkId)}/${seg(r.containerId)}/${seg(r.ifname)}/${r.family}`;
      if ((await ctx.get(ikey)) !== undefined) {
        throw conflict(
          "allocation-exists",
          `${r.containerId} ${r.ifname} already has an IPv${r.family} address in network ${r.networkId}`,
        );
      }
      const j: AllocJson = { containerId: r.containerId, ifname: r.ifname, subnet: r.subnet.toString(), created: r.created };
      ctx.put(akey, JSON.stringify(j));
      ctx.put(ikey, k);
    });
  }

  delete(key: AllocationKey, family?: 4 | 6): Promise<AllocationRecord[]> {
    return this.run(async (ctx) => {
      const base = await this.s.ofNetwork(ctx, key.networkId);
      const gone = await this.keyAllocs(ctx, base, key, family);
      for (const fam of family ? [family] : ([4, 6] as const)) {
        ctx.del(`${base}allockey/${seg(key.networkId)}/${seg(key.containerId)}/${seg(key.ifname)}/${fam}`);
      }
      for (const g of gone) ctx.del(`${base}alloc/${seg(key.networkId)}/${g.family}/${addrKey(g.address)}`);
      return gone;
    });
  }

  deleteNetwork(networkId: string): Promise<AllocationRecord[]> {
    return this.run(async (ctx) => {
      const base = await this.s.ofNetwork(ctx, networkId);
      const gone = EtcdAllocations.decode(await ctx.list(`${base}alloc/${seg(networkId)}/`));
      ctx.delPrefix(`${base}alloc/${seg(networkId)}/`);
      ctx.delPrefix(`${base}allockey/${seg(networkId)}/`);
      ctx.delPrefix(`${base}cursor/${seg(networkId)}/`);
      return gone.sort((a, b) => (a.family !== b.family ? a.family - b.family : a.address.compare(b.address)));
    });
  }

  getCursor(networkId: string, subnet: Prefix): Promise<IP | undefined> {
    return this.run(async (ctx) => {
      const base = await this.s.ofNetwork(ctx, networkId);
      const v = await ctx.get(`${base}cursor/${seg(networkId)}/${seg(subnet.toString())}`);
      return v === undefined ? undefined : IP.fromBigInt(subnet.family, BigInt(`0x${v}`));
    });
  }

  setCursor(networkId: string, subnet: Prefix, last: IP): Promise<void> {
    return this.run(async (ctx) => {
      const base = await this.s.ofNetwork(ctx, networkId);
      ctx.put(`${base}cursor/${seg(networkId)}/${seg(subnet.toString())}`, addrKey(last));
    });
  }
}

class EtcdMeta implements MetaTable {
  constructor(private readonly run: Run) {}

  get(key: string): Promise<string | undefined> {
    return this.run((ctx) => ctx.get(`${GLOBAL}meta/${seg(key)}`));
  }

  set(key: string, value: string): Promise<void> {
    return this.run(async (ctx) => {
      ctx.put(`${GLOBAL}meta/${seg(key)}`, value);
    });
  }

  delete(key: string): Promise<boolean> {
    return this.run(async (ctx) => {
      const k = `${GLOBAL}meta/${seg(key)}`;
      if ((await ctx.get(k)) === undefined) return false;
      ctx.del(k);
      return true;
    });
  }
}

export function makeEtcdTables(run: Run, host: string): StoreTables {
  const s = new Scopes(host);
  return {
    networks: new EtcdNetworks(run, s),
    endpoints: new EtcdEndpoints(run, s),
    containers: new EtcdContainers(run, s),
    allocations: new EtcdAllocations(run, s),
    meta: new EtcdMeta(run),
  };
}
