/**
 * The embedded Store: one SQLite file, `<stateDir>/berth.db`, in WAL mode.
 *
 * Several processes may open it at once (berthd, the CLI, every CNI plugin
 * invocation): every write runs under BEGIN IMMEDIATE, so the database write
 * lock is taken before anything is read, and busy_timeout makes the others
 * wait for it instead of failing. synchronous=FULL makes a commit durable;
 * `durability: "os"` (synchronous=OFF) hands commits to the OS without fsync:
 * they survive a crash of the process (SIGKILL) but not of the machine;
 * `durability: "sync-on-demand"` (WAL with synchronous=NORMAL) is the same per
 * commit, and `sync()` fsyncs the log, making everything committed so far
 * durable (a power loss can only cut off a suffix of the transactions since).
 *
 * Inside one process, `transaction(fn)` holds the connection for the whole of
 * the (async) `fn`; other calls on the root store wait until it ends, so no
 * unrelated statement slips into an open transaction.
 */
import { Database, SQLiteError } from "bun:sqlite";
import { closeSync, fsyncSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { BerthError, systemError, unavailable } from "../errors.ts";
import { migrate } from "./schema.ts";
import { type Ctx, makeTables } from "./sqlite-tables.ts";
import { TablesStore } from "./tables-store.ts";
import type {
  Store,
} from "./types.ts";

export const BUSY_TIMEOUT_MS = 10_000;

export interface SqliteStore extends Store {
  /** Absolute path of the database file. */
  readonly path: string;
}

function mapError(e: unknown): unknown {
  if (e instanceof SQLiteError) {
    if (e.code?.startsWith("SQLITE_BUSY") || e.code?.startsWith("SQLITE_LOCKED")) {
      return unavailable("store-busy", `state database is busy: ${e.message} (busy_timeout ${BUSY_TIMEOUT_MS} ms)`);
    }
    return systemError("store-error", `state database: ${e.message}`);
  }
  return e;
}

function isBusy(e: unknown): boolean {
  return e instanceof SQLiteError && (e.code?.startsWith("SQLITE_BUSY") ?? false);
}

/** Runs `f` synchronously between BEGIN IMMEDIATE and COMMIT. */
function immediate<T>(db: Database, f: () => T): T {
  db.run("BEGIN IMMEDIATE");
  try {
    const out = f();
    db.run("COMMIT");
    return out;
  } catch (e) {
    if (db.inTransaction) db.run("ROLLBACK");
    throw e;
  }
}

class Handle {
  private busy = false;
  private idle: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(readonly db: Database) {}

  check(): void {
    if (this.closed) throw systemError("store-closed", "the store is closed");
  }

  /**
   * Runs `f` as soon as no transaction of this process holds the connection.
   * `f` starts in the same tick the wait ends, so nothing can slip in between.
   */
  async run<T>(f: () => T): Promise<T> {
    while (this.busy) await this.idle;
    this.check();
    return f();
  }

  /** Waits for the connection and holds it; returns the function that lets go of it. */
  acquire(): Promise<() => void> {
    return this.run(() => {
      this.busy = true;
      let release = (): void => {};
      this.idle = new Promise<void>((r) => {
        release = r;
      });
      return () => {
        this.busy = false;
        release();
      };
    });
  }

  close(): Promise<void> {
    return this.run(() => {
      this.closed = true;
      this.db.close();
    });
  }
}

class RootCtx implements Ctx {
  constructor(private readonly h: Handle) {}

  read<T>(f: (db: Database) => T): Promise<T> {
    return this.h.run(() => {
      try {
        return f(this.h.db);
      } catch (e) {
        throw mapError(e);
      }
    });
  }

  write<T>(f: (db: Database) => T): Promise<T> {
    return this.h.run(() => {
      try {
        return immediate(this.h.db, () => f(this.h.db));
      } catch (e) {
        throw mapError(e);
      }
    });
  }
}

class TxCtx implements Ctx {
  active = true;
  constructor(private readonly db: Database) {}

  private run<T>(f: (db: Database) => T): Promise<T> {
    if (!this.active) {
      return Promise.reject(systemError("tx-finished", "store transaction used after it ended"));
    }
    try {
      return Promise.resolve(f(this.db));
    } catch (e) {
      return Promise.reject(mapError(e));
    }
  }

  read<T>(f: (db: Database) => T): Promise<T> {
    return this.run(f);
  }

  /** A savepoint per write, so a write that fails half-way leaves nothing behind. */
  write<T>(f: (db: Database) => T): Promise<T> {
    return this.run((db) => {
      db.run("SAVEPOINT w");
      try {
        const out = f(db);
        db.run("RELEASE w");
        return out;
      } catch (e) {
        db.run("ROLLBACK TO w");
        db.run("RELEASE w");
        throw e;
      }
    });
  }
}

class SqliteStoreImpl extends TablesStore implements SqliteStore {
  constructor(
    readonly path: string,
    private readonly h: Handle,
    private readonly syncOnDemand: boolean,
  ) {
    super(makeTables(new RootCtx(h)));
  }

  override async transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    const release = await this.h.acquire();
    const ctx = new TxCtx(this.h.db);
    const db = this.h.db;
    try {
      try {
        db.run("BEGIN IMMEDIATE");
      } catch (e) {
        throw mapError(e);
      }
      try {
        const out = await fn(new TablesStore(makeTables(ctx)));
        db.run("COMMIT");
        return out;
      } catch (e) {
        if (db.inTransaction) db.run("ROLLBACK");
        throw mapError(e);
      }
    } finally {
      ctx.active = false;
      release();
    }
  }

  override async sync(): Promise<void> {
    if (!this.syncOnDemand) return;
    // every commit has been written to the WAL (or checkpointed into the database
    // file, whose checkpoints fsync); one fsync of each makes them all durable
    for (const file of [`${this.path}-wal`, this.path]) {
      let fd: number | undefined;
      try {
        fd = openSync(file, "r+");
        fsyncSync(fd);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw systemError("store-sync", `cannot sync ${file}: ${(e as Error).message}`);
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    }
  }

  override close(): Promise<void> {
    return this.h.close();
  }
}

/** Runs `f`, retrying while another process holds a lock that busy_timeout does not cover. */
function retryBusy<T>(f: () => T): T {
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      return f();
    } catch (e) {
      if (!isBusy(e) || Date.now() > deadline) throw mapError(e);
      Bun.sleepSync(5 + Math.random() * 20);
    }
  }
}

