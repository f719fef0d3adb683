import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { IP, Prefix } from "../../src/net/index.ts";
import { Ipam, nextFree, type PoolSpec, type TakenLookup } from "../../src/ipam/index.ts";
import type { IpamPoolConfig, NetworkRecord, SqliteStore } from "../../src/store/index.ts";
import { expectError, network, pool, snapshot, tempStore } from "../fixtures/ipam-helpers.ts";

let store: SqliteStore;
let cleanup: () => Promise<void>;
let ipam: Ipam;

/** Sandbox-friendly defaults: never Docker's real ranges. */
const TEST_DEFAULTS = [
  { base: "10.200.0.0/16", size: 24 },
  { base: "fd12:3456:789a::/48", size: 64 },
];

beforeEach(() => {
  ({ store, cleanup } = tempStore());
  ipam = new Ipam(store, { defaultPools: TEST_DEFAULTS });
});
afterEach(async () => {
  await cleanup();
});

async function addNetwork(pools: IpamPoolConfig[], over: Partial<NetworkRecord> = {}): Promise<NetworkRecord> {
  const n = network({ ...over, ipam: { driver: "default", options: {}, pools } });
  await store.networks.create(n);
  return n;
}

/** Creates a network the way the controller will: pools prepared in the same transaction. */
function createNetwork(name: string, pools: PoolSpec[], opts: { ipv6?: boolean } = {}): Promise<NetworkRecord> {
  return store.transaction(async (tx) => {
    const ready = await ipam.using(tx).preparePools({ pools, ...opts });
    const n = network({ name, enableIPv6: opts.ipv6 ?? false, ipam: { driver: "default", options: {}, pools: ready } });
    await tx.networks.create(n);
    return n;
  });
}

const alloc = (networkId: string, containerId: string, extra: { family?: 4 | 6; requested?: string; ifname?: string } = {}) =>
  ipam.allocate({
    networkId,
    containerId,
    ifname: extra.ifname ?? "eth0",
    family: extra.family ?? 4,
    ...(extra.requested === undefined ? {} : { requested: extra.requested, field: "IPv4Address" }),
  });

