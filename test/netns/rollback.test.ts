/**
 * Rollback: every fault point on the createNetwork and connect paths (found by
 * scanning src/ for `faults.hit(`), armed one at a time, must make the operation
 * throw the injected fault and leave the store, the kernel (links in the host and
 * container namespaces, Berth's nft table) and the IPAM cursor exactly as before;
 * the next normal operation then succeeds with the same first address/subnet.
 * Bad input must change nothing and name the field at fault.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { sourcePoints } from "../harness/fault-points.ts";
import { assertRootUntouched } from "../harness/sandbox.ts";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { IP, parsePortMappings } from "../../src/net/index.ts";
import { addrsOf, expectBerthError, linkNames, nftTableText } from "./util.ts";

assertRootUntouched();


/** Probed in a throwaway namespace (`unshare --net`), never in the root namespace. */
const IPVLAN_OK = await new Dataplane().linkKindSupported("ipvlan");

/** Every `faults.hit("...")` point of the controller and the drivers. */
const ALL_POINTS = sourcePoints(["controller", "drivers"], /faults\.hit\(\s*"([^"]+)"\s*\)/g);
/** The createNetwork path (exercised with the bridge driver). */
const CREATE_POINTS = ALL_POINTS.filter((p) => /^(createNetwork|bridge\.createNetwork):/.test(p));
/** The connect path: controller points and the drivers' endpoint/join points, by driver. */
const CONNECT_POINTS = ALL_POINTS.filter((p) => !CREATE_POINTS.includes(p));
function connectDriver(point: string): "bridge" | "macvlan" | "ipvlan" | undefined {
  if (/^(connect:|bridge\.)/.test(point)) return "bridge";
  if (point.startsWith("macvlan.")) return "macvlan";
  if (point.startsWith("ipvlan.")) return "ipvlan";
  return undefined;
}

/** Everything that must be unchanged by a failed operation. */
async function snapshot(b: TestBerth, containerNs?: string): Promise<Record<string, unknown>> {
  const nets = await b.store.networks.list();
  const cursors: string[] = [];
  const eps: string[] = [];
  for (const n of nets) {
    for (const p of n.ipam.pools) {
      // a cursor outside the subnet means "start from the first address", the same as none
      const cur = await b.store.allocations.getCursor(n.id, p.subnet);
      cursors.push(`${n.name}:${p.subnet}=${cur && p.subnet.contains(cur) ? cur.toString() : "-"}`);
    }
    for (const e of await b.store.endpoints.listByNetwork(n.id)) eps.push(`${n.name}/${e.containerId}/${e.ifname}/${e.id}`);
  }
  return {
    networks: nets.map((n) => `${n.id}/${n.name}/${n.driver}/${n.ipam.pools.map((p) => p.subnet.toString()).join(",")}/${JSON.stringify(n.driverState)}`).sort(),
    endpoints: eps.sort(),
    allocations: (await b.store.allocations.list()).map((a) => `${a.networkId}/${a.containerId}/${a.ifname}/${a.address}`).sort(),
    containers: (await b.store.containers.list()).map((c) => c.id).sort(),
    cursors: cursors.sort(),
    hostLinks: linkNames(b.sb.host),
    containerLinks: containerNs ? linkNames(containerNs) : [],
    nft: nftTableText(b.sb.host),
  };
}

test("every fault point found in src/controller and src/drivers has a scenario here", () => {
  expect(ALL_POINTS.length).toBeGreaterThanOrEqual(12);
  expect(CREATE_POINTS).toEqual(["bridge.createNetwork:after-link", "createNetwork:after-driver", "createNetwork:after-firewall", "createNetwork:after-store"]);
  for (const p of CONNECT_POINTS) expect({ point: p, driver: connectDriver(p) }).toEqual({ point: p, driver: expect.any(String) });
});

