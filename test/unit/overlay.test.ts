/** Pure parts of the overlay driver: options and the forwarding entries a host wants. */
import { describe, expect, test } from "bun:test";
import { wanted } from "../../src/drivers/overlay/agent.ts";
import { bridgeName, networkIdOfVxlan, parseOverlayOptions, vxlanName } from "../../src/drivers/overlay/options.ts";
import { IP, IPNet, MAC } from "../../src/net/index.ts";
import type { EndpointRecord } from "../../src/store/types.ts";
import { endpoint, expectError } from "../fixtures/ipam-helpers.ts";

describe("overlay options", () => {
  test("defaults, Docker's keys, bad values", async () => {
    expect(parseOverlayOptions({})).toEqual({ mtu: undefined, vni: undefined });
    expect(parseOverlayOptions({ "com.docker.network.driver.mtu": "1400", "com.docker.network.driver.overlay.vxlanid_list": "5000" })).toEqual({ mtu: 1400, vni: 5000 });
    await expectError(() => parseOverlayOptions({ parent: "eth0" }), "invalid", "unknown-option", "Options.parent");
    await expectError(() => parseOverlayOptions({ "com.docker.network.driver.mtu": "9x" }), "invalid", "bad-mtu");
    await expectError(() => parseOverlayOptions({ "com.docker.network.driver.overlay.vxlanid_list": "16777216" }), "invalid", "bad-vni");
    await expectError(() => parseOverlayOptions({ "com.docker.network.driver.overlay.vxlanid_list": "10,11" }), "invalid", "bad-vni");
  });

  test("kernel names fit 15 characters and map back to the network", () => {
    const id = "0123456789abcdef".repeat(4);
    expect(bridgeName(id)).toBe("bo0123456789ab");
    expect(vxlanName(id)).toBe("vx0123456789ab");
    expect(networkIdOfVxlan(vxlanName(id))).toBe(id.slice(0, 12));
    expect(networkIdOfVxlan("vxlan0")).toBeUndefined();
  });
});

describe("wanted forwarding entries", () => {
  const hosts = new Map([
    ["h1", IP.parse("192.168.50.1")],
    ["h2", IP.parse("192.168.50.2")],
  ]);
  const ep = (host: string | undefined, ip: string, over: Partial<EndpointRecord> = {}): EndpointRecord =>
    endpoint("n", `c-${ip}`, { ...(host ? { host } : {}), mac: MAC.fromIPv4(IP.parse(ip)), addresses: [IPNet.parse(`${ip}/24`)], ...over });

  test("only other live hosts' endpoints, MAC -> VTEP and IP -> MAC", () => {
    const all = [ep("h1", "10.0.0.2"), ep("h2", "10.0.0.3"), ep("h3", "10.0.0.4"), ep(undefined, "10.0.0.5"), ep("h2", "10.0.0.6", { pending: "disconnect" })];
    const w = wanted(all, "h1", hosts);
    expect(w.fdb.map((e) => `${e.mac}>${e.dst}`)).toEqual(["02:42:0a:00:00:03>192.168.50.2"]);
    expect(w.neigh.map((n) => `${n.ip}>${n.mac}`)).toEqual(["10.0.0.3>02:42:0a:00:00:03"]);
  });

  test("a host whose lease expired contributes nothing", () => {
    const w = wanted([ep("h2", "10.0.0.3")], "h1", new Map([["h1", IP.parse("192.168.50.1")]]));
    expect(w).toEqual({ fdb: [], neigh: [] });
  });
});