describe("pool validation: clear errors naming the field, store unchanged", () => {
  const cases: { name: string; spec: PoolSpec; kind: "invalid"; code: string; field: string; message: string }[] = [
    {
      name: "bad subnet",
      spec: { subnet: "10.0.0.300/24" },
      kind: "invalid",
      code: "prefix-invalid",
      field: "IPAM.Config[0].Subnet",
      message: 'invalid subnet "10.0.0.300/24"',
    },
    {
      name: "subnet with host bits",
      spec: { subnet: "10.0.0.1/24" },
      kind: "invalid",
      code: "prefix-host-bits",
      field: "IPAM.Config[0].Subnet",
      message: 'did you mean "10.0.0.0/24"',
    },
    {
      name: "ip-range outside subnet",
      spec: { subnet: "10.0.0.0/24", ipRange: "10.1.0.0/24" },
      kind: "invalid",
      code: "pool-range-outside",
      field: "IPAM.Config[0].IPRange",
      message: "ip-range 10.1.0.0/24 is not inside subnet 10.0.0.0/24",
    },
    {
      name: "ip-range larger than subnet",
      spec: { subnet: "10.0.0.0/24", ipRange: "10.0.0.0/23" },
      kind: "invalid",
      code: "pool-range-outside",
      field: "IPAM.Config[0].IPRange",
      message: "ip-range 10.0.0.0/23 is not inside subnet 10.0.0.0/24",
    },
    {
      name: "gateway outside subnet",
      spec: { subnet: "10.0.0.0/24", gateway: "10.0.1.1" },
      kind: "invalid",
      code: "pool-address-outside",
      field: "IPAM.Config[0].Gateway",
      message: "gateway 10.0.1.1 is not inside subnet 10.0.0.0/24",
    },
    {
      name: "gateway of the other family",
      spec: { subnet: "10.0.0.0/24", gateway: "fd00::1" },
      kind: "invalid",
      code: "pool-address-outside",
      field: "IPAM.Config[0].Gateway",
      message: "gateway fd00::1 is not inside subnet 10.0.0.0/24",
    },
    {
      name: "gateway = network address",
      spec: { subnet: "10.0.0.0/24", gateway: "10.0.0.0" },
      kind: "invalid",
      code: "pool-gateway-reserved",
      field: "IPAM.Config[0].Gateway",
      message: "gateway 10.0.0.0 is the network address of 10.0.0.0/24",
    },
    {
      name: "gateway = broadcast address",
      spec: { subnet: "10.0.0.0/24", gateway: "10.0.0.255" },
      kind: "invalid",
      code: "pool-gateway-reserved",
      field: "IPAM.Config[0].Gateway",
      message: "gateway 10.0.0.255 is the broadcast address of 10.0.0.0/24",
    },
    {
      name: "unparsable gateway",
      spec: { subnet: "10.0.0.0/24", gateway: "10.0.0" },
      kind: "invalid",
      code: "ip-invalid",
      field: "IPAM.Config[0].Gateway",
      message: 'invalid gateway "10.0.0"',
    },
    {
      name: "aux outside subnet",
      spec: { subnet: "10.0.0.0/24", auxAddresses: { router: "10.9.0.5" } },
      kind: "invalid",
      code: "pool-address-outside",
      field: "IPAM.Config[0].AuxiliaryAddresses.router",
      message: "auxiliary address router=10.9.0.5 is not inside subnet 10.0.0.0/24",
    },
    {
      name: "ip-range without subnet",
      spec: { ipRange: "10.0.0.0/25" },
      kind: "invalid",
      code: "pool-subnet-required",
      field: "IPAM.Config[0].IPRange",
      message: "IPAM.Config[0].IPRange requires a subnet",
    },
    {
      name: "IPv6 subnet on a network without IPv6",
      spec: { subnet: "fd00::/64" },
      kind: "invalid",
      code: "ipv6-not-enabled",
      field: "IPAM.Config[0].Subnet",
      message: "IPv6 subnet fd00::/64 given but IPv6 is not enabled",
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      await createNetwork("existing", [{ subnet: "192.0.2.0/24" }]);
      const before = await snapshot(store);
      const e = await expectError(createNetwork("new", [c.spec]), c.kind, c.code, c.field);
      expect(e.message).toContain(c.message);
      expect(await snapshot(store)).toBe(before);
      // validatePools (no store) says the same
      await expectError(() => ipam.validatePools({ pools: [c.spec] }), c.kind, c.code, c.field);
    });
  }

  test("the field prefix is the caller's and the index is the pool's", async () => {
    await expectError(
      () => ipam.validatePools({ pools: [{ subnet: "10.0.0.0/24" }, { subnet: "bad" }], field: "ipam.ranges" }),
      "invalid",
      "prefix-invalid",
      "ipam.ranges[1].Subnet",
    );
  });
});

describe("overlap", () => {
  test("an explicit subnet overlapping another network is forbidden with Docker's message", async () => {
    await createNetwork("front", [{ subnet: "10.10.0.0/16" }]);
    const before = await snapshot(store);
    const e = await expectError(createNetwork("back", [{ subnet: "10.10.5.0/24" }]), "forbidden", "pool-overlap", "IPAM.Config[0].Subnet");
    expect(e.message).toBe(
      "Pool overlaps with other one on this address space: 10.10.5.0/24 overlaps with 10.10.0.0/16 of network front",
    );
    expect(await snapshot(store)).toBe(before);
    // a containing subnet overlaps too, and so does an identical one
    await expectError(createNetwork("back", [{ subnet: "10.0.0.0/8" }]), "forbidden", "pool-overlap");
    await expectError(createNetwork("back", [{ subnet: "10.10.0.0/16" }]), "forbidden", "pool-overlap");
    expect(await snapshot(store)).toBe(before);
    await createNetwork("back", [{ subnet: "10.11.0.0/16" }]);
  });

  test("IPv6 overlap, and pools of one request overlapping each other", async () => {
    await createNetwork("v6", [{ subnet: "fd00:1::/64" }], { ipv6: true });
    await expectError(createNetwork("x", [{ subnet: "fd00:1::/56" }], { ipv6: true }), "forbidden", "pool-overlap");
    const e = await expectError(
      createNetwork("x", [{ subnet: "10.1.0.0/24" }, { subnet: "10.1.0.128/25" }]),
      "forbidden",
      "pool-overlap",
      "IPAM.Config[1].Subnet",
    );
    expect(e.message).toContain("overlaps with 10.1.0.0/24 of IPAM.Config[0]");
  });

  test("re-validating a network's own pools is not an overlap", async () => {
    const n = await createNetwork("self", [{ subnet: "10.20.0.0/24" }]);
    const pools = await ipam.preparePools({ pools: [{ subnet: "10.20.0.0/24" }], networkId: n.id });
    expect(pools[0]?.subnet.toString()).toBe("10.20.0.0/24");
  });
});

