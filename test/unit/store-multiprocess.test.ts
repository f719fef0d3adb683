/** Several processes opening (and so creating) the same fresh state directory at once. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore } from "../../src/store/index.ts";
import { SCHEMA_VERSION } from "../../src/store/schema.ts";

const WORKER = join(import.meta.dir, "..", "fixtures", "ipam-worker.ts");
const base = mkdtempSync(join(tmpdir(), "berth-store-mp-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

test("8 processes create the database together: one schema, all writes kept, no errors", async () => {
  const dir = join(base, "fresh", "state");
  const startAt = Date.now() + 1200;
  const procs = Array.from({ length: 8 }, (_, w) =>
    Bun.spawn({ cmd: [process.execPath, WORKER, "container", dir, String(w), String(startAt)], stdout: "pipe", stderr: "pipe" }),
  );
  const outs = await Promise.all(
    procs.map(async (p) => {
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { out: out.trim(), err, code };
    }),
  );
  expect(outs).toEqual(Array.from({ length: 8 }, (_, w) => ({ out: JSON.stringify({ ok: `c${w}` }), err: "", code: 0 })));
  const store = openSqliteStore(dir);
  try {
    expect((await store.containers.list()).map((c) => c.name).sort()).toEqual(Array.from({ length: 8 }, (_, w) => `c${w}`));
    expect(await store.meta.get("schema_version")).toBe(String(SCHEMA_VERSION));
  } finally {
    await store.close();
  }
}, 60_000);
