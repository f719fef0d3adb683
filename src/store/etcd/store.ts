/**
 * The multi-host Store on etcd v3 (through etcd's JSON gateway, see client.ts).
 *
 * Every call is an optimistic transaction (stm.ts); `transaction(fn)` runs `fn`
 * as one, retried on conflict. Several berthds (one per host) share one etcd:
 * each sees its own local networks and containers plus the global ones
 * (keys.ts). Uniqueness (network names, addresses, one endpoint per container
 * per network) is enforced by index keys read and written in the same
 * transaction, so it holds across processes and hosts.
 */
import { hostname } from "node:os";
import { invalid, systemError } from "../../errors.ts";
import type { AllocationTable, ContainerTable, EndpointTable, MetaTable, NetworkTable, Store } from "../types.ts";
import { EtcdClient } from "./client.ts";
import { validHostName } from "./keys.ts";
import { runStm, type StmCtx } from "./stm.ts";
import { type EtcdTables, makeEtcdTables } from "./tables.ts";

export interface EtcdStoreOptions {
  /** "etcd://HOST:PORT", "http://HOST:PORT" or "HOST:PORT". */
  url: string;
  /** This host's name (default: the machine's hostname). */
  host?: string;
  /** Optimistic attempts before a transaction gives up with `unavailable`. */
  maxAttempts?: number;
}

export interface EtcdStore extends Store {
  readonly host: string;
  readonly etcd: EtcdClient;
}

class TxStore implements Store {
  readonly networks: NetworkTable;
  readonly endpoints: EndpointTable;
  readonly containers: ContainerTable;
  readonly allocations: AllocationTable;
  readonly meta: MetaTable;

  constructor(
    readonly host: string,
    t: EtcdTables,
  ) {
    this.networks = t.networks;
    this.endpoints = t.endpoints;
    this.containers = t.containers;
    this.allocations = t.allocations;
    this.meta = t.meta;
  }

  transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    return fn(this);
  }

  close(): Promise<void> {
    return Promise.reject(systemError("tx-close", "close() inside a transaction"));
  }
}

class EtcdStoreImpl extends TxStore implements EtcdStore {
  private closed = false;

  constructor(
    host: string,
    readonly etcd: EtcdClient,
    private readonly maxAttempts: number,
  ) {
    super(
      host,
      makeEtcdTables((f) => this.stm(f), host),
    );
  }

  private stm<T>(f: (ctx: StmCtx) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(systemError("store-closed", "the store is closed"));
    return runStm(this.etcd, f, this.maxAttempts);
  }

  override transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    return this.stm((ctx) => fn(new TxStore(this.host, makeEtcdTables((g) => g(ctx), this.host))));
  }

  override async close(): Promise<void> {
    this.closed = true;
  }
}

/** "etcd://h:p" -> "http://h:p". */
export function etcdEndpoint(url: string): string {
  const m = /^(?:etcd|http):\/\/([^/]+)\/?$/.exec(url) ?? /^([^/:]+:\d+)$/.exec(url);
  if (!m) throw invalid("bad-store-url", `store URL ${JSON.stringify(url)} must look like etcd://HOST:PORT`, "store");
  return `http://${m[1]}`;
}

/** Connects (and checks that etcd answers). */
export async function openEtcdStore(o: EtcdStoreOptions): Promise<EtcdStore> {
  const host = o.host ?? hostname();
  if (!validHostName(host)) {
    throw invalid("bad-host-name", `host name ${JSON.stringify(host)} must be 1-63 letters, digits, '.', '_' or '-'`, "host-name");
  }
  const etcd = new EtcdClient(etcdEndpoint(o.url));
  await etcd.range("/berth/");
  return new EtcdStoreImpl(host, etcd, o.maxAttempts ?? 64);
}
