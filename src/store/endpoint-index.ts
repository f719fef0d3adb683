/**
 * An in-memory index of a store's endpoints by network, for the whole-network
 * reads every connect, disconnect and reconcile pass makes (the firewall state,
 * the bridge driver's checks): decoding every endpoint row of a network on each
 * connect made attaching N containers cost O(N²) (a CPU profile of berthd at 300
 * attached put 16 of 110 s in listByNetwork).
 *
 * The index mirrors the writes made through the store it wraps: root writes when
 * they return, a transaction's writes when it commits (a rolled-back transaction
 * changes nothing). So it is only right for a store this process alone writes:
 * berthd's single-host SQLite store (the CLI goes through berthd's API). The
 * shared etcd store, which other hosts write, is never wrapped.
 *
 * Reads hand out copies: callers may change what they get (the controller does),
 * never the index. IP, IPNet and MAC values are immutable and shared.
 */
import type { EndpointRecord, EndpointTable, Store } from "./types.ts";

/** A deep copy of JSON-like data (a driver's state): much cheaper than structuredClone for a few keys. */
function clonePlain<T>(v: T): T {
  if (Array.isArray(v)) return v.map(clonePlain) as T;
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = clonePlain(x);
    return out as T;
  }
  return v;
}

function copy(r: EndpointRecord): EndpointRecord {
  return {
    ...r,
    addresses: [...r.addresses],
    gateways: [...r.gateways],
    ports: r.ports.map((p) => ({ ...p })),
    aliases: [...r.aliases],
    driverState: clonePlain(r.driverState),
    ...(r.external ? { external: { ...r.external } } : {}),
  };
}