describe("automatic subnets", () => {
  test("Docker's defaults: 172.17.0.0/16, then the next free one", async () => {
    const docker = new Ipam(store);
    expect((await docker.chooseSubnet(4)).toString()).toBe("172.17.0.0/16");
    await addNetwork([pool("172.17.0.0/16"), pool("172.18.5.0/24")]);
    expect((await docker.chooseSubnet(4)).toString()).toBe("172.19.0.0/16");
    const all = Array.from({ length: 15 }, (_, i) => pool(`172.${17 + i}.0.0/16`));
    await addNetwork(all.slice(2));
    expect((await docker.chooseSubnet(4)).toString()).toBe("192.168.0.0/20");
    await addNetwork([pool("192.168.0.0/20")]);
    expect((await docker.chooseSubnet(4)).toString()).toBe("192.168.16.0/20");
  });

  test("configured defaults are used, skipping taken subnets and `avoid`", async () => {
    const a = await createNetwork("a", []);
    expect(a.ipam.pools.map((p) => p.subnet.toString())).toEqual(["10.200.0.0/24"]);
    expect(a.ipam.pools[0]?.gateway?.toString()).toBe("10.200.0.1");
    await createNetwork("b", [{ subnet: "10.200.1.0/24" }]);
    const c = await store.transaction((tx) =>
      ipam.using(tx).preparePools({ pools: [{}], avoid: [Prefix.parse("10.200.2.0/23")] }),
    );
    expect(c[0]?.subnet.toString()).toBe("10.200.4.0/24");
  });

  test("no free default pool is unavailable/no-available-pool", async () => {
    const tiny = new Ipam(store, { defaultPools: [{ base: "10.99.0.0/23", size: 24 }] });
    await addNetwork([pool("10.99.0.0/24")]);
    expect((await tiny.chooseSubnet(4)).toString()).toBe("10.99.1.0/24");
    await addNetwork([pool("10.99.1.0/24")]);
    const e = await expectError(tiny.chooseSubnet(4), "unavailable", "no-available-pool");
    expect(e.message).toContain("could not find an available, non-overlapping IPv4 address pool");
  });

  test("dual stack: an IPv4 and an IPv6 subnet, each with its default gateway", async () => {
    const n = await createNetwork("ds", [], { ipv6: true });
    expect(n.ipam.pools.map((p) => `${p.subnet} gw ${p.gateway}`)).toEqual([
      "10.200.0.0/24 gw 10.200.0.1",
      "fd12:3456:789a::/64 gw fd12:3456:789a::1",
    ]);
    const m = await createNetwork("ds2", [{ subnet: "10.201.0.0/24" }], { ipv6: true });
    expect(m.ipam.pools.map((p) => p.subnet.toString())).toEqual(["10.201.0.0/24", "fd12:3456:789a:1::/64"]);
  });

  test("IPv6 default is a ULA /64 from a stable random 40-bit global id", async () => {
    const docker = new Ipam(store);
    const first = await docker.chooseSubnet(6);
    expect(first.length).toBe(64);
    expect(first.toString()).toMatch(/^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/64$/);
    expect(await store.meta.get("ipam.ula-global-id")).toMatch(/^[0-9a-f]{10}$/);
    // same id next time, and from another Ipam on the same store
    expect((await new Ipam(store).chooseSubnet(6)).equals(first)).toBe(true);
    await addNetwork([{ subnet: first, auxAddresses: {} }]);
    const second = await docker.chooseSubnet(6);
    expect(second.ip.value - first.ip.value).toBe(1n << 64n);
    const fixed = new Ipam(store, { ulaGlobalId: 0x0102030405n });
    expect((await fixed.chooseSubnet(6)).toString()).toBe("fd01:203:405::/64");
  });
});

