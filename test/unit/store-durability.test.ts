/**
 * The store's durability modes, proven by the fsync calls the kernel sees
 * (strace): "full" syncs every commit; "sync-on-demand" (berthd's) syncs none
 * of them and one sync() makes them all durable.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const FIXTURE = join(import.meta.dir, "..", "fixtures", "store-fsync.ts");
const dirs: string[] = [];

function fsyncs(durability: string, writes: number, sync: boolean): number {
  const dir = mkdtempSync(join(tmpdir(), "berth-fsync-"));
  dirs.push(dir);
  const log = join(dir, "strace.log");
  const r = Bun.spawnSync(["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", log, process.execPath, FIXTURE, join(dir, "state"), durability, String(writes), sync ? "sync" : "no"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(r.exitCode).toBe(0);
  return readFileSync(log, "utf8").split("\n").filter((l) => /\b(fsync|fdatasync)\(/.test(l)).length;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("SQLite store durability (fsyncs counted with strace)", () => {
  test('"full": every commit is fsynced', () => {
    const base = fsyncs("full", 0, false);
    expect(fsyncs("full", 20, false) - base).toBeGreaterThanOrEqual(20);
  });

  test('"sync-on-demand": commits cost no fsync; sync() makes them durable with a couple', () => {
    const base = fsyncs("sync-on-demand", 0, false);
    expect(fsyncs("sync-on-demand", 20, false)).toBe(base);
    const synced = fsyncs("sync-on-demand", 20, true) - base;
    expect(synced).toBeGreaterThanOrEqual(1);
    expect(synced).toBeLessThanOrEqual(2);
  });
});