/** The store's order: creation time, then id. */
function storeOrder(a: EndpointRecord, b: EndpointRecord): number {
  return a.created < b.created ? -1 : a.created > b.created ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

type Change = { put: EndpointRecord } | { remove: string };

class Index {
  /** Per network, its endpoints in the store's order (Map insertion order, kept on update). */
  private readonly byNetwork = new Map<string, Map<string, EndpointRecord>>();
  private readonly networkOf = new Map<string, string>();
  /** Networks whose Map order broke (an endpoint created out of time order): sorted at the next read. */
  private readonly unsorted = new Set<string>();
  /** Per network, the latest endpoint ever appended (for the order check). */
  private readonly newest = new Map<string, EndpointRecord>();

  /** Takes `rec` as its own: callers hand over a copy nobody else changes. */
  put(rec: EndpointRecord): void {
    if (this.networkOf.get(rec.id) !== rec.networkId) this.remove(rec.id);
    let m = this.byNetwork.get(rec.networkId);
    if (!m) {
      m = new Map();
      this.byNetwork.set(rec.networkId, m);
    }
    if (!m.has(rec.id)) {
      // new endpoints are the newest nearly always: appending keeps the order. `newest` may
      // name a removed endpoint; comparing with it can only sort when not needed, never miss
      const newest = this.newest.get(rec.networkId);
      if (newest && storeOrder(newest, rec) > 0) this.unsorted.add(rec.networkId);
      else this.newest.set(rec.networkId, rec);
    }
    m.set(rec.id, rec);
    this.networkOf.set(rec.id, rec.networkId);
  }

  remove(id: string): void {
    const net = this.networkOf.get(id);
    if (net === undefined) return;
    this.networkOf.delete(id);
    const m = this.byNetwork.get(net);
    m?.delete(id);
    if (m?.size === 0) this.byNetwork.delete(net);
  }

  apply(changes: readonly Change[]): void {
    for (const c of changes) {
      if ("put" in c) this.put(c.put);
      else this.remove(c.remove);
    }
  }

  /** The index's own records, in the store's order (creation time, then id): never to be changed. */
  shared(networkId: string): readonly EndpointRecord[] {
    const m = this.byNetwork.get(networkId);
    if (!m) return [];
    if (this.unsorted.delete(networkId)) {
      const sorted = [...m.values()].sort(storeOrder);
      m.clear();
      for (const x of sorted) m.set(x.id, x);
    }
    return [...m.values()];
  }

  list(networkId: string): EndpointRecord[] {
    return this.shared(networkId).map(copy);
  }
}

/**
 * `inner`'s endpoint table, with each write reported to `note` once it succeeded
 * (as a copy: the caller may go on changing its record). Reads go to `inner`,
 * whole networks to `listByNetwork` when given.
 */
function observedEndpoints(inner: EndpointTable, note: (c: Change) => void, listByNetwork?: (networkId: string) => Promise<EndpointRecord[]>): EndpointTable {
  return {
    create: async (r) => {
      await inner.create(r);
      note({ put: copy(r) });
    },
    update: async (r) => {
      await inner.update(r);
      note({ put: copy(r) });
    },
    delete: async (id) => {
      const gone = await inner.delete(id);
      note({ remove: id });
      return gone;
    },
    get: (id) => inner.get(id),
    listByNetwork: listByNetwork ?? ((n) => inner.listByNetwork(n)),
    listByContainer: (c) => inner.listByContainer(c),
  };
}

/** A store that is `inner` but for its endpoint table. */
abstract class EndpointObservingStore implements Store {
  abstract readonly endpoints: EndpointTable;
  constructor(protected readonly inner: Store) {}
  get networks() {
    return this.inner.networks;
  }
  get containers() {
    return this.inner.containers;
  }
  get allocations() {
    return this.inner.allocations;
  }
  get meta() {
    return this.inner.meta;
  }
  abstract transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T>;
  sync(): Promise<void> {
    return this.inner.sync();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A transaction of the indexed store: its endpoint writes are noted, for the index once it commits. */
class TxView extends EndpointObservingStore {
  readonly endpoints: EndpointTable;
  constructor(tx: Store, changes: Change[]) {
    super(tx);
    this.endpoints = observedEndpoints(tx.endpoints, (c) => changes.push(c));
  }
  transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    return fn(this); // a transaction inside a transaction joins it
  }
}

/**
 * Whole-network scans without copies, for hot paths that only read (the firewall
 * state every connect and every reconcile pass computes). The records are the
 * index's own: a caller that changed one would corrupt it.
 */
export interface EndpointScan {
  scanEndpoints(networkId: string): readonly Readonly<EndpointRecord>[];
}

export function canScanEndpoints(s: Store): s is Store & EndpointScan {
  return typeof (s as Partial<EndpointScan>).scanEndpoints === "function";
}

/** A network's endpoints for a scan that changes nothing: the index's own records where there is one. */
export async function scanNetworkEndpoints(store: Store, networkId: string): Promise<readonly Readonly<EndpointRecord>[]> {
  return canScanEndpoints(store) ? store.scanEndpoints(networkId) : store.endpoints.listByNetwork(networkId);
}

class IndexedStore extends EndpointObservingStore implements EndpointScan {
  readonly endpoints: EndpointTable;
  constructor(
    inner: Store,
    private readonly index: Index,
  ) {
    super(inner);
    this.endpoints = observedEndpoints(inner.endpoints, (c) => index.apply([c]), async (n) => index.list(n));
  }
  scanEndpoints(networkId: string): readonly Readonly<EndpointRecord>[] {
    return this.index.shared(networkId);
  }
  async transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    const changes: Change[] = [];
    const out = await this.inner.transaction((tx) => fn(new TxView(tx, changes)));
    this.index.apply(changes); // committed
    return out;
  }
}

/** Wraps `store` (written by this process only) with the index, loaded from every network's endpoints. */
export async function withEndpointIndex(store: Store): Promise<Store> {
  const index = new Index();
  for (const n of await store.networks.list()) for (const ep of await store.endpoints.listByNetwork(n.id)) index.put(ep);
  return new IndexedStore(store, index);
}
