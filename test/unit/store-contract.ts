/**
 * The Store contract: what every Store implementation must do (SQLite in
 * store.test.ts, etcd in store-etcd.test.ts). `open` gives a fresh, empty store
 * per test.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { IP, IPNet, MAC, Prefix } from "../../src/net/index.ts";
import { newId, type Store } from "../../src/store/index.ts";
import { container, endpoint, expectError, network, pool, snapshot } from "../fixtures/ipam-helpers.ts";

/** Typed values as their JSON strings, for deep comparison regardless of key order. */
const plain = (x: unknown): unknown => JSON.parse(JSON.stringify(x));

export function storeContract(open: () => Promise<{ store: Store; cleanup: () => Promise<void> }>): void {
  let store: Store;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ store, cleanup } = await open());
  });
  afterEach(async () => {
    await cleanup();
  });

  describe("networks", () => {
    test("round-trips typed values", async () => {
      const n = network({
        ipam: {
          driver: "default",
          options: { a: "b" },
          pools: [
            pool("10.1.0.0/16", { ipRange: "10.1.2.0/24", gateway: "10.1.0.254", aux: { host: "10.1.0.9" } }),
            pool("fd00:1::/64"),
          ],
        },
        driverState: { bridge: "br-123", nested: { x: [1, 2] } },
        labels: { l: "v" },
      });
      await store.networks.create(n);
      const got = await store.networks.get(n.id);
      expect(got).toBeDefined();
      const p = got!.ipam.pools[0]!;
      expect(p.subnet).toBeInstanceOf(Prefix);
      expect(p.subnet.equals(Prefix.parse("10.1.0.0/16"))).toBe(true);
      expect(p.ipRange?.toString()).toBe("10.1.2.0/24");
      expect(p.gateway).toBeInstanceOf(IP);
      expect(p.gateway?.toString()).toBe("10.1.0.254");
      expect(p.auxAddresses.host?.toString()).toBe("10.1.0.9");
      expect(got!.ipam.pools[1]!.gateway).toBeUndefined();
      expect(got!.ipam.pools[1]!.subnet.toString()).toBe("fd00:1::/64");
      expect(plain(got)).toEqual(plain(n));
    });

    test("duplicate name is a conflict with Docker's message", async () => {
      await store.networks.create(network({ name: "front" }));
      const e = await expectError(store.networks.create(network({ name: "front" })), "conflict", "network-exists");
      expect(e.message).toBe("network with name front already exists");
      expect((await store.networks.list()).length).toBe(1);
    });

    test("duplicate id is a conflict", async () => {
      const n = network();
      await store.networks.create(n);
      await expectError(store.networks.create(network({ id: n.id })), "conflict", "network-exists");
    });

    test("find: exact id, then name, then a unique id prefix; ambiguous prefix is an error", async () => {
      const a = network({ id: `abc1${"0".repeat(60)}`, name: "alpha" });
      const b = network({ id: `abc2${"0".repeat(60)}`, name: "beta" });
      const c = network({ id: `ff${"0".repeat(62)}`, name: `abc1${"0".repeat(60)}x` });
      for (const n of [a, b, c]) await store.networks.create(n);
      expect((await store.networks.find(a.id))?.name).toBe("alpha");
      expect((await store.networks.find("beta"))?.id).toBe(b.id);
      expect((await store.networks.find("abc1"))?.id).toBe(a.id);
      expect((await store.networks.find("ff"))?.id).toBe(c.id);
      expect(await store.networks.find("nope")).toBeUndefined();
      expect(await store.networks.find("")).toBeUndefined();
      const e = await expectError(store.networks.find("abc"), "invalid", "ambiguous");
      expect(e.message).toBe("network abc is ambiguous (2 matches found based on ID prefix)");
    });

    test("a name wins over another network's id prefix", async () => {
      const a = network({ id: `aa${"1".repeat(62)}`, name: "x" });
      const b = network({ name: "aa" });
      await store.networks.create(a);
      await store.networks.create(b);
      expect((await store.networks.find("aa"))?.id).toBe(b.id);
    });

    test("list is in creation order", async () => {
      const ns = [network(), network(), network()];
      for (const n of [ns[2]!, ns[0]!, ns[1]!]) await store.networks.create(n);
      expect((await store.networks.list()).map((n) => n.id)).toEqual(ns.map((n) => n.id));
    });

    test("update replaces the record; renaming onto another name is a conflict; missing is not-found", async () => {
      const a = network({ name: "alpha" });
      const b = network({ name: "beta" });
      await store.networks.create(a);
      await store.networks.create(b);
      await store.networks.update({ ...a, name: "alpha2", driverState: { bridge: "br-a" } });
      const got = await store.networks.get(a.id);
      expect(got?.name).toBe("alpha2");
      expect(got?.driverState).toEqual({ bridge: "br-a" });
      expect(await store.networks.find("alpha")).toBeUndefined();
      await expectError(store.networks.update({ ...a, name: "beta" }), "conflict", "network-exists");
      await expectError(store.networks.update(network()), "not-found", "network-not-found");
    });

    test("delete: true once, then false; refused while endpoints remain; takes its allocations along", async () => {
      const n = network({ ipam: { driver: "default", options: {}, pools: [pool("10.0.0.0/24")] } });
      await store.networks.create(n);
      const ep = endpoint(n.id, "c1");
      await store.endpoints.create(ep);
      await store.allocations.insert({
        networkId: n.id,
        containerId: "c1",
        ifname: "eth0",
        family: 4,
        address: IP.parse("10.0.0.2"),
        subnet: Prefix.parse("10.0.0.0/24"),
        created: new Date().toISOString(),
      });
      await store.allocations.setCursor(n.id, Prefix.parse("10.0.0.0/24"), IP.parse("10.0.0.2"));
      const e = await expectError(store.networks.delete(n.id), "conflict", "network-in-use");
      expect(e.message).toContain("has active endpoints");
      expect(await store.networks.get(n.id)).toBeDefined();
      expect(await store.endpoints.delete(ep.id)).toBe(true);
      expect(await store.networks.delete(n.id)).toBe(true);
      expect(await store.networks.delete(n.id)).toBe(false);
      expect(await store.allocations.list()).toEqual([]);
      expect(await store.allocations.getCursor(n.id, Prefix.parse("10.0.0.0/24"))).toBeUndefined();
    });
  });

  describe("endpoints", () => {
    test("create, get, list by network and by container, update, delete", async () => {
      const n1 = network();
      const n2 = network();
      await store.networks.create(n1);
      await store.networks.create(n2);
      const e1 = endpoint(n1.id, "c1", {
        hostIfname: "veth1",
        ports: [{ hostIP: IP.parse("127.0.0.1"), hostPort: 80, containerPort: 8080, protocol: "udp" }],
        addresses: [IPNet.parse("10.0.0.2/24"), IPNet.parse("fd00::2/64")],
      });
      const e2 = endpoint(n1.id, "c2");
      const e3 = endpoint(n2.id, "c1");
      for (const e of [e1, e2, e3]) await store.endpoints.create(e);
      const got = await store.endpoints.get(e1.id);
      expect(got?.mac).toBeInstanceOf(MAC);
      expect(got?.addresses[1]).toBeInstanceOf(IPNet);
      expect(got?.ports[0]?.hostIP?.toString()).toBe("127.0.0.1");
      expect(plain(got)).toEqual(plain(e1));
      expect((await store.endpoints.listByNetwork(n1.id)).map((e) => e.id)).toEqual([e1.id, e2.id]);
      expect((await store.endpoints.listByContainer("c1")).map((e) => e.id)).toEqual([e1.id, e3.id]);
      await store.endpoints.update({ ...e1, hostIfname: "veth9" });
      expect((await store.endpoints.get(e1.id))?.hostIfname).toBe("veth9");
      await expectError(store.endpoints.update({ ...e1, networkId: n2.id }), "invalid", "endpoint-immutable");
      await expectError(store.endpoints.update(endpoint(n1.id, "zz")), "not-found", "endpoint-not-found");
      expect(await store.endpoints.delete(e2.id)).toBe(true);
      expect(await store.endpoints.delete(e2.id)).toBe(false);
      expect(await store.endpoints.get(e2.id)).toBeUndefined();
    });

    test("a second endpoint for the same container on a network is a conflict naming container and network", async () => {
      const n = network({ name: "backend" });
      await store.networks.create(n);
      const c = container({ name: "web" });
      await store.containers.create(c);
      await store.endpoints.create(endpoint(n.id, c.id));
      const e = await expectError(store.endpoints.create(endpoint(n.id, c.id)), "conflict", "endpoint-exists");
      expect(e.message).toBe("endpoint with name web already exists in network backend");
      // Without a container record the id stands in for the name.
      await store.endpoints.create(endpoint(n.id, "cni-abc"));
      const e2 = await expectError(store.endpoints.create(endpoint(n.id, "cni-abc")), "conflict", "endpoint-exists");
      expect(e2.message).toBe("endpoint with name cni-abc already exists in network backend");
    });

    test("an endpoint on a missing network is not-found", async () => {
      await expectError(store.endpoints.create(endpoint(newId(), "c")), "not-found", "network-not-found");
    });
  });

  describe("containers", () => {
    test("create, find, update, list, delete; duplicate name is a conflict", async () => {
      const c = container({ name: "postgres", pid: 42, limits: { memoryBytes: 1 << 20, cpus: 0.5 }, labels: { a: "b" } });
      await store.containers.create(c);
      expect(await store.containers.get(c.id)).toEqual(c);
      expect((await store.containers.find("postgres"))?.id).toBe(c.id);
      expect((await store.containers.find(c.id.slice(0, 12)))?.id).toBe(c.id);
      const e = await expectError(store.containers.create(container({ name: "postgres" })), "conflict", "container-exists");
      expect(e.message).toBe("container with name postgres already exists");
      await store.containers.update({ ...c, state: "exited", exitCode: 3 });
      expect(await store.containers.get(c.id)).toMatchObject({ state: "exited", exitCode: 3 });
      const d = container({ name: "other" });
      await store.containers.create(d);
      await expectError(store.containers.update({ ...d, name: "postgres" }), "conflict", "container-exists");
      await expectError(store.containers.update(container()), "not-found", "container-not-found");
      expect((await store.containers.list()).map((x) => x.name)).toEqual(["postgres", "other"]);
      expect(await store.containers.delete(c.id)).toBe(true);
      expect(await store.containers.delete(c.id)).toBe(false);
      expect(await store.containers.find("postgres")).toBeUndefined();
    });
  });

  describe("allocations table", () => {
    const key = { networkId: "n1", containerId: "c1", ifname: "eth0" };
    const rec = (address: string, over: Partial<typeof key> = {}) => ({
      ...key,
      ...over,
      family: IP.parse(address).family,
      address: IP.parse(address),
      subnet: Prefix.parseLoose(`${address}/${IP.parse(address).family === 4 ? 24 : 64}`),
      created: "2024-01-01T00:00:00.000Z",
    });

    test("one address per network, one per key and family", async () => {
      await store.allocations.insert(rec("10.0.0.2"));
      await store.allocations.insert(rec("fd00::2"));
      const e = await expectError(store.allocations.insert(rec("10.0.0.2", { containerId: "c2" })), "conflict", "address-in-use");
      expect(e.message).toBe("address 10.0.0.2 is already in use");
      await expectError(store.allocations.insert(rec("10.0.0.3")), "conflict", "allocation-exists");
      // the same address in another network is fine
      await store.allocations.insert(rec("10.0.0.2", { networkId: "n2" }));
      expect((await store.allocations.get(key)).map((a) => a.address.toString())).toEqual(["10.0.0.2", "fd00::2"]);
      expect((await store.allocations.byAddress("n1", IP.parse("fd00::2")))?.containerId).toBe("c1");
      expect(await store.allocations.byAddress("n1", IP.parse("10.0.0.9"))).toBeUndefined();
      expect((await store.allocations.list({ networkId: "n2" })).length).toBe(1);
      expect((await store.allocations.list({ containerId: "c1" })).length).toBe(3);
      const gone = await store.allocations.delete(key, 6);
      expect(gone.map((a) => a.address.toString())).toEqual(["fd00::2"]);
      expect((await store.allocations.deleteNetwork("n2")).length).toBe(1);
      expect((await store.allocations.list()).map((a) => a.address.toString())).toEqual(["10.0.0.2"]);
    });

    test("list is in address order (numeric, not textual)", async () => {
      for (const [i, a] of ["10.0.0.10", "10.0.0.9", "10.0.0.100"].entries()) {
        await store.allocations.insert(rec(a, { containerId: `c${i}` }));
      }
      expect((await store.allocations.list()).map((a) => a.address.toString())).toEqual([
        "10.0.0.9",
        "10.0.0.10",
        "10.0.0.100",
      ]);
    });

    test("cursors", async () => {
      const s = Prefix.parse("fd00::/64");
      expect(await store.allocations.getCursor("n", s)).toBeUndefined();
      await store.allocations.setCursor("n", s, IP.parse("fd00::ffff"));
      expect((await store.allocations.getCursor("n", s))?.toString()).toBe("fd00::ffff");
    });
  });

  describe("meta", () => {
    test("get, set, delete", async () => {
      expect(await store.meta.get("k")).toBeUndefined();
      await store.meta.set("k", "v1");
      await store.meta.set("k", "v2");
      expect(await store.meta.get("k")).toBe("v2");
      expect(await store.meta.delete("k")).toBe(true);
      expect(await store.meta.delete("k")).toBe(false);
    });
  });

  describe("transactions", () => {
    test("writes commit together", async () => {
      const n = network();
      const c = container();
      const out = await store.transaction(async (tx) => {
        await tx.networks.create(n);
        await tx.containers.create(c);
        await tx.endpoints.create(endpoint(n.id, c.id));
        return "done";
      });
      expect(out).toBe("done");
      expect((await store.endpoints.listByContainer(c.id)).length).toBe(1);
    });

    test("a throw rolls every write back", async () => {
      await store.networks.create(network({ name: "keep" }));
      const before = await snapshot(store);
      await expect(
        store.transaction(async (tx) => {
          await tx.networks.create(network({ name: "temp" }));
          await tx.containers.create(container());
          await tx.meta.set("x", "y");
          throw new Error("boom");
        }),
      ).rejects.toThrow("boom");
      expect(await snapshot(store)).toBe(before);
      expect(await store.meta.get("x")).toBeUndefined();
    });

    test("a failed write caught inside the transaction leaves no half-write", async () => {
      await store.networks.create(network({ name: "taken" }));
      await store.transaction(async (tx) => {
        await expectError(tx.networks.create(network({ name: "taken" })), "conflict", "network-exists");
        await tx.networks.create(network({ name: "fresh" }));
      });
      expect((await store.networks.list()).map((n) => n.name)).toEqual(["taken", "fresh"]);
    });

    test("nested transactions join the outer one; the tx is dead afterwards", async () => {
      let saved: Parameters<Parameters<typeof store.transaction>[0]>[0] | undefined;
      await expect(
        store.transaction(async (tx) => {
          saved = tx;
          await tx.transaction(async (inner) => {
            await inner.networks.create(network());
          });
          throw new Error("outer fails");
        }),
      ).rejects.toThrow("outer fails");
      expect(await store.networks.list()).toEqual([]);
      await expectError(saved!.networks.list(), "system", "tx-finished");
    });

  });
}
