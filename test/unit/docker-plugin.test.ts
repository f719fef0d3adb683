/**
 * Docker remote NetworkDriver + IpamDriver protocol handlers (src/api/docker-plugin.ts),
 * called directly with the bodies dockerd sends, over an in-process Berth in a
 * sandbox namespace. Protocol errors (HTTP 400/404), refusals (200 + Err/Error),
 * nothing left behind by a refused call, and what Docker does with Join's answer
 * simulated by hand (move, rename, address) to prove the links pass packets.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { handlePluginCall, PLUGIN_METHODS } from "../../src/api/docker-plugin.ts";
import { newId } from "../../src/store/index.ts";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { assertRootUntouched, ipJson, nftJson, reachable } from "../harness/sandbox.ts";

assertRootUntouched();

type J = Record<string, unknown>;

describe("docker plugin protocol handlers", () => {
  let b: TestBerth;
  const call = async (path: string, body?: unknown): Promise<{ status: number; body: J }> => {
    const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
    const r = await handlePluginCall(b.ctl, path, text);
    return { status: r.status, body: r.body as J };
  };
  const hostLinks = (): string[] => ipJson<{ ifname: string }[]>(b.sb.host, "link", "show").map((l) => l.ifname);
  const netCount = async () => (await b.store.networks.list()).length;
  const epCount = async () => {
    let n = 0;
    for (const net of await b.store.networks.list()) n += (await b.store.endpoints.listByNetwork(net.id)).length;
    return n;
  };
  const createBody = (id: string, pool: string, gw: string, generic: J = {}, extra: J = {}) => ({
    NetworkID: id,
    Options: { "com.docker.network.enable_ipv6": false, "com.docker.network.generic": generic, ...extra },
    IPv4Data: [{ AddressSpace: "LocalDefault", Gateway: gw, Pool: pool }],
    IPv6Data: [],
  });
  const endpointBody = (nid: string, eid: string, address: string, mac = "") => ({
    NetworkID: nid,
    EndpointID: eid,
    Interface: { Address: address, AddressIPv6: "", MacAddress: mac },
    Options: { "com.docker.network.endpoint.exposedports": [], "com.docker.network.portmap": [] },
  });

  beforeAll(async () => {
    b = await createTestBerth("dp");
  });
  afterAll(async () => {
    await b?.close();
  });

  test("handshake and capabilities", async () => {
    expect(await call("/Plugin.Activate")).toEqual({ status: 200, body: { Implements: ["NetworkDriver", "IpamDriver"] } });
    expect(await call("/NetworkDriver.GetCapabilities")).toEqual({ status: 200, body: { Scope: "local", ConnectivityScope: "local" } });
    expect(await call("/IpamDriver.GetCapabilities")).toEqual({ status: 200, body: { RequiresMACAddress: false, RequiresRequestReplay: false } });
    expect((await call("/IpamDriver.GetDefaultAddressSpaces")).body).toEqual({
      LocalDefaultAddressSpace: "berth-local",
      GlobalDefaultAddressSpace: "berth-global",
    });
    for (const m of ["DiscoverNew", "DiscoverDelete", "AllocateNetwork", "FreeNetwork"]) {
      expect(await call(`/NetworkDriver.${m}`, { NetworkID: newId() })).toEqual({ status: 200, body: {} });
    }
    expect(PLUGIN_METHODS.length).toBe(21);
  });

  test("protocol errors: unknown method 404, bad JSON / non-object / missing or mistyped fields 400, nothing created", async () => {
    const nets = await netCount();
    const links = hostLinks().length;
    const r404 = await call("/NetworkDriver.NoSuchThing", {});
    expect(r404.status).toBe(404);
    expect(r404.body.Err).toContain("unknown plugin method");
    const bad: [string, unknown, string][] = [
      ["/NetworkDriver.CreateNetwork", "{not json", "invalid JSON"],
      ["/NetworkDriver.CreateNetwork", "[1,2]", "JSON object"],
      ["/NetworkDriver.CreateNetwork", { Options: {}, IPv4Data: [] }, "NetworkID is required"],
      ["/NetworkDriver.CreateNetwork", { NetworkID: "abc", IPv4Data: [] }, "64 lowercase hex"],
      ["/NetworkDriver.CreateNetwork", { NetworkID: newId(), IPv4Data: [{ Gateway: "10.9.0.1/24" }] }, "IPv4Data[0].Pool is required"],
      ["/NetworkDriver.CreateNetwork", { NetworkID: newId(), IPv4Data: { Pool: "10.9.0.0/24" } }, "IPv4Data must be a list"],
      ["/NetworkDriver.CreateNetwork", { NetworkID: newId(), Options: { "com.docker.network.generic": { a: { b: 1 } } } }, "option a"],
      ["/NetworkDriver.CreateEndpoint", { NetworkID: newId() }, "EndpointID is required"],
      ["/NetworkDriver.CreateEndpoint", { NetworkID: newId(), EndpointID: newId(), Interface: { Address: "10.0.0.300/24" } }, "10.0.0.300"],
      ["/NetworkDriver.Join", { NetworkID: newId(), EndpointID: newId() }, "SandboxKey is required"],
      ["/NetworkDriver.ProgramExternalConnectivity", { NetworkID: newId(), EndpointID: newId(), Options: { "com.docker.network.portmap": [{ Proto: 99, Port: 80, HostPort: 80 }] } }, "Proto"],
    ];
    for (const [path, body, msg] of bad) {
      const r = await call(path, body);
      expect(r.status).toBe(400);
      expect(r.body.Err as string).toContain(msg);
    }
    // IPAM answers carry the IPAM field too
    const ipam400 = await call("/IpamDriver.RequestAddress", { Address: "" });
    expect(ipam400.status).toBe(400);
    expect(ipam400.body.Error).toContain("PoolID is required");
    expect(ipam400.body.Err).toContain("PoolID is required");
    expect(await netCount()).toBe(nets);
    expect(hostLinks().length).toBe(links);
  });

  test("network lifecycle: CreateNetwork with Docker's pool, gateway and generic options; refusals create nothing", async () => {
    const id = newId();
    const r = await call("/NetworkDriver.CreateNetwork", createBody(id, "10.210.0.0/24", "10.210.0.1/24", {
      "com.docker.network.driver.mtu": "1400",
      "com.docker.network.bridge.name": "dkbr0",
    }));
    expect(r).toEqual({ status: 200, body: {} });
    const net = await b.ctl.getNetwork(id);
    expect(net.id).toBe(id);
    expect(net.name).toBe(`docker-${id.slice(0, 12)}`);
    expect(net.managedBy).toBe("docker");
    expect(net.driver).toBe("bridge");
    expect(net.ipam.pools.map((p) => [p.subnet.toString(), p.gateway?.toString()])).toEqual([["10.210.0.0/24", "10.210.0.1"]]);
    const br = ipJson<{ ifname: string; mtu: number; addr_info: { local: string }[] }[]>(b.sb.host, "-4", "addr", "show", "dev", "dkbr0")[0]!;
    expect(br.mtu).toBe(1400);
    expect(br.addr_info.map((a) => a.local)).toEqual(["10.210.0.1"]);
    // dockerd may replay a create: same answer, nothing new
    expect(await call("/NetworkDriver.CreateNetwork", createBody(id, "10.210.0.0/24", "10.210.0.1/24"))).toEqual({ status: 200, body: {} });

    // Berth's own API may not remove or prune it
    await expect(b.ctl.deleteNetwork(id)).rejects.toThrow("managed by docker");
    expect(await b.ctl.pruneNetworks()).not.toContain(net.name);

    const nets = await netCount();
    const links = hostLinks();
    const refusals: [J, string][] = [
      [createBody(newId(), "10.211.0.0/24", "10.211.0.1/24", { "no.such.option": "x" }), "unknown bridge option"],
      [createBody(newId(), "10.211.0.0/24", "10.211.0.1/24", { "berth.driver": "nosuch" }), "unknown network driver"],
      [createBody(newId(), "10.211.0.0/24", "10.211.0.1/24", { "berth.driver": "null" }), "cannot be used through Docker"],
      [createBody(newId(), "10.210.0.128/25", "10.210.0.129/25"), "Pool overlaps"],
      [createBody(newId(), "10.211.0.0/24", "10.212.0.1/24"), "not inside subnet"],
      [createBody(newId(), "10.211.0.0/24", "10.211.0.1/24", { "com.docker.network.bridge.name": "dkbr0" }), "dkbr0"],
    ];
    for (const [body, msg] of refusals) {
      const x = await call("/NetworkDriver.CreateNetwork", body);
      expect(x.status).toBe(200);
      expect(x.body.Err as string).toContain(msg);
    }
    expect(await netCount()).toBe(nets);
    expect(hostLinks()).toEqual(links);

    expect(await call("/NetworkDriver.DeleteNetwork", { NetworkID: id })).toEqual({ status: 200, body: {} });
    expect(hostLinks()).not.toContain("dkbr0");
    await expect(b.ctl.getNetwork(id)).rejects.toThrow("not found");
    // teardown is idempotent
    expect(await call("/NetworkDriver.DeleteNetwork", { NetworkID: id })).toEqual({ status: 200, body: {} });
  });

  test("endpoints: exact address, Join hands over the veth, Docker's move makes real packets flow, teardown", async () => {
    const nid = newId();
    expect((await call("/NetworkDriver.CreateNetwork", createBody(nid, "10.220.0.0/24", "10.220.0.1/24"))).body).toEqual({});
    // unknown network: refused, nothing created
    const eps = await epCount();
    const unknown = await call("/NetworkDriver.CreateEndpoint", endpointBody(newId(), newId(), "10.220.0.2/24"));
    expect(unknown.status).toBe(200);
    expect(unknown.body.Err).toContain("not found");
    // an address outside the network: refused, nothing created
    const links = hostLinks();
    const outside = await call("/NetworkDriver.CreateEndpoint", endpointBody(nid, newId(), "10.99.0.2/24"));
    expect(outside.body.Err).toContain("10.99.0.2");
    expect(await epCount()).toBe(eps);
    expect(hostLinks()).toEqual(links);

    const e1 = newId();
    const e2 = newId();
    const r1 = await call("/NetworkDriver.CreateEndpoint", endpointBody(nid, e1, "10.220.0.7/24"));
    expect(r1.status).toBe(200);
    // Docker set the address: only the MAC (which Docker left empty) comes back
    expect(Object.keys(r1.body.Interface as J)).toEqual(["MacAddress"]);
    const r2 = await call("/NetworkDriver.CreateEndpoint", endpointBody(nid, e2, "10.220.0.9/24", "02:aa:bb:cc:dd:ee"));
    expect(r2.body).toEqual({ Interface: {} });
    const { ep: ep1 } = await b.ctl.getEndpoint(nid, e1);
    expect(ep1.addresses.map(String)).toEqual(["10.220.0.7/24"]);
    expect(ep1.external).toEqual({});
    expect(hostLinks()).toContain(`vc${e1.slice(0, 11)}`);
    // the same address twice is refused
    const dup = await call("/NetworkDriver.CreateEndpoint", endpointBody(nid, newId(), "10.220.0.7/24"));
    expect(dup.body.Err).toContain("already in use");

    const info = await call("/NetworkDriver.EndpointOperInfo", { NetworkID: nid, EndpointID: e2 });
    expect((info.body.Value as J)["com.docker.network.endpoint.macaddress"]).toBe("02:aa:bb:cc:dd:ee");

    // Join: the container end is still in the host namespace, dockerd moves it
    const joins: Record<string, string> = {};
    for (const [eid, ip] of [[e1, "10.220.0.7/24"], [e2, "10.220.0.9/24"]] as const) {
      const ns = b.containerNs();
      const j = await call("/NetworkDriver.Join", { NetworkID: nid, EndpointID: eid, SandboxKey: `/run/netns/${ns}`, Options: {} });
      expect(j.status).toBe(200);
      expect(j.body).toEqual({ InterfaceName: { SrcName: `vc${eid.slice(0, 11)}`, DstPrefix: "eth" }, Gateway: "10.220.0.1", DisableGatewayService: false });
      // what dockerd does with the answer
      const src = (j.body.InterfaceName as J).SrcName as string;
      const sh = (argv: string[]) => expect(Bun.spawnSync(argv).exitCode).toBe(0);
      sh(["ip", "-n", b.sb.host, "link", "set", src, "netns", ns]);
      sh(["ip", "-n", ns, "link", "set", src, "name", "eth0"]);
      sh(["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"]);
      sh(["ip", "-n", ns, "link", "set", "eth0", "up"]);
      sh(["ip", "-n", ns, "route", "add", "default", "via", "10.220.0.1"]);
      joins[eid] = ns;
    }
    expect(reachable(joins[e1]!, "10.220.0.9")).toBe(true);
    expect(reachable(joins[e2]!, "10.220.0.7")).toBe(true);
    expect(reachable(joins[e1]!, "10.220.0.1")).toBe(true);
    // joined twice into another sandbox: refused
    expect((await call("/NetworkDriver.Join", { NetworkID: nid, EndpointID: e1, SandboxKey: "/elsewhere" })).body.Err).toContain("already in sandbox");

    // ProgramExternalConnectivity publishes through Berth's nft map; HostPort 0 gets a free port
    const pm = [
      { Proto: 6, IP: "", Port: 80, HostIP: "", HostPort: 8080, HostPortEnd: 8080 },
      { Proto: 17, IP: "", Port: 53, HostIP: "", HostPort: 0, HostPortEnd: 0 },
    ];
    const prog = await call("/NetworkDriver.ProgramExternalConnectivity", { NetworkID: nid, EndpointID: e1, Options: { "com.docker.network.portmap": pm } });
    expect(prog).toEqual({ status: 200, body: {} });
    const elems = JSON.stringify(nftJson(b.sb.host, "list", "map", "inet", "berth", "ports4"));
    expect(elems).toContain("8080");
    expect(elems).toContain("10.220.0.7");
    const opInfo = (await call("/NetworkDriver.EndpointOperInfo", { NetworkID: nid, EndpointID: e1 })).body.Value as J;
    const ports = opInfo["com.docker.network.portmap"] as J[];
    expect(ports.map((p) => [p.Proto, p.Port, p.HostPort])).toEqual([[6, 80, 8080], [17, 53, 49153]]);
    // the same host port for another endpoint: refused, its ports unchanged
    const clash = await call("/NetworkDriver.ProgramExternalConnectivity", {
      NetworkID: nid,
      EndpointID: e2,
      Options: { "com.docker.network.portmap": [{ Proto: 6, Port: 81, HostPort: 8080, HostPortEnd: 8080 }] },
    });
    expect(clash.body.Err).toContain("already allocated");
    expect((await b.ctl.getEndpoint(nid, e2)).ep.ports).toEqual([]);
    expect(await call("/NetworkDriver.RevokeExternalConnectivity", { NetworkID: nid, EndpointID: e1 })).toEqual({ status: 200, body: {} });
    expect(JSON.stringify(nftJson(b.sb.host, "list", "map", "inet", "berth", "ports4"))).not.toContain("8080");

    // the network is in use
    expect((await call("/NetworkDriver.DeleteNetwork", { NetworkID: nid })).body.Err).toContain("active endpoints");

    // Leave (dockerd moves the link back), DeleteEndpoint removes the pair and frees the address
    for (const eid of [e1, e2]) {
      expect(await call("/NetworkDriver.Leave", { NetworkID: nid, EndpointID: eid })).toEqual({ status: 200, body: {} });
      expect(await call("/NetworkDriver.DeleteEndpoint", { NetworkID: nid, EndpointID: eid })).toEqual({ status: 200, body: {} });
      expect(await call("/NetworkDriver.DeleteEndpoint", { NetworkID: nid, EndpointID: eid })).toEqual({ status: 200, body: {} });
      expect(await call("/NetworkDriver.Leave", { NetworkID: nid, EndpointID: eid })).toEqual({ status: 200, body: {} });
    }
    expect(hostLinks().filter((l) => l.startsWith("vb") || l.startsWith("vc"))).toEqual([]);
    expect(await b.store.allocations.list({ networkId: nid })).toEqual([]);
    expect(await call("/NetworkDriver.DeleteNetwork", { NetworkID: nid })).toEqual({ status: 200, body: {} });
  });

  test("internal networks: no gateway, DisableGatewayService", async () => {
    const nid = newId();
    const eid = newId();
    await call("/NetworkDriver.CreateNetwork", createBody(nid, "10.230.0.0/24", "10.230.0.1/24", {}, { "com.docker.network.internal": true }));
    expect((await b.ctl.getNetwork(nid)).internal).toBe(true);
    await call("/NetworkDriver.CreateEndpoint", endpointBody(nid, eid, "10.230.0.2/24"));
    const j = await call("/NetworkDriver.Join", { NetworkID: nid, EndpointID: eid, SandboxKey: "/x" });
    expect(j.body).toEqual({ InterfaceName: { SrcName: `vc${eid.slice(0, 11)}`, DstPrefix: "eth" }, DisableGatewayService: true });
    await call("/NetworkDriver.Leave", { NetworkID: nid, EndpointID: eid });
    await call("/NetworkDriver.DeleteEndpoint", { NetworkID: nid, EndpointID: eid });
    await call("/NetworkDriver.DeleteNetwork", { NetworkID: nid });
    expect(await b.store.networks.get(nid)).toBeUndefined();
  });

  test("IPAM: pools chosen by Berth or given, overlap checks both ways, gateway and addresses, release", async () => {
    await b.ctl.createNetwork({ name: "native", ipam: { config: [{ subnet: "10.123.0.0/24" }] } });
    // Pool "" -> the first free default subnet (10.123.0.0/24 is taken by "native")
    const p1 = await call("/IpamDriver.RequestPool", { AddressSpace: "berth-local", Pool: "", SubPool: "", Options: { po: "pv" }, V6: false });
    expect(p1.status).toBe(200);
    expect(p1.body.Pool).toBe("10.123.1.0/24");
    const pool1 = p1.body.PoolID as string;
    // Berth's own automatic choice now skips the reserved pool, and explicit overlaps are refused both ways
    const auto = await b.ctl.createNetwork({ name: "auto1" });
    expect(auto.ipam.pools[0]!.subnet.toString()).toBe("10.123.2.0/24");
    await expect(b.ctl.createNetwork({ name: "clash", ipam: { config: [{ subnet: "10.123.1.128/25" }] } })).rejects.toThrow("Pool overlaps");
    const over = await call("/IpamDriver.RequestPool", { AddressSpace: "berth-local", Pool: "10.123.0.0/16", V6: false });
    expect(over.status).toBe(200);
    expect(over.body.Error).toContain("Pool overlaps");
    expect(over.body.Err).toBeUndefined();
    expect((await call("/IpamDriver.RequestPool", { AddressSpace: "other", Pool: "" })).body.Error).toContain("unknown address space");

    // gateway: the first address by default
    const gw = await call("/IpamDriver.RequestAddress", { PoolID: pool1, Address: "", Options: { RequestAddressType: "com.docker.network.gateway" } });
    expect(gw.body).toEqual({ Address: "10.123.1.1/24", Data: {} });
    const a1 = await call("/IpamDriver.RequestAddress", { PoolID: pool1, Address: "", Options: null });
    expect(a1.body).toEqual({ Address: "10.123.1.2/24", Data: {} });
    const a2 = await call("/IpamDriver.RequestAddress", { PoolID: pool1, Address: "10.123.1.50", Options: {} });
    expect(a2.body.Address).toBe("10.123.1.50/24");
    expect((await call("/IpamDriver.RequestAddress", { PoolID: pool1, Address: "10.123.1.50" })).body.Error).toContain("already in use");
    expect((await call("/IpamDriver.RequestAddress", { PoolID: pool1, Address: "10.123.1.1" })).body.Error).toContain("gateway");
    expect((await call("/IpamDriver.RequestAddress", { PoolID: pool1, Address: "10.9.9.9" })).body.Error).toContain("not inside");
    expect((await call("/IpamDriver.RequestAddress", { PoolID: "nosuch", Address: "" })).body.Error).toContain("not found");
    expect(await call("/IpamDriver.ReleaseAddress", { PoolID: pool1, Address: "10.123.1.50" })).toEqual({ status: 200, body: {} });
    expect((await call("/IpamDriver.RequestAddress", { PoolID: pool1, Address: "10.123.1.50" })).body.Address).toBe("10.123.1.50/24");

    // the network side claims the reserved pool (AddressSpace berth-local): not an overlap
    const nid = newId();
    const cr = await call("/NetworkDriver.CreateNetwork", {
      NetworkID: nid,
      Options: { "com.docker.network.generic": {} },
      IPv4Data: [{ AddressSpace: "berth-local", Pool: "10.123.1.0/24", Gateway: "10.123.1.1/24" }],
    });
    expect(cr).toEqual({ status: 200, body: {} });
    // ...but Docker's default address space does not
    const cr2 = await call("/NetworkDriver.CreateNetwork", createBody(newId(), "10.123.1.0/24", "10.123.1.1/24"));
    expect(cr2.body.Err).toContain("Pool overlaps");

    // explicit pool with a sub-pool and a user gateway
    const p2 = await call("/IpamDriver.RequestPool", { AddressSpace: "berth-local", Pool: "10.240.0.0/24", SubPool: "10.240.0.128/25", V6: false });
    const pool2 = p2.body.PoolID as string;
    expect(p2.body.Pool).toBe("10.240.0.0/24");
    const gw2 = await call("/IpamDriver.RequestAddress", { PoolID: pool2, Address: "10.240.0.254", Options: { RequestAddressType: "com.docker.network.gateway" } });
    expect(gw2.body.Address).toBe("10.240.0.254/24");
    expect((await call("/IpamDriver.RequestAddress", { PoolID: pool2, Address: "" })).body.Address).toBe("10.240.0.128/24");
    expect((await call("/IpamDriver.RequestPool", { AddressSpace: "berth-local", Pool: "", SubPool: "10.1.0.0/25" })).status).toBe(400);

    // release: gateway, pool; the subnet is free again
    expect(await call("/IpamDriver.ReleaseAddress", { PoolID: pool2, Address: "10.240.0.254" })).toEqual({ status: 200, body: {} });
    expect(await call("/IpamDriver.ReleasePool", { PoolID: pool2 })).toEqual({ status: 200, body: {} });
    expect(await call("/IpamDriver.ReleasePool", { PoolID: pool2 })).toEqual({ status: 200, body: {} });
    expect(await b.store.allocations.list({ networkId: pool2 })).toEqual([]);
    const again = await call("/IpamDriver.RequestPool", { AddressSpace: "berth-local", Pool: "10.240.0.0/24" });
    expect(again.body.Pool).toBe("10.240.0.0/24");
    await call("/IpamDriver.ReleasePool", { PoolID: again.body.PoolID });

    // IPv6 pool chosen from Berth's ULA range
    const p6 = await call("/IpamDriver.RequestPool", { AddressSpace: "berth-local", Pool: "", V6: true });
    expect(p6.body.Pool as string).toMatch(/^fd[0-9a-f]{2}:[0-9a-f:]+\/64$/);
    await call("/IpamDriver.ReleasePool", { PoolID: p6.body.PoolID });

    await call("/NetworkDriver.DeleteNetwork", { NetworkID: nid });
    await call("/IpamDriver.ReleasePool", { PoolID: pool1 });
    expect(await b.ctl.ipam.reservedPools()).toEqual([]);
    await b.ctl.deleteNetwork("native");
    await b.ctl.deleteNetwork("auto1");
  });
});