describe("createNetwork rollback at every fault point", () => {
  for (const point of CREATE_POINTS) {
    test(point, async () => {
      // a fresh Berth each time: the first network in a sandbox must not leave a table behind either
      const b = await createTestBerth("rc");
      try {
        // berthd renders its table at start (daemon.ts), so the table exists before any network
        await b.ctl.syncFirewall();
        const before = await snapshot(b);
        b.faults.arm(point);
        await expectBerthError(b.ctl.createNetwork({ name: "net1" }), { kind: "system", code: "injected-fault", message: point });
        expect(await snapshot(b)).toEqual(before);
        // a normal create succeeds with the same first subnet and gateway
        const n = await b.ctl.createNetwork({ name: "net1" });
        expect(n.ipam.pools.map((p) => `${p.subnet} gw ${p.gateway}`)).toEqual(["10.123.0.0/24 gw 10.123.0.1"]);
        const br = (n.driverState as { bridge: string }).bridge;
        expect(linkNames(b.sb.host)).toContain(br);
        expect(nftTableText(b.sb.host)).toContain(`"${br}"`);
        // and a second failure with a network present also leaves nothing behind
        const before2 = await snapshot(b);
        b.faults.arm(point);
        await expectBerthError(b.ctl.createNetwork({ name: "net2", options: { "com.docker.network.bridge.name": "brfault0" } }), {
          kind: "system",
          code: "injected-fault",
        });
        expect(await snapshot(b)).toEqual(before2);
        const n2 = await b.ctl.createNetwork({ name: "net2", options: { "com.docker.network.bridge.name": "brfault0" } });
        expect(n2.ipam.pools[0]!.subnet.toString()).toBe("10.123.1.0/24");
      } finally {
        await b.close();
      }
    });
  }
});