describe("gateways and edge addresses", () => {
  test("default gateway is the first usable address; explicit ones are kept", async () => {
    const pools = await ipam.preparePools({
      pools: [
        { subnet: "10.30.0.0/24" },
        { subnet: "10.31.0.0/24", gateway: "10.31.0.254" },
        { subnet: "10.32.0.0/31" },
        { subnet: "10.33.0.0/32" },
        { subnet: "fd00:30::/64" },
        { subnet: "fd00:31::/127" },
      ],
      ipv6: true,
    });
    expect(pools.map((p) => p.gateway?.toString() ?? "-")).toEqual(["10.30.0.1", "10.31.0.254", "-", "-", "fd00:30::1", "-"]);
  });

  test("v4 /24: .0 and .255 and the gateway are never handed out", async () => {
    const n = await addNetwork([pool("10.0.0.0/24", { gateway: "10.0.0.1" })]);
    const got = [];
    for (let i = 0; i < 253; i++) got.push((await alloc(n.id, `c${i}`)).address.toString());
    expect(got[0]).toBe("10.0.0.2");
    expect(got.at(-1)).toBe("10.0.0.254");
    expect(new Set(got).size).toBe(253);
    expect(got).not.toContain("10.0.0.0");
    expect(got).not.toContain("10.0.0.1");
    expect(got).not.toContain("10.0.0.255");
    const e = await expectError(alloc(n.id, "one-more"), "unavailable", "pool-exhausted");
    expect(e.message).toBe("no available IPv4 addresses in subnet 10.0.0.0/24");
  });

  test("/31 hands out both addresses, /32 its one", async () => {
    const n31 = await addNetwork([pool("10.0.0.0/31")]);
    expect((await alloc(n31.id, "a")).address.toString()).toBe("10.0.0.0");
    expect((await alloc(n31.id, "b")).address.toString()).toBe("10.0.0.1");
    await expectError(alloc(n31.id, "c"), "unavailable", "pool-exhausted");
    const n32 = await addNetwork([pool("10.0.1.7/32")]);
    const a = await alloc(n32.id, "a");
    expect(a.ipnet.toString()).toBe("10.0.1.7/32");
    expect(a.gateway).toBeUndefined();
    await expectError(alloc(n32.id, "b"), "unavailable", "pool-exhausted");
  });

  test("IPv6: never the subnet-router anycast or the gateway; /127 hands out both", async () => {
    const n = await addNetwork([pool("fd00:1::/64", { gateway: "fd00:1::1" })]);
    const a = await alloc(n.id, "a", { family: 6 });
    expect(a.ipnet.toString()).toBe("fd00:1::2/64");
    expect(a.gateway?.toString()).toBe("fd00:1::1");
    await expectError(alloc(n.id, "b", { family: 6, requested: "fd00:1::" }), "invalid", "address-reserved");
    const p = await addNetwork([pool("fd00:2::/127")]);
    expect((await alloc(p.id, "a", { family: 6 })).address.toString()).toBe("fd00:2::");
    expect((await alloc(p.id, "b", { family: 6 })).address.toString()).toBe("fd00:2::1");
  });
});

