/**
 * Property tests: random pools and random sequences of allocate/release,
 * checked step by step against a tiny independent model (plain numbers).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fc from "fast-check";
import { BerthError } from "../../src/errors.ts";
import { Ipam, type PoolSpec } from "../../src/ipam/index.ts";
import { IP, Prefix } from "../../src/net/index.ts";
import type { IpamPoolConfig, SqliteStore } from "../../src/store/index.ts";
import { network, tempStore } from "../fixtures/ipam-helpers.ts";

let store: SqliteStore;
let cleanup: () => Promise<void>;
let ipam: Ipam;

beforeAll(() => {
  ({ store, cleanup } = tempStore());
  ipam = new Ipam(store);
});
afterAll(async () => {
  await cleanup();
});

interface Scenario {
  family: 4 | 6;
  /** host bits of the subnet (2^hostBits addresses) */
  hostBits: number;
  /** ip-range: extra prefix bits and which sub-block */
  range?: { extra: number; index: number };
  gateway?: number;
  aux: number[];
  ops: Op[];
}
type Op = { t: "alloc"; c: number; at?: number } | { t: "release"; c: number };

const scenario: fc.Arbitrary<Scenario> = fc
  .record({ family: fc.constantFrom<4 | 6>(4, 6), hostBits: fc.integer({ min: 0, max: 5 }) })
  .chain(({ family, hostBits }) => {
    const size = 2 ** hostBits;
    const addr = fc.integer({ min: 0, max: size - 1 });
    return fc.record({
      family: fc.constant(family),
      hostBits: fc.constant(hostBits),
      range: fc.option(
        fc.integer({ min: 0, max: hostBits }).chain((extra) =>
          fc.record({ extra: fc.constant(extra), index: fc.integer({ min: 0, max: 2 ** extra - 1 }) }),
        ),
        { nil: undefined },
      ),
      gateway: fc.option(addr, { nil: undefined }),
      aux: fc.array(addr, { maxLength: 3 }),
      ops: fc.array(
        fc.oneof(
          { weight: 4, arbitrary: fc.record({ t: fc.constant("alloc" as const), c: fc.integer({ min: 0, max: 40 }) }) },
          {
            weight: 1,
            arbitrary: fc.record({ t: fc.constant("alloc" as const), c: fc.integer({ min: 0, max: 40 }), at: addr }),
          },
          { weight: 2, arbitrary: fc.record({ t: fc.constant("release" as const), c: fc.integer({ min: 0, max: 40 }) }) },
        ),
        { minLength: 10, maxLength: 80, size: "max" },
      ),
    });
  })
  .map((s) => {
    const out: Scenario = { family: s.family, hostBits: s.hostBits, aux: s.aux, ops: s.ops };
    if (s.range) out.range = s.range;
    if (s.gateway !== undefined) out.gateway = s.gateway;
    return out;
  });

const BASE = { 4: IP.parse("10.77.0.0"), 6: IP.parse("fd00:77::") } as const;

/** The spec as a user would write it; undefined when the gateway is invalid for the subnet. */
function specOf(s: Scenario): PoolSpec {
  const bits = s.family === 4 ? 32 : 128;
  const subnet = Prefix.of(BASE[s.family], bits - s.hostBits);
  const at = (i: number) => subnet.nth(i).toString();
  const spec: PoolSpec = { subnet: subnet.toString(), auxAddresses: {} };
  if (s.range) {
    const len = subnet.length + s.range.extra;
    const start = subnet.ip.value + BigInt(s.range.index) * (1n << BigInt(bits - len));
    spec.ipRange = Prefix.of(IP.fromBigInt(s.family, start), len).toString();
  }
  if (s.gateway !== undefined) spec.gateway = at(s.gateway);
  s.aux.forEach((a, i) => {
    spec.auxAddresses![`aux${i}`] = at(a);
  });
  return spec;
}

/** Offsets (within the subnet) that must never be handed out, computed independently. */
function modelReserved(s: Scenario, pool: IpamPoolConfig): Set<number> {
  const size = 2 ** s.hostBits;
  const r = new Set<number>();
  if (s.hostBits >= 2) {
    r.add(0);
    if (s.family === 4) r.add(size - 1);
  }
  const off = (ip: IP) => Number(ip.value - pool.subnet.ip.value);
  if (pool.gateway) r.add(off(pool.gateway));
  for (const ip of Object.values(pool.auxAddresses)) r.add(off(ip));
  return r;
}

