/**
 * Software transactional memory over etcd: the optimistic `transaction(fn)` of
 * the etcd Store.
 *
 * Reads are served at one snapshot revision (the first read fixes it) and
 * remembered: a point read by the mod_revision it saw (0 = absent), a prefix
 * read as "nothing in this range changed after the snapshot". Writes are
 * buffered (and visible to later reads of the same attempt). Commit is one etcd
 * Txn whose compares are exactly those reads: if another writer touched
 * anything this attempt read, the Txn fails and `fn` runs again on a fresh
 * snapshot. After `maxAttempts` conflicts the store answers `unavailable`.
 *
 * So uniqueness rules that are "read an index key, then create it" hold across
 * processes and hosts: two creators of the same name cannot both commit.
 */
import { systemError, unavailable } from "../../errors.ts";
import { type Compare, type EtcdClient, type KV, type Op, prefixEnd } from "./client.ts";

export interface Entry {
  key: string;
  value: string;
}

export class StmCtx {
  active = true;
  private revision = 0;
  private readonly points = new Map<string, number>();
  private readonly ranges = new Map<string, string>();
  /** key -> value, or null for a delete */
  private readonly writes = new Map<string, string | null>();
  private readonly prefixDeletes: string[] = [];

  constructor(private readonly etcd: EtcdClient) {}

  private check(): void {
    if (!this.active) throw systemError("tx-finished", "store transaction used after it ended");
  }

  private deletedByPrefix(key: string): boolean {
    return this.prefixDeletes.some((p) => key.startsWith(p));
  }

  async get(key: string): Promise<string | undefined> {
    this.check();
    const w = this.writes.get(key);
    if (w !== undefined) return w === null ? undefined : w;
    if (this.deletedByPrefix(key)) return undefined;
    const r = await this.etcd.range(key, this.revision ? { revision: this.revision } : {});
    if (!this.revision) this.revision = r.revision;
    const kv: KV | undefined = r.kvs[0];
    if (!this.points.has(key)) this.points.set(key, kv?.modRevision ?? 0);
    return kv?.value;
  }

  /** Every entry under `prefix`, in key order, with this attempt's own writes applied. */
  async list(prefix: string): Promise<Entry[]> {
    this.check();
    const end = prefixEnd(prefix);
    const r = await this.etcd.range(prefix, { rangeEnd: end, ...(this.revision ? { revision: this.revision } : {}) });
    if (!this.revision) this.revision = r.revision;
    this.ranges.set(prefix, end);
    const out = new Map<string, string>();
    for (const kv of r.kvs) if (!this.deletedByPrefix(kv.key)) out.set(kv.key, kv.value);
    for (const [k, v] of this.writes) {
      if (!k.startsWith(prefix)) continue;
      if (v === null) out.delete(k);
      else out.set(k, v);
    }
    return [...out.keys()].sort(byBytes).map((key) => ({ key, value: out.get(key) ?? "" }));
  }

  put(key: string, value: string): void {
    this.check();
    this.writes.set(key, value);
  }

  del(key: string): void {
    this.check();
    this.writes.set(key, null);
  }

  /** Deletes everything under `prefix` (at commit), including keys this attempt wrote. */
  delPrefix(prefix: string): void {
    this.check();
    for (const k of [...this.writes.keys()]) if (k.startsWith(prefix)) this.writes.delete(k);
    this.prefixDeletes.push(prefix);
  }

  get readOnly(): boolean {
    return this.writes.size === 0 && this.prefixDeletes.length === 0;
  }

  /** Commits; false when something read changed meanwhile (the attempt must be retried). */
  async commit(): Promise<boolean> {
    if (this.readOnly) return true;
    const compares: Compare[] = [];
    for (const [key, mod] of this.points) compares.push({ key, target: "MOD", result: "EQUAL", modRevision: mod });
    for (const [key, rangeEnd] of this.ranges) {
      compares.push({ key, rangeEnd, target: "MOD", result: "LESS", modRevision: this.revision + 1 });
    }
    const ops: Op[] = this.prefixDeletes.map((p) => ({ del: { key: p, rangeEnd: prefixEnd(p) } }));
    for (const [key, v] of this.writes) ops.push(v === null ? { del: { key } } : { put: { key, value: v } });
    const r = await this.etcd.txn(compares, ops);
    return r.succeeded;
  }
}

function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Runs `fn` optimistically until it commits without conflict (bounded). */
export async function runStm<T>(etcd: EtcdClient, fn: (ctx: StmCtx) => Promise<T>, maxAttempts = 64): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const ctx = new StmCtx(etcd);
    try {
      const out = await fn(ctx);
      if (await ctx.commit()) return out;
    } finally {
      ctx.active = false;
    }
    if (attempt >= maxAttempts) {
      throw unavailable("store-contention", `state store: transaction still conflicting after ${maxAttempts} attempts`);
    }
    // jittered backoff, growing a little with each conflict
    await Bun.sleep(Math.random() * Math.min(50, 2 * attempt));
  }
}