describe("allocate", () => {
  test("idempotent per (network, container, ifname); another ifname or family is another address", async () => {
    const n = await addNetwork([pool("10.0.0.0/24", { gateway: "10.0.0.1" }), pool("fd00::/64", { gateway: "fd00::1" })]);
    const a = await alloc(n.id, "c1");
    const again = await alloc(n.id, "c1");
    expect(again.address.toString()).toBe(a.address.toString());
    expect(again.ipnet.toString()).toBe("10.0.0.2/24");
    expect(again.gateway?.toString()).toBe("10.0.0.1");
    // the same static address asked again is fine too
    expect((await alloc(n.id, "c1", { requested: "10.0.0.2" })).address.toString()).toBe("10.0.0.2");
    expect((await alloc(n.id, "c1", { ifname: "eth1" })).address.toString()).toBe("10.0.0.3");
    expect((await alloc(n.id, "c1", { family: 6 })).address.toString()).toBe("fd00::2");
    expect((await store.allocations.list({ networkId: n.id })).length).toBe(3);
    const e = await expectError(alloc(n.id, "c1", { requested: "10.0.0.9" }), "conflict", "allocation-mismatch");
    expect(e.message).toContain("already holds 10.0.0.2");
  });

  test("round-robin: a released address is not handed out again at once, and the cursor wraps", async () => {
    const n = await addNetwork([pool("10.0.0.0/29", { gateway: "10.0.0.1" })]); // usable .2-.6
    expect((await alloc(n.id, "a")).address.toString()).toBe("10.0.0.2");
    expect((await alloc(n.id, "b")).address.toString()).toBe("10.0.0.3");
    await ipam.release({ networkId: n.id, containerId: "a", ifname: "eth0" });
    expect((await alloc(n.id, "c")).address.toString()).toBe("10.0.0.4");
    expect((await alloc(n.id, "d")).address.toString()).toBe("10.0.0.5");
    expect((await alloc(n.id, "e")).address.toString()).toBe("10.0.0.6");
    expect((await alloc(n.id, "f")).address.toString()).toBe("10.0.0.2"); // wrapped past .7 (broadcast), .0, .1
    await expectError(alloc(n.id, "g"), "unavailable", "pool-exhausted");
  });

  test("dynamic addresses come from the ip-range; static ones may be anywhere in the subnet", async () => {
    const n = await addNetwork([pool("10.0.0.0/24", { ipRange: "10.0.0.128/30", gateway: "10.0.0.1" })]);
    const got = [];
    for (const c of ["a", "b", "c", "d"]) got.push((await alloc(n.id, c)).address.toString());
    expect(got).toEqual(["10.0.0.128", "10.0.0.129", "10.0.0.130", "10.0.0.131"]);
    const e = await expectError(alloc(n.id, "e"), "unavailable", "pool-exhausted");
    expect(e.message).toBe("no available IPv4 addresses in subnet 10.0.0.0/24 (ip-range 10.0.0.128/30)");
    expect((await alloc(n.id, "s", { requested: "10.0.0.50" })).address.toString()).toBe("10.0.0.50");
  });

  test("static address rules", async () => {
    const n = await addNetwork([pool("10.0.0.0/24", { gateway: "10.0.0.1", aux: { printer: "10.0.0.9" } })]);
    await alloc(n.id, "a", { requested: "10.0.0.5" });
    const before = await snapshot(store);
    let e = await expectError(alloc(n.id, "b", { requested: "10.0.0.5" }), "conflict", "address-in-use", "IPv4Address");
    expect(e.message).toBe("address 10.0.0.5 is already in use");
    e = await expectError(alloc(n.id, "b", { requested: "10.0.0.1" }), "conflict", "address-in-use");
    expect(e.message).toBe("address 10.0.0.1 is already in use (the gateway of 10.0.0.0/24)");
    e = await expectError(alloc(n.id, "b", { requested: "10.0.0.9" }), "conflict", "address-in-use");
    expect(e.message).toBe("address 10.0.0.9 is already in use (auxiliary address printer of 10.0.0.0/24)");
    e = await expectError(alloc(n.id, "b", { requested: "10.0.1.5" }), "invalid", "address-out-of-range", "IPv4Address");
    expect(e.message).toBe("address 10.0.1.5 is not inside subnet 10.0.0.0/24");
    e = await expectError(alloc(n.id, "b", { requested: "10.0.0.255" }), "invalid", "address-reserved");
    expect(e.message).toBe("address 10.0.0.255 is the broadcast address of 10.0.0.0/24");
    await expectError(alloc(n.id, "b", { requested: "10.0.0" }), "invalid", "ip-invalid", "IPv4Address");
    await expectError(alloc(n.id, "b", { requested: "fd00::5" }), "invalid", "address-family", "IPv4Address");
    expect(await snapshot(store)).toBe(before);
  });

  test("dynamic allocation skips aux addresses and statically taken ones", async () => {
    const n = await addNetwork([pool("10.0.0.0/24", { gateway: "10.0.0.1", aux: { a: "10.0.0.2", b: "10.0.0.4" } })]);
    await alloc(n.id, "s", { requested: "10.0.0.3" });
    expect((await alloc(n.id, "d")).address.toString()).toBe("10.0.0.5");
  });

  test("the free-address search pages through long runs of taken addresses (and wraps)", async () => {
    const n = await addNetwork([pool("10.0.0.0/22", { gateway: "10.0.0.1", aux: { a: "10.0.2.70" } })]);
    // 10.0.0.2 .. 10.0.2.69 taken statically: a run of 580 addresses right after the gateway
    await store.transaction(async (tx) => {
      for (let i = 2; i < 582; i++) {
        await tx.allocations.insert({
          networkId: n.id,
          containerId: `s${i}`,
          ifname: "eth0",
          family: 4,
          address: Prefix.parse("10.0.0.0/22").nth(i),
          subnet: Prefix.parse("10.0.0.0/22"),
          created: "2024-01-01T00:00:00.000Z",
        });
      }
    });
    expect((await alloc(n.id, "d1")).address.toString()).toBe("10.0.2.71"); // .70 is aux
    // a cursor near the end wraps round to the start of the run
    await store.allocations.setCursor(n.id, Prefix.parse("10.0.0.0/22"), IP.parse("10.0.3.254"));
    await ipam.release({ networkId: n.id, containerId: "s300", ifname: "eth0" });
    expect((await alloc(n.id, "d2")).address.toString()).toBe(Prefix.parse("10.0.0.0/22").nth(300).toString());
  });

  test("a second pool of the family is used once the first is full", async () => {
    const n = await addNetwork([pool("10.0.0.0/30", { gateway: "10.0.0.1" }), pool("10.0.1.0/30", { gateway: "10.0.1.1" })]);
    expect((await alloc(n.id, "a")).ipnet.toString()).toBe("10.0.0.2/30");
    const b = await alloc(n.id, "b");
    expect(b.ipnet.toString()).toBe("10.0.1.2/30");
    expect(b.gateway?.toString()).toBe("10.0.1.1");
    expect(b.subnet.toString()).toBe("10.0.1.0/30");
    const e = await expectError(alloc(n.id, "c"), "unavailable", "pool-exhausted");
    expect(e.message).toBe("no available IPv4 addresses in subnet 10.0.0.0/30, 10.0.1.0/30");
  });

  test("missing network, no pool of the family, explicit pools for callers without a network", async () => {
    await expectError(alloc("nope", "a"), "not-found", "network-not-found");
    const n = await addNetwork([pool("10.0.0.0/24")]);
    await expectError(alloc(n.id, "a", { family: 6 }), "invalid", "no-pool");
    const viaPools = await ipam.allocate({
      networkId: "cni-net",
      containerId: "c",
      ifname: "eth0",
      family: 4,
      pools: [pool("10.5.0.0/24", { gateway: "10.5.0.1" })],
    });
    expect(viaPools.ipnet.toString()).toBe("10.5.0.2/24");
    expect((await store.allocations.list({ networkId: "cni-net" })).length).toBe(1);
  });

  test("an exhausted pool changes nothing in the store", async () => {
    const n = await addNetwork([pool("10.0.0.0/30", { gateway: "10.0.0.1" })]);
    await alloc(n.id, "a");
    const before = await snapshot(store);
    await expectError(alloc(n.id, "b"), "unavailable", "pool-exhausted");
    expect(await snapshot(store)).toBe(before);
  });
});

