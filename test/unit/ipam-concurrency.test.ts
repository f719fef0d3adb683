/**
 * Several separate bun processes allocating from one network in one state
 * directory at the same moment: every address exactly once, no lock errors.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { join } from "node:path";
import { Ipam } from "../../src/ipam/index.ts";
import type { NetworkRecord, SqliteStore } from "../../src/store/index.ts";
import { network, pool, tempStore } from "../fixtures/ipam-helpers.ts";

const WORKER = join(import.meta.dir, "..", "fixtures", "ipam-worker.ts");

let store: SqliteStore;
let dir: string;
let cleanup: () => Promise<void>;

beforeEach(() => {
  ({ store, dir, cleanup } = tempStore());
});
afterEach(async () => {
  await cleanup();
});

interface WorkerOutput {
  ok: string[];
  errors: { kind: string; code: string; message: string }[];
  span: [number, number];
}

async function runWorkers(net: NetworkRecord, workers: number, each: number): Promise<WorkerOutput[]> {
  const startAt = Date.now() + 1500;
  const procs = Array.from({ length: workers }, (_, w) =>
    Bun.spawn({
      cmd: [process.execPath, WORKER, "alloc", dir, net.id, String(w), String(each), String(startAt)],
      stdout: "pipe",
      stderr: "pipe",
    }),
  );
  return Promise.all(
    procs.map(async (p) => {
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      expect({ code, err }).toEqual({ code: 0, err: "" });
      const res: WorkerOutput = { ok: [], errors: [], span: [0, 0] };
      for (const line of out.trim().split("\n")) {
        const m = JSON.parse(line) as { ok?: string; err?: WorkerOutput["errors"][number]; span?: [number, number] };
        if (m.ok !== undefined) res.ok.push(m.ok);
        if (m.err !== undefined) res.errors.push(m.err);
        if (m.span !== undefined) res.span = m.span;
      }
      return res;
    }),
  );
}

/** At least two workers were allocating at the same time (else the test proves nothing). */
function expectOverlap(outs: WorkerOutput[]): void {
  const spans = outs.map((o) => o.span);
  const overlapping = spans.some((a, i) => spans.some((b, j) => i !== j && a[0] < b[1] && b[0] < a[1]));
  expect(overlapping).toBe(true);
}

test("6 processes x 40 allocations on a /24: 240 distinct addresses, no errors", async () => {
  const net = network({ ipam: { driver: "default", options: {}, pools: [pool("10.50.0.0/24", { gateway: "10.50.0.1" })] } });
  await store.networks.create(net);
  const outs = await runWorkers(net, 6, 40);
  const errors = outs.flatMap((o) => o.errors);
  expect(errors).toEqual([]);
  const all = outs.flatMap((o) => o.ok);
  expect(all.length).toBe(240);
  expect(new Set(all).size).toBe(240);
  for (const a of all) expect(["10.50.0.0", "10.50.0.1", "10.50.0.255"]).not.toContain(a);
  expectOverlap(outs);
  // the store agrees with what the workers were told
  const rows = await store.allocations.list({ networkId: net.id });
  expect(rows.map((r) => r.address.toString()).sort()).toEqual([...all].sort());
  expect((await new Ipam(store).utilisation(net.id))[0]?.allocated).toBe(240);
}, 60_000);

test("a pool too small for everyone: exactly the usable count succeeds, the rest get pool-exhausted", async () => {
  // /26: 64 - network - broadcast - gateway = 61 usable; 6 x 15 = 90 asked
  const net = network({ ipam: { driver: "default", options: {}, pools: [pool("10.51.0.0/26", { gateway: "10.51.0.1" })] } });
  await store.networks.create(net);
  const outs = await runWorkers(net, 6, 15);
  const all = outs.flatMap((o) => o.ok);
  const errors = outs.flatMap((o) => o.errors);
  expect(all.length).toBe(61);
  expect(new Set(all).size).toBe(61);
  expect(errors.length).toBe(29);
  for (const e of errors) {
    expect(e).toEqual({
      kind: "unavailable",
      code: "pool-exhausted",
      message: "no available IPv4 addresses in subnet 10.51.0.0/26",
    });
  }
  expectOverlap(outs);
  expect((await store.allocations.list({ networkId: net.id })).length).toBe(61);
}, 60_000);