export interface SqliteOptions {
  /**
   * "full" (default): a commit is on disk when it returns. "os": a commit is in
   * the OS when it returns, safe against the process being killed, not against
   * power loss; no fsync at all (each one costs 5-25 ms here, and closing the
   * last connection checkpoints with two of them). For state that does not
   * outlive a reboot anyway, like the CNI host-local leases.
   */
  durability?: "full" | "os" | "sync-on-demand";
}

/** Opens (creating and migrating if needed) the store in `stateDir`. */
export function openSqliteStore(stateDir: string, opts: SqliteOptions = {}): SqliteStore {
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw systemError("store-open", `cannot create state directory ${stateDir}: ${(e as Error).message}`);
  }
  const path = join(stateDir, "berth.db");
  let db: Database;
  try {
    db = new Database(path, { create: true, readwrite: true, strict: true });
  } catch (e) {
    throw systemError("store-open", `cannot open ${path}: ${(e as Error).message}`);
  }
  try {
    db.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    retryBusy(() => db.run("PRAGMA journal_mode = WAL"));
    const sync = { full: "FULL", os: "OFF", "sync-on-demand": "NORMAL" }[opts.durability ?? "full"];
    db.run(`PRAGMA synchronous = ${sync}`);
    db.run("PRAGMA foreign_keys = ON");
    retryBusy(() => immediate(db, () => migrate(db)));
  } catch (e) {
    db.close();
    throw e instanceof BerthError ? e : mapError(e);
  }
  return new SqliteStoreImpl(path, new Handle(db), opts.durability === "sync-on-demand");
}