describe("connect rollback at every fault point", () => {
  let b: TestBerth;
  beforeAll(async () => {
    b = await createTestBerth("rb");
    // a parent for macvlan/ipvlan networks, inside the sandbox host
    const r = Bun.spawnSync(["ip", "-n", b.sb.host, "link", "add", "up0", "up", "type", "veth", "peer", "name", "up1"], { stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(r.stderr.toString());
    // another network with an endpoint, so rollback has something it must not touch
    await b.ctl.createNetwork({ name: "other", ipam: { config: [{ subnet: "10.221.0.0/24" }] } });
    await b.ctl.connect({ network: "other", containerId: "bystander", netns: b.containerNs(), ports: parsePortMappings("9999:80") });
  });
  afterAll(async () => {
    await b?.close();
  });

  for (const point of CONNECT_POINTS) {
    const driver = connectDriver(point) ?? "bridge";
    // ipvlan needs kernel support this machine may lack (then run it under tools/run-in-vm.sh)
    test.skipIf(driver === "ipvlan" && !IPVLAN_OK)(`${point} (${driver})`, async () => {
      const name = `rb-${point.replace(/[^a-z]+/g, "-")}`.slice(0, 60);
      await b.ctl.createNetwork({
        name,
        driver,
        ...(driver === "bridge" ? {} : { options: { parent: "up0" } }),
        ipam: { config: [{ subnet: "10.220.0.0/24" }] },
      });
      const c = b.containerNs();
      const req = {
        network: name,
        containerId: "victim",
        netns: c,
        ...(driver === "bridge" ? { ports: parsePortMappings("8080:80") } : {}),
      };
      try {
        const before = await snapshot(b, c);
        b.faults.arm(point);
        await expectBerthError(b.ctl.connect(req), { kind: "system", code: "injected-fault", message: point });
        expect(await snapshot(b, c)).toEqual(before);
        // the next normal connect succeeds and gets the network's first address
        const ep = await b.ctl.connect(req);
        expect(ep.addresses.map(String)).toEqual(["10.220.0.2/24"]);
        expect(addrsOf(c, "eth0")).toEqual(["10.220.0.2/24"]);
        if (driver === "bridge") expect(nftTableText(b.sb.host)).toContain("tcp . 8080 : 10.220.0.2 . 80");
        await b.ctl.disconnect(name, "victim", c);
      } finally {
        b.faults.clear();
        await b.ctl.deleteNetwork(name).catch(() => undefined);
      }
    });
  }
});

describe("bad input changes nothing and names the field", () => {
  let b: TestBerth;
  let c: string;
  beforeAll(async () => {
    b = await createTestBerth("bi");
    await b.ctl.createNetwork({ name: "base", ipam: { config: [{ subnet: "10.230.0.0/24" }] } });
    c = b.containerNs();
    await b.ctl.connect({ network: "base", containerId: "occupant", netns: b.containerNs() });
    await b.ctl.createNetwork({ name: "dual", enableIPv6: true, ipam: { config: [{ subnet: "10.232.0.0/24" }, { subnet: "fd00:232::/64" }] } });
  });
  afterAll(async () => {
    await b?.close();
  });

  const cases: { what: string; run: () => Promise<unknown>; want: Parameters<typeof expectBerthError>[1] }[] = [
    {
      what: "unknown driver",
      run: () => b.ctl.createNetwork({ name: "x1", driver: "warp" }),
      want: { kind: "not-found", code: "unknown-driver", field: "Driver", message: "warp" },
    },
    {
      what: "overlapping subnet",
      run: () => b.ctl.createNetwork({ name: "x2", ipam: { config: [{ subnet: "10.230.0.0/16" }] } }),
      want: { kind: "forbidden", field: /^IPAM\.Config\[0\]/, message: "Pool overlaps" },
    },
    {
      what: "bad CIDR",
      run: () => b.ctl.createNetwork({ name: "x3", ipam: { config: [{ subnet: "10.0.0.0/33" }] } }),
      want: { kind: "invalid", field: /^IPAM\.Config\[0\]\.Subnet/, message: "10.0.0.0/33" },
    },
    {
      what: "duplicate network name",
      run: () => b.ctl.createNetwork({ name: "base" }),
      want: { kind: "conflict", code: "network-exists", field: "Name" },
    },
    {
      what: "deleting a network with endpoints",
      run: () => b.ctl.deleteNetwork("base"),
      want: { kind: "forbidden", message: "has active endpoints" },
    },
    {
      what: "interface name over 15 characters",
      run: () => b.ctl.connect({ network: "base", containerId: "newbie", netns: c, ifname: "abcdefghijklmnop" }),
      want: { kind: "invalid", field: "ifname", message: "abcdefghijklmnop" },
    },
    {
      what: "container ID with a slash",
      run: () => b.ctl.connect({ network: "base", containerId: "a/b", netns: c }),
      want: { kind: "invalid", field: "Container", message: '"/"' },
    },
    {
      what: "static IP outside the subnet",
      run: () => b.ctl.connect({ network: "base", containerId: "newbie", netns: c, ipv4: IP.parse("10.231.0.5") }),
      want: { kind: "invalid", field: "IPAMConfig.IPv4Address", message: "10.231.0.5" },
    },
    {
      // the IPv4 address is allocated before the IPv6 one fails: it must be released too
      what: "static IPv6 outside the subnet on a dual-stack network",
      run: () => b.ctl.connect({ network: "dual", containerId: "newbie", netns: c, ipv6: IP.parse("fd00:999::5") }),
      want: { kind: "invalid", field: "IPAMConfig.IPv6Address", message: "fd00:999::5" },
    },
    {
      what: "unknown bridge option",
      run: () => b.ctl.createNetwork({ name: "x4", options: { "com.example.frobnicate": "1" } }),
      want: { kind: "invalid", field: "Options.com.example.frobnicate", message: "unknown bridge option" },
    },
    {
      what: 'MTU "abc"',
      run: () => b.ctl.createNetwork({ name: "x5", options: { "com.docker.network.driver.mtu": "abc" } }),
      want: { kind: "invalid", code: "bad-mtu", field: "Options.com.docker.network.driver.mtu", message: "abc" },
    },
  ];

  for (const k of cases) {
    test(k.what, async () => {
      const before = await snapshot(b, c);
      await expectBerthError(k.run(), k.want);
      expect(await snapshot(b, c)).toEqual(before);
    });
  }

  test("after all that, normal operations still work", async () => {
    const n = await b.ctl.createNetwork({ name: "x1" });
    expect(n.ipam.pools[0]!.subnet.toString()).toBe("10.123.0.0/24");
    const ep = await b.ctl.connect({ network: "base", containerId: "newbie", netns: c, ifname: "abcdefghijklmno" });
    expect(ep.addresses.map(String)).toEqual(["10.230.0.3/24"]);
    expect(linkNames(c)).toContain("abcdefghijklmno");
    const dual = await b.ctl.connect({ network: "dual", containerId: "newbie", netns: c });
    expect(dual.addresses.map(String)).toEqual(["10.232.0.2/24", "fd00:232::2/64"]);
  });
});
