/**
 * Arbitrary dynamic ranges (rangeStart..rangeEnd on a pool, CNI host-local's
 * range keys): dynamic allocation stays inside, round-robins inside, reports
 * exhaustion, usage counts only the range, and static requests are not limited.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Ipam } from "../../src/ipam/index.ts";
import { IP } from "../../src/net/index.ts";
import type { IpamPoolConfig, SqliteStore } from "../../src/store/index.ts";
import { expectError, pool, tempStore } from "../fixtures/ipam-helpers.ts";

let store: SqliteStore;
let cleanup: () => Promise<void>;
let ipam: Ipam;

beforeEach(() => {
  ({ store, cleanup } = tempStore());
  ipam = new Ipam(store);
});
afterEach(async () => {
  await cleanup();
});

function ranged(subnet: string, start?: string, end?: string, extra: { gateway?: string; ipRange?: string } = {}): IpamPoolConfig {
  const p = pool(subnet, extra);
  if (start) p.rangeStart = IP.parse(start);
  if (end) p.rangeEnd = IP.parse(end);
  return p;
}

async function take(pools: IpamPoolConfig[], n: number, family: 4 | 6 = 4): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = await ipam.allocate({ networkId: "net", containerId: `c${i}`, ifname: "eth0", family, pools });
    out.push(a.address.toString());
  }
  return out;
}

describe("rangeStart/rangeEnd", () => {
  test("dynamic addresses come only from the range, then the pool is exhausted", async () => {
    const pools = [ranged("10.9.0.0/24", "10.9.0.10", "10.9.0.12", { gateway: "10.9.0.1" })];
    expect(await take(pools, 3)).toEqual(["10.9.0.10", "10.9.0.11", "10.9.0.12"]);
    await expectError(
      ipam.allocate({ networkId: "net", containerId: "cX", ifname: "eth0", family: 4, pools }),
      "unavailable",
      "pool-exhausted",
    );
  });

  test("only rangeStart: up to the end of the subnet (broadcast excluded)", async () => {
    const pools = [ranged("10.9.1.0/29", "10.9.1.5")];
    expect(await take(pools, 2)).toEqual(["10.9.1.5", "10.9.1.6"]);
    await expectError(ipam.allocate({ networkId: "net", containerId: "cY", ifname: "eth0", family: 4, pools }), "unavailable", "pool-exhausted");
  });

  test("only rangeEnd: from the start of the subnet, gateway skipped", async () => {
    const pools = [ranged("10.9.2.0/24", undefined, "10.9.2.3", { gateway: "10.9.2.1" })];
    expect(await take(pools, 2)).toEqual(["10.9.2.2", "10.9.2.3"]);
  });

  test("round robin stays inside the range and wraps to rangeStart", async () => {
    const pools = [ranged("10.9.3.0/24", "10.9.3.100", "10.9.3.102")];
    const first = await take(pools, 3);
    expect(first).toEqual(["10.9.3.100", "10.9.3.101", "10.9.3.102"]);
    await ipam.release({ networkId: "net", containerId: "c0", ifname: "eth0" });
    const again = await ipam.allocate({ networkId: "net", containerId: "new", ifname: "eth0", family: 4, pools });
    expect(again.address.toString()).toBe("10.9.3.100");
  });

  test("a static request outside the range but inside the subnet is allowed", async () => {
    const pools = [ranged("10.9.4.0/24", "10.9.4.10", "10.9.4.20")];
    const a = await ipam.allocate({ networkId: "net", containerId: "s", ifname: "eth0", family: 4, pools, requested: "10.9.4.200" });
    expect(a.ipnet.toString()).toBe("10.9.4.200/24");
  });

  test("IPv6 range", async () => {
    const pools = [ranged("fd00:9::/64", "fd00:9::1:0", "fd00:9::1:1")];
    expect(await take(pools, 2, 6)).toEqual(["fd00:9::1:0", "fd00:9::1:1"]);
    await expectError(ipam.allocate({ networkId: "net", containerId: "z", ifname: "eth0", family: 6, pools }), "unavailable", "pool-exhausted");
  });

  test("range intersected with ipRange", async () => {
    const pools = [ranged("10.9.5.0/24", "10.9.5.60", "10.9.5.200", { ipRange: "10.9.5.0/26" })];
    expect(await take(pools, 4)).toEqual(["10.9.5.60", "10.9.5.61", "10.9.5.62", "10.9.5.63"]);
    await expectError(ipam.allocate({ networkId: "net", containerId: "q", ifname: "eth0", family: 4, pools }), "unavailable", "pool-exhausted");
  });

  test("usage counts the range only", async () => {
    const pools = [ranged("10.9.6.0/24", "10.9.6.10", "10.9.6.19", { gateway: "10.9.6.1" })];
    await take(pools, 3);
    const [u] = await ipam.utilisation("net", pools);
    expect(u?.free).toBe(7n);
    expect(u?.allocated).toBe(3);
    expect(u?.size).toBe(254n);
  });
});
