/**
 * berthd's endpoint index (src/store/endpoint-index.ts) against the SQLite store
 * it wraps: after every step of a random sequence of creates, updates, deletes,
 * committed and rolled-back transactions, each network's endpoints read from the
 * index equal the store's own rows; changing what a read returned changes nothing.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { IPNet } from "../../src/net/index.ts";
import { canScanEndpoints, withEndpointIndex } from "../../src/store/endpoint-index.ts";
import type { EndpointRecord, SqliteStore, Store } from "../../src/store/index.ts";
import { endpoint, network, tempStore } from "../fixtures/ipam-helpers.ts";

const plain = (x: unknown): unknown => JSON.parse(JSON.stringify(x));

let cleanup = async (): Promise<void> => {};
afterEach(() => cleanup());

async function setup(): Promise<{ raw: SqliteStore; indexed: Store; nets: string[] }> {
  const t = tempStore();
  cleanup = t.cleanup;
  const nets = [network(), network(), network()];
  for (const n of nets) await t.store.networks.create(n);
  // some endpoints exist before the index is built: it must load them
  await t.store.endpoints.create(endpoint(nets[0]!.id, "pre1"));
  await t.store.endpoints.create(endpoint(nets[1]!.id, "pre2"));
  return { raw: t.store, indexed: await withEndpointIndex(t.store), nets: nets.map((n) => n.id) };
}

async function same(raw: Store, indexed: Store, nets: string[]): Promise<void> {
  if (!canScanEndpoints(indexed)) throw new Error("the indexed store offers no scan");
  for (const n of nets) {
    const rows = plain(await raw.endpoints.listByNetwork(n));
    expect(plain(await indexed.endpoints.listByNetwork(n))).toEqual(rows);
    expect(plain(indexed.scanEndpoints(n))).toEqual(rows);
  }
}

describe("endpoint index", () => {
  test("mirrors the store through 300 random operations, transactions and rollbacks included", async () => {
    const { raw, indexed, nets } = await setup();
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const live: EndpointRecord[] = [...(await raw.endpoints.listByNetwork(nets[0]!)), ...(await raw.endpoints.listByNetwork(nets[1]!))];
    for (let step = 0; step < 300; step++) {
      const op = rand(6);
      if (op <= 1 || live.length === 0) {
        // one in four out of creation order (an older timestamp): the index must sort it in
        const ep = endpoint(nets[rand(3)]!, `c${step}`, rand(4) === 0 ? { created: new Date(Date.UTC(2023, 0, 1, 0, 0, rand(5000))).toISOString() } : {});
        await indexed.endpoints.create(ep);
        live.push(ep);
      } else if (op === 2) {
        const ep = live[rand(live.length)]!;
        ep.hostIfname = `veth${step}`;
        ep.addresses = [IPNet.parse(`10.0.${step % 250}.2/24`)];
        await indexed.endpoints.update(ep);
      } else if (op === 3) {
        const [ep] = live.splice(rand(live.length), 1);
        await indexed.endpoints.delete(ep!.id);
      } else if (op === 4) {
        // a committed transaction with a create, an update and a delete
        const a = endpoint(nets[rand(3)]!, `t${step}`);
        const victim = live.splice(rand(live.length), 1)[0]!;
        await indexed.transaction(async (tx) => {
          await tx.endpoints.create(a);
          a.ports = [];
          await tx.endpoints.update(a);
          await tx.endpoints.delete(victim.id);
          // inside, reads see the transaction's own writes
          expect((await tx.endpoints.listByNetwork(a.networkId)).some((e) => e.id === a.id)).toBe(true);
        });
        live.push(a);
      } else {
        // a transaction that fails after writing: nothing of it may show
        const b = endpoint(nets[rand(3)]!, `r${step}`);
        await expect(
          indexed.transaction(async (tx) => {
            await tx.endpoints.create(b);
            throw new Error("refused");
          }),
        ).rejects.toThrow("refused");
      }
      await same(raw, indexed, nets);
    }
  });

  test("what a read returns is a copy", async () => {
    const { raw, indexed, nets } = await setup();
    const [got] = await indexed.endpoints.listByNetwork(nets[0]!);
    got!.hostIfname = "changed";
    got!.addresses.push(IPNet.parse("10.9.9.9/24"));
    (got!.driverState as Record<string, unknown>).x = 1;
    await same(raw, indexed, nets);
  });
});