describe("release, utilisation, gc", () => {
  test("release by key (one family or all), release a network", async () => {
    const n = await addNetwork([pool("10.0.0.0/24"), pool("fd00::/64")]);
    await alloc(n.id, "a");
    await alloc(n.id, "a", { family: 6 });
    await alloc(n.id, "b");
    const k = { networkId: n.id, containerId: "a", ifname: "eth0" };
    expect((await ipam.release(k, 6)).map((r) => r.address.toString())).toEqual(["fd00::1"]);
    expect((await ipam.release(k)).map((r) => r.address.toString())).toEqual(["10.0.0.1"]);
    expect(await ipam.release(k)).toEqual([]);
    expect((await ipam.releaseNetwork(n.id)).length).toBe(1);
    expect(await store.allocations.list()).toEqual([]);
  });

  test("utilisation counts usable, reserved, allocated and free per pool", async () => {
    const n = await addNetwork([
      pool("10.0.0.0/24", { ipRange: "10.0.0.0/28", gateway: "10.0.0.1", aux: { x: "10.0.0.3", y: "10.0.0.200" } }),
      pool("fd00::/64", { gateway: "fd00::1" }),
    ]);
    await alloc(n.id, "a");
    await alloc(n.id, "b", { requested: "10.0.0.100" });
    await alloc(n.id, "a", { family: 6 });
    const [v4, v6] = await ipam.utilisation(n.id);
    expect(v4).toEqual({
      subnet: Prefix.parse("10.0.0.0/24"),
      ipRange: Prefix.parse("10.0.0.0/28"),
      size: 254n,
      reserved: 2 + 0 + 1, // gateway, two aux addresses
      allocated: 2,
      free: 16n - 1n /* .0 */ - 2n /* .1, .3 */ - 1n /* a */,
    });
    expect(v6).toMatchObject({ size: (1n << 64n) - 1n, reserved: 1, allocated: 1, free: (1n << 64n) - 3n });
    await expectError(ipam.utilisation("nope"), "not-found", "network-not-found");
  });

  test("gc releases what is not live, optionally within one network", async () => {
    const n1 = await addNetwork([pool("10.0.0.0/24"), pool("fd00::/64")]);
    const n2 = await addNetwork([pool("10.0.1.0/24")]);
    for (const c of ["a", "b", "c"]) await alloc(n1.id, c);
    await alloc(n1.id, "a", { family: 6 });
    await alloc(n2.id, "z");
    const live = [{ networkId: n1.id, containerId: "b", ifname: "eth0" }];
    const scoped = await ipam.gc(live, { networkId: n1.id });
    expect(scoped.map((r) => `${r.containerId} ${r.address}`).sort()).toEqual(["a 10.0.0.1", "a fd00::1", "c 10.0.0.3"]);
    expect((await store.allocations.list()).map((r) => r.containerId).sort()).toEqual(["b", "z"]);
    const all = await ipam.gc(live);
    expect(all.map((r) => r.containerId)).toEqual(["z"]);
    expect(await ipam.gc(live)).toEqual([]);
  });
});