test("random allocate/release sequences match the model: no duplicates, nothing reserved, dynamic inside the range", async () => {
  await fc.assert(
    fc.asyncProperty(scenario, async (s) => {
      let pool: IpamPoolConfig;
      try {
        pool = ipam.validatePools({ pools: [specOf(s)], ipv6: true })[0]!.pool!;
      } catch (e) {
        // Only a gateway on the network/broadcast/anycast address may be refused.
        expect(e).toBeInstanceOf(BerthError);
        expect((e as BerthError).code).toBe("pool-gateway-reserved");
        return;
      }
      const net = network({ ipam: { driver: "default", options: {}, pools: [pool] } });
      await store.networks.create(net);
      const reserved = modelReserved(s, pool);
      const subnetStart = pool.subnet.ip.value;
      const range = pool.ipRange ?? pool.subnet;
      const rFirst = Number(range.ip.value - subnetStart);
      const rLast = rFirst + Number(range.size) - 1;
      const held = new Map<number, number>(); // container -> offset
      const dynamic = new Set<number>(); // containers whose address was picked dynamically
      let cursor: number | undefined;

      for (const op of s.ops) {
        const key = { networkId: net.id, containerId: `c${op.c}`, ifname: "eth0" };
        if (op.t === "release") {
          const gone = await ipam.release(key);
          expect(gone.length).toBe(held.has(op.c) ? 1 : 0);
          held.delete(op.c);
          dynamic.delete(op.c);
          continue;
        }
        const taken = new Set(held.values());
        let expected: { ok: number } | { code: string };
        if (held.has(op.c)) {
          expected = op.at === undefined || op.at === held.get(op.c) ? { ok: held.get(op.c)! } : { code: "allocation-mismatch" };
        } else if (op.at !== undefined) {
          const edge = s.hostBits >= 2 && (op.at === 0 || (s.family === 4 && op.at === 2 ** s.hostBits - 1));
          expected = edge
            ? { code: "address-reserved" }
            : reserved.has(op.at) || taken.has(op.at)
              ? { code: "address-in-use" }
              : { ok: op.at };
        } else {
          // next free after the cursor, wrapping round the range
          let found: number | undefined;
          const n = rLast - rFirst + 1;
          const start = cursor !== undefined && cursor >= rFirst && cursor < rLast ? cursor + 1 : rFirst;
          for (let i = 0; i < n; i++) {
            const o = rFirst + ((start - rFirst + i) % n);
            if (!reserved.has(o) && !taken.has(o)) {
              found = o;
              break;
            }
          }
          expected = found === undefined ? { code: "pool-exhausted" } : { ok: found };
        }
        let got: { ok: number } | { code: string };
        try {
          const a = await ipam.allocate({
            ...key,
            family: s.family,
            ...(op.at === undefined ? {} : { requested: pool.subnet.nth(op.at) }),
          });
          got = { ok: Number(a.address.value - subnetStart) };
        } catch (e) {
          if (!(e instanceof BerthError)) throw e;
          got = { code: e.code };
        }
        expect(got).toEqual(expected);
        if ("ok" in got && !held.has(op.c)) {
          held.set(op.c, got.ok);
          if (op.at === undefined) {
            cursor = got.ok;
            dynamic.add(op.c);
          }
        }
        // invariants, read back from the store: it matches the model exactly,
        // no address twice, nothing reserved, dynamic addresses inside the range
        const rows = await store.allocations.list({ networkId: net.id });
        const offs = rows.map((r) => Number(r.address.value - subnetStart));
        expect(new Set(offs).size).toBe(offs.length);
        expect(rows.length).toBe(held.size);
        for (const r of rows) {
          const c = Number(r.containerId.slice(1));
          const o = Number(r.address.value - subnetStart);
          expect(held.get(c)).toBe(o);
          expect(reserved.has(o)).toBe(false);
          expect(pool.subnet.contains(r.address)).toBe(true);
          if (dynamic.has(c)) expect(range.contains(r.address)).toBe(true);
        }
      }
      expect((await ipam.utilisation(net.id))[0]?.allocated).toBe(held.size);
      await ipam.releaseNetwork(net.id);
      await store.networks.delete(net.id);
    }),
    { numRuns: 120 },
  );
}, 120_000);

test("dynamic allocations alone never leave the ip-range and exhaust it exactly", async () => {
  await fc.assert(
    fc.asyncProperty(scenario, async (s) => {
      let pool: IpamPoolConfig;
      try {
        pool = ipam.validatePools({ pools: [specOf(s)], ipv6: true })[0]!.pool!;
      } catch {
        return;
      }
      const reserved = modelReserved(s, pool);
      const range = pool.ipRange ?? pool.subnet;
      const first = Number(range.ip.value - pool.subnet.ip.value);
      let usable = 0;
      for (let o = first; o < first + Number(range.size); o++) if (!reserved.has(o)) usable++;
      const net = network({ ipam: { driver: "default", options: {}, pools: [pool] } });
      await store.networks.create(net);
      const seen = new Set<bigint>();
      for (let i = 0; i < usable; i++) {
        const a = await ipam.allocate({ networkId: net.id, containerId: `d${i}`, ifname: "eth0", family: s.family });
        expect(range.contains(a.address)).toBe(true);
        expect(reserved.has(Number(a.address.value - pool.subnet.ip.value))).toBe(false);
        expect(seen.has(a.address.value)).toBe(false);
        seen.add(a.address.value);
      }
      let code = "";
      try {
        await ipam.allocate({ networkId: net.id, containerId: "last", ifname: "eth0", family: s.family });
      } catch (e) {
        code = e instanceof BerthError ? e.code : "other";
      }
      expect(code).toBe("pool-exhausted");
      expect((await ipam.utilisation(net.id))[0]?.free).toBe(0n);
      await store.networks.delete(net.id);
    }),
    { numRuns: 80 },
  );
}, 120_000);
