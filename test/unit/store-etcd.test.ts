/**
 * The etcd Store against a real etcd (started here on 127.0.0.1, a free port and
 * a temp data dir; killed by PID afterwards): the same contract as the SQLite
 * store, host scoping (local data per host, global data shared), cross-host
 * uniqueness, and concurrent allocation from several processes with no
 * duplicates.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Ipam } from "../../src/ipam/index.ts";
import { IP, Prefix } from "../../src/net/index.ts";
import { EtcdClient } from "../../src/store/etcd/client.ts";
import { etcdEndpoint, type EtcdStore, openEtcdStore } from "../../src/store/etcd/store.ts";
import { startEtcd, type TestEtcd } from "../harness/etcd.ts";
import { endpoint, expectError, network, pool } from "../fixtures/ipam-helpers.ts";
import { storeContract } from "./store-contract.ts";

let etcd: TestEtcd;
let hostSeq = 0;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

/** A store for a fresh host name; cleanup wipes every Berth key. */
async function fresh(host = `h${++hostSeq}`): Promise<EtcdStore> {
  return openEtcdStore({ url: etcd.url, host });
}

async function wipe(): Promise<void> {
  await new EtcdClient(etcdEndpoint(etcd.url)).delete("/berth/", "/berth0");
}

describe("contract", () => {
  storeContract(async () => {
    const store = await fresh();
    return {
      store,
      cleanup: async () => {
        await store.close();
        await wipe();
      },
    };
  });
});

describe("etcd store", () => {
  test("bad URLs and host names are invalid; an unreachable etcd is unavailable", async () => {
    await expectError(openEtcdStore({ url: "mysql://x", host: "a" }), "invalid", "bad-store-url");
    await expectError(openEtcdStore({ url: etcd.url, host: "a/b" }), "invalid", "bad-host-name");
    await expectError(openEtcdStore({ url: "etcd://127.0.0.1:1", host: "a" }), "unavailable", "etcd-unreachable");
  });

  test("local networks and containers are per host; global networks are shared and names unique across hosts", async () => {
    const a = await fresh("alpha");
    const b = await fresh("beta");
    try {
      await a.networks.create(network({ name: "bridge" }));
      // each host has its own local "bridge"
      await b.networks.create(network({ name: "bridge" }));
      expect((await a.networks.list()).length).toBe(1);
      const ov = network({ name: "ov", scope: "global", driver: "overlay" });
      await a.networks.create(ov);
      expect((await b.networks.find("ov"))?.id).toBe(ov.id);
      // a global name clashes with any host's local one, and the other way round
      await expectError(b.networks.create(network({ name: "ov" })), "conflict", "network-exists");
      await expectError(a.networks.create(network({ name: "bridge", scope: "global" })), "conflict", "network-exists");
      // endpoints of global networks are seen by every host and carry their host
      const ep = endpoint(ov.id, "c1");
      await b.endpoints.create(ep);
      expect((await a.endpoints.listByNetwork(ov.id)).map((e) => [e.id, e.host])).toEqual([[ep.id, "beta"]]);
      // one endpoint per container per network, whoever asks
      await expectError(a.endpoints.create(endpoint(ov.id, "c1")), "conflict", "endpoint-exists");
      // network in use, for every host
      await expectError(a.networks.delete(ov.id), "conflict", "network-in-use");
      expect(await a.endpoints.delete(ep.id)).toBe(true);
      expect(await a.networks.delete(ov.id)).toBe(true);
      expect(await b.networks.find("ov")).toBeUndefined();
    } finally {
      await wipe();
    }
  });

  test("concurrent creates of one name from two hosts: exactly one wins", async () => {
    const a = await fresh("alpha");
    const b = await fresh("beta");
    try {
      for (let i = 0; i < 10; i++) {
        const r = await Promise.allSettled([
          a.networks.create(network({ name: `race${i}`, scope: "global" })),
          b.networks.create(network({ name: `race${i}`, scope: "global" })),
        ]);
        expect(r.filter((x) => x.status === "fulfilled").length).toBe(1);
      }
      expect((await a.networks.list()).length).toBe(10);
    } finally {
      await wipe();
    }
  });

  test("a conflicting transaction is re-run on a fresh snapshot", async () => {
    const a = await fresh("alpha");
    try {
      await a.meta.set("counter", "0");
      // 12 read-modify-write transactions at once: no update is lost
      await Promise.all(
        Array.from({ length: 12 }, () =>
          a.transaction(async (tx) => {
            const n = Number(await tx.meta.get("counter"));
            await Bun.sleep(1);
            await tx.meta.set("counter", String(n + 1));
          }),
        ),
      );
      expect(await a.meta.get("counter")).toBe("12");
    } finally {
      await wipe();
    }
  });

  test("addressesIn and deleteNetwork over global allocations", async () => {
    const a = await fresh("alpha");
    try {
      const ov = network({ scope: "global", ipam: { driver: "default", options: {}, pools: [pool("10.60.0.0/24")] } });
      await a.networks.create(ov);
      for (const [i, x] of ["10.60.0.9", "10.60.0.10", "10.60.0.200"].entries()) {
        await a.allocations.insert({
          networkId: ov.id,
          containerId: `c${i}`,
          ifname: "eth0",
          family: 4,
          address: IP.parse(x),
          subnet: Prefix.parse("10.60.0.0/24"),
          created: new Date().toISOString(),
        });
      }
      const got = await a.allocations.addressesIn(ov.id, IP.parse("10.60.0.5"), IP.parse("10.60.0.100"), 10);
      expect(got.map(String)).toEqual(["10.60.0.9", "10.60.0.10"]);
      expect((await a.allocations.deleteNetwork(ov.id)).length).toBe(3);
      expect(await a.allocations.list({ networkId: ov.id })).toEqual([]);
    } finally {
      await wipe();
    }
  });
});

const WORKER = join(import.meta.dir, "..", "fixtures", "etcd-alloc-worker.ts");

test("5 processes (on 5 hosts) x 20 allocations from one global /24: 100 distinct addresses, no errors", async () => {
  const a = await fresh("alpha");
  try {
    const net = network({ scope: "global", driver: "overlay", ipam: { driver: "default", options: {}, pools: [pool("10.70.0.0/24", { gateway: "10.70.0.1" })] } });
    await a.networks.create(net);
    const startAt = Date.now() + 1500;
    const procs = Array.from({ length: 5 }, (_, w) =>
      Bun.spawn({ cmd: [process.execPath, WORKER, etcd.url, `host${w}`, net.id, String(w), "20", String(startAt)], stdout: "pipe", stderr: "pipe" }),
    );
    const outs = await Promise.all(
      procs.map(async (p) => {
        const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
        expect({ code, err }).toEqual({ code: 0, err: "" });
        return out
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { ok?: string; err?: unknown });
      }),
    );
    const all = outs.flat();
    expect(all.filter((x) => x.err !== undefined)).toEqual([]);
    const addrs = all.map((x) => x.ok ?? "");
    expect(addrs.length).toBe(100);
    expect(new Set(addrs).size).toBe(100);
    const rows = await a.allocations.list({ networkId: net.id });
    expect(rows.map((r) => r.address.toString()).sort()).toEqual([...addrs].sort());
    expect((await new Ipam(a).utilisation(net.id))[0]?.allocated).toBe(100);
  } finally {
    await wipe();
  }
}, 90_000);
