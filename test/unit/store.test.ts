import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isId, newId, openSqliteStore, type SqliteStore } from "../../src/store/index.ts";
import { SCHEMA_VERSION } from "../../src/store/schema.ts";
import { withEndpointIndex } from "../../src/store/endpoint-index.ts";
import { storeContract } from "./store-contract.ts";
import { expectError, network, pool, tempStore } from "../fixtures/ipam-helpers.ts";

let store: SqliteStore;
let dir: string;
let cleanup: () => Promise<void>;

beforeEach(() => {
  ({ store, dir, cleanup } = tempStore());
});
afterEach(async () => {
  await cleanup();
});

describe("open", () => {
  test("creates the state dir 0700 and berth.db in WAL mode with the current schema", async () => {
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(store.path).toBe(join(dir, "berth.db"));
    expect(existsSync(store.path)).toBe(true);
    const raw = new Database(store.path, { readonly: true });
    try {
      expect(raw.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()?.journal_mode).toBe("wal");
    } finally {
      raw.close();
    }
    expect(await store.meta.get("schema_version")).toBe(String(SCHEMA_VERSION));
  });

  test("data survives close and reopen", async () => {
    const n = network({ ipam: { driver: "default", options: {}, pools: [pool("10.9.0.0/24")] } });
    await store.networks.create(n);
    await store.close();
    const again = openSqliteStore(dir);
    try {
      expect((await again.networks.get(n.id))?.name).toBe(n.name);
    } finally {
      await again.close();
    }
  });

  test("refuses a database from a newer Berth", async () => {
    await store.meta.set("schema_version", String(SCHEMA_VERSION + 1));
    await store.close();
    await expectError(() => openSqliteStore(dir), "system", "store-schema");
  });

  test("a closed store refuses calls", async () => {
    await store.close();
    await expectError(store.networks.list(), "system", "store-closed");
  });

  test("an unusable state dir is a system error", async () => {
    const base = mkdtempSync(join(tmpdir(), "berth-store-"));
    try {
      await Bun.write(join(base, "file"), "x");
      await expectError(() => openSqliteStore(join(base, "file", "sub")), "system", "store-open");
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

storeContract(async () => {
  const t = tempStore();
  return { store: t.store, cleanup: t.cleanup };
});

describe("with the endpoint index (berthd's store)", () => {
  storeContract(async () => {
    const t = tempStore();
    return { store: await withEndpointIndex(t.store), cleanup: t.cleanup };
  });
});

describe("transactions (SQLite: one writer at a time)", () => {
  test("calls on the root store wait until the transaction ends", async () => {
    const order: string[] = [];
    let release = (): void => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const t = store.transaction(async (tx) => {
      await tx.networks.create(network({ name: "in-tx" }));
      order.push("tx-wrote");
      await gate;
      order.push("tx-end");
    });
    await Bun.sleep(1);
    const outside = store.networks.list().then((l) => {
      order.push(`outside-saw-${l.length}`);
    });
    await Bun.sleep(5);
    expect(order).toEqual(["tx-wrote"]);
    release();
    await Promise.all([t, outside]);
    expect(order).toEqual(["tx-wrote", "tx-end", "outside-saw-1"]);
  });

  test("a rolled-back transaction is invisible to calls queued behind it", async () => {
    let release = (): void => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const t = store.transaction(async (tx) => {
      await tx.networks.create(network());
      await gate;
      throw new Error("no");
    });
    const outside = store.networks.list();
    release();
    await expect(t).rejects.toThrow("no");
    expect(await outside).toEqual([]);
  });

  test("transactions queue up in order", async () => {
    const names: string[] = [];
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        store.transaction(async (tx) => {
          const n = (await tx.networks.list()).length;
          await Bun.sleep(0);
          await tx.networks.create(network({ name: `n${n}` }));
          names.push(`n${n}-${i}`);
        }),
      ),
    );
    expect((await store.networks.list()).map((n) => n.name)).toEqual(Array.from({ length: 10 }, (_, i) => `n${i}`));
  });
});

test("newId gives 64 hex characters", () => {
  const a = newId();
  expect(isId(a)).toBe(true);
  expect(a).not.toBe(newId());
});