test("IP sanity: allocations are real IP objects", async () => {
  const n = await addNetwork([pool("10.0.0.0/24")]);
  const a = await alloc(n.id, "x");
  expect(a.address).toBeInstanceOf(IP);
  expect(a.address.equals(IP.parse("10.0.0.1"))).toBe(true);
});

test("nextFree is pure over a TakenLookup (no store needed)", async () => {
  const taken = new Set<bigint>();
  const lookup: TakenLookup = {
    between: async (a, b, limit) => [...taken].filter((v) => v >= a && v <= b).sort((x, y) => (x < y ? -1 : 1)).slice(0, limit),
  };
  const p = pool("10.0.0.0/16", { gateway: "10.0.0.1" });
  const base = p.subnet.ip.value;
  for (let i = 2n; i < 1000n; i++) taken.add(base + i);
  expect(await nextFree(p, undefined, lookup)).toBe(base + 1000n);
  expect(await nextFree(p, IP.parse("10.0.255.254"), lookup)).toBe(base + 1000n); // wraps past broadcast
  expect(await nextFree(p, IP.parse("10.0.100.0"), lookup)).toBe(IP.parse("10.0.100.1").value);
  const tiny = pool("10.0.0.0/30", { gateway: "10.0.0.1" });
  taken.clear();
  taken.add(tiny.subnet.ip.value + 2n);
  expect(await nextFree(tiny, undefined, lookup)).toBeUndefined();
});
