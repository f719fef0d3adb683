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
import type { Store } from "../types.ts";
import { EtcdClient } from "./client.ts";
import { validHostName } from "./keys.ts";
import { runStm, type StmCtx } from "./stm.ts";
import { makeEtcdTables } from "./tables.ts";
import { type StoreTables, TablesStore } from "../tables-store.ts";

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

/** The tables of one STM attempt, with the host they belong to. */
class TxStore extends TablesStore {
  constructor(
    readonly host: string,
    t: StoreTables,
  ) {
    super(t);
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
