/**
 * IPv6 on an equal footing with IPv4, with real IPv6 packets between sandbox
 * namespaces: IPv6-only networks with automatic ULA pools (bridge and macvlan),
 * addresses usable at once (no DAD: a TCP round trip right after connect, no
 * retry), NAT66 (default) and the routed gateway mode (no NAT, only published
 * container ports open), published ports on IPv6 host addresses and on [::1]
 * (userland forwarder), internal networks and isolation between networks.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { networkJson, parseCreateBody } from "../../src/api/networks.ts";
import { trace } from "../../src/controller/trace.ts";
import { reverseName } from "../../src/dns/names.ts";
import { ulaPool } from "../../src/ipam/index.ts";
import { IP, Prefix, parsePortMappings } from "../../src/net/index.ts";
import type { EndpointRecord, NetworkRecord } from "../../src/store/types.ts";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { addSegment } from "../harness/segment.ts";
import { assertRootUntouched, canPing, ipJson, startEchoServer, tcpRoundTrip, reachable } from "../harness/sandbox.ts";
import { expectBerthError, nftElems, nftValue, portMap, seenFrom } from "./util.ts";

assertRootUntouched();

interface JAddr6 {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number; tentative?: boolean; dadfailed?: boolean; scope: string }[];
}
interface JRoute6 {
  dst: string;
  gateway?: string;
  dev?: string;
}

function sh(...argv: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}
function must(...argv: string[]): string {
  const r = sh(...argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.err.trim()}`);
  return r.out;
}
/** Global addresses of a device, with their DAD flags. */
const globals = (ns: string, dev: string) =>
  (ipJson<JAddr6[]>(ns, "addr", "show", "dev", dev)[0]?.addr_info ?? []).filter((a) => a.scope === "global");
const v6 = (e: EndpointRecord): string => e.addresses.find((a) => a.ip.family === 6)!.ip.toString();
const routes6 = (ns: string) => ipJson<JRoute6[]>(ns, "-6", "route", "show");
const bridgeOf = (n: NetworkRecord): string => (n.driverState as { bridge: string }).bridge;

/**
 * tcpRoundTrip without blocking this process: the [::1] forwarder runs in the
 * test process itself (the in-process Berth), so a synchronous spawn would starve it.
 */
async function roundTripAsync(ns: string, host: string, port: number, payload: string, timeoutMs = 1500): Promise<string | undefined> {
  const p = Bun.spawn(
    ["nsenter", `--net=/run/netns/${ns}`, "--", process.execPath, join(import.meta.dir, "..", "fixtures", "tcp-client.ts"), host, String(port), payload, String(timeoutMs)],
    { stdout: "pipe", stderr: "pipe" },
  );
  const out = await new Response(p.stdout).text();
  return (await p.exited) === 0 ? out.trim() : undefined;
}

/** Whether an element of an nft interval set (prefix, range or address) holds `ip`. */
function setHolds(ns: string, set: string, ip: string): boolean {
  const a = IP.parse(ip);
  return nftElems(ns, "set", set).some((e) => {
    const v = nftValue(JSON.parse(e));
    if (v.includes("/")) return Prefix.parse(v).contains(a);
    const [lo, hi = lo] = v.split("-").map((x) => IP.parse(x));
    return a.family === lo!.family && a.value >= lo!.value && a.value <= hi!.value;
  });
}

describe("IPv6 on bridge networks", () => {
  let b: TestBerth;
  let ext: string;
  const EXT_HOST = "2001:db8:6::1";
  const EXT_CLIENT = "2001:db8:6::2";

  beforeAll(async () => {
    b = await createTestBerth("v6");
    // an external machine on the host's uplink, IPv6 only
    ext = b.sb.netns("ext");
    must("ip", "-n", b.sb.host, "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", ext);
    must("ip", "-n", b.sb.host, "addr", "add", `${EXT_HOST}/64`, "dev", "uplink0", "nodad");
    must("ip", "-n", ext, "addr", "add", `${EXT_CLIENT}/64`, "dev", "eth0", "nodad");
    must("ip", "-n", b.sb.host, "link", "set", "uplink0", "up");
    must("ip", "-n", ext, "link", "set", "eth0", "up");
    must("ip", "-n", ext, "-6", "route", "add", "default", "via", EXT_HOST);
  });
  afterAll(async () => {
    await b?.close();
  });

  test("IPv6-only network: automatic ULA /64, no IPv4 anywhere, TCP over IPv6 right after connect", async () => {
    const net = await b.ctl.createNetwork({ name: "v6only", enableIPv6: true, enableIPv4: false });
    const id = (await b.store.meta.get("ipam.ula-global-id"))!;
    expect(id).toMatch(/^[0-9a-f]{10}$/);
    const subnets = ulaPool(BigInt(`0x${id}`)).base.subnets(64);
    const s0 = subnets.next().value as Prefix;
    const s1 = subnets.next().value as Prefix;
    const at = (i: number) => s0.nth(i).toString();
    expect(s0.toString()).toStartWith(`fd${id.slice(0, 2)}:`);
    expect(net.ipam.pools.map((p) => `${p.subnet} gw ${p.gateway}`)).toEqual([`${s0} gw ${at(1)}`]);
    // the bridge holds only the IPv6 gateway, usable at once (not tentative)
    const br = globals(b.sb.host, bridgeOf(net));
    expect(br.map((a) => `${a.local}/${a.prefixlen}`)).toEqual([`${at(1)}/64`]);
    expect(br.some((a) => a.tentative || a.dadfailed)).toBe(false);
    // a second one takes the next /64 of the same per-install /48
    const net2 = await b.ctl.createNetwork({ name: "v6only2", enableIPv6: true, enableIPv4: false });
    expect(net2.ipam.pools[0]!.subnet.toString()).toBe(s1.toString());

    const c1 = b.containerNs();
    const c2 = b.containerNs();
    await startEchoServer(b.sb, c1, "::", 80);
    const e1 = await b.ctl.connect({ network: "v6only", containerId: "v6a", netns: c1 });
    const e2 = await b.ctl.connect({ network: "v6only", containerId: "v6b", netns: c2 });
    // first packet, no retry: DAD would hold the addresses tentative for ~1-2 s
    expect(tcpRoundTrip(c2, v6(e1), 80, "now")).toBe(`echo:now from:${v6(e2)}`);
    expect(e2.addresses.map(String)).toEqual([`${at(3)}/64`]);
    expect(globals(c2, "eth0").map((a) => `${a.family} ${a.local} ${a.tentative === true}`)).toEqual([`inet6 ${at(3)} false`]);
    expect(routes6(c2).find((r) => r.dst === "default")).toMatchObject({ gateway: at(1), dev: "eth0" });
    expect(ipJson<JRoute6[]>(c2, "-4", "route", "show")).toEqual([]);
    expect(reachable(c2, at(1))).toBe(true);
    // NAT66 (default gateway mode): out to the uplink with the host's address
    await startEchoServer(b.sb, ext, "::", 7000);
    expect(seenFrom(tcpRoundTrip(c2, EXT_CLIENT, 7000, "out"))).toBe(EXT_HOST);
    expect(setHolds(b.sb.host, "nat6", v6(e2))).toBe(true);
    // the Docker API view
    const j = (await networkJson(b.ctl, net, false)) as { EnableIPv4: boolean; EnableIPv6: boolean };
    expect([j.EnableIPv4, j.EnableIPv6]).toEqual([false, true]);
  });

  test("bad IPv6-only requests are refused and change nothing", async () => {
    const before = (await b.store.networks.list()).length;
    await expectBerthError(b.ctl.createNetwork({ name: "none46", enableIPv4: false }), { kind: "invalid", code: "no-ip-family", field: "EnableIPv4" });
    await expectBerthError(
      b.ctl.createNetwork({ name: "v4in6only", enableIPv6: true, enableIPv4: false, ipam: { config: [{ subnet: "10.66.0.0/24" }] } }),
      { kind: "invalid", code: "ipv4-not-enabled", field: "IPAM.Config[0].Subnet" },
    );
    await expectBerthError(
      b.ctl.createNetwork({ name: "badmode", enableIPv6: true, options: { "com.docker.network.bridge.gateway_mode_ipv6": "nat-unprotected" } }),
      { kind: "invalid", code: "bad-option", field: "Options.com.docker.network.bridge.gateway_mode_ipv6" },
    );
    expect((await b.store.networks.list()).length).toBe(before);
    // Docker's body: EnableIPv4=false reaches the controller
    expect(parseCreateBody({ Name: "x", EnableIPv4: false, EnableIPv6: true })).toMatchObject({ enableIPv4: false, enableIPv6: true });
  });

  test("published ports on IPv6: host address (client address kept) and [::1] (userland), at once", async () => {
    await b.ctl.createNetwork({ name: "dual", enableIPv6: true, ipam: { config: [{ subnet: "10.66.1.0/24" }, { subnet: "fd00:66:1::/64" }] } });
    const c = b.containerNs();
    await startEchoServer(b.sb, c, "::", 80);
    const e = await b.ctl.connect({
      network: "dual",
      containerId: "pub",
      netns: c,
      ports: [...parsePortMappings("8080:80"), ...parsePortMappings("[::1]:8090:80"), ...parsePortMappings("[::]:8091:80")],
    });
    expect(v6(e)).toBe("fd00:66:1::2");
    // through the uplink's IPv6 address: DNAT, the container sees the real client
    expect(tcpRoundTrip(ext, EXT_HOST, 8080, "v6")).toBe(`echo:v6 from:${EXT_CLIENT}`);
    expect(tcpRoundTrip(ext, EXT_HOST, 8091, "any6")).toBe(`echo:any6 from:${EXT_CLIENT}`);
    // [::1] in the host: explicit, and the every-address mappings answer there too (like docker-proxy on [::])
    expect(seenFrom(await roundTripAsync(b.sb.host, "::1", 8090, "lo"))).toBe("fd00:66:1::1");
    expect(await roundTripAsync(b.sb.host, "::1", 8080, "lo-any")).toStartWith("echo:lo-any");
    expect(await roundTripAsync(b.sb.host, "127.0.0.1", 8080, "lo4")).toStartWith("echo:lo4");
    // [::1] is only on the loopback: not DNATed for outside clients, not in the kernel map
    expect(portMap(b.sb.host, 6)).toEqual([
      "::/0 . tcp . 8080 : fd00:66:1::2 . 80",
      "::/0 . tcp . 8091 : fd00:66:1::2 . 80",
    ]);
    expect(b.ctl.loopback6.active()).toEqual([
      "tcp/8080 -> [fd00:66:1::2]:80",
      "tcp/8090 -> [fd00:66:1::2]:80",
      "tcp/8091 -> [fd00:66:1::2]:80",
    ]);
    // a second container cannot take [::1]:8090
    const c2 = b.containerNs();
    await expectBerthError(b.ctl.connect({ network: "dual", containerId: "pub2", netns: c2, ports: parsePortMappings("[::1]:8090:81") }), {
      kind: "conflict",
      code: "port-allocated",
    });
    // "[::]:8091" holds every IPv6 address: a specific one on the same port is taken too, IPv4 is not
    await expectBerthError(b.ctl.connect({ network: "dual", containerId: "pub2", netns: c2, ports: parsePortMappings(`[${EXT_HOST}]:8091:80`) }), {
      kind: "conflict",
      code: "port-allocated",
    });
    const e4 = await b.ctl.connect({ network: "dual", containerId: "pub4", netns: c2, ports: parsePortMappings("192.0.2.77:8091:80") });
    await b.ctl.disconnect("dual", "pub4", c2);
    expect(e4.ports[0]!.hostPort).toBe(8091);
    // UDP through [::1]
    const udp = b.sb.track(
      Bun.spawn(["ip", "netns", "exec", c, "socat", "UDP6-RECVFROM:5300,fork", "SYSTEM:echo pong"], { stdout: "ignore", stderr: "ignore" }),
    );
    await b.ctl.disconnect("dual", "pub", c);
    expect(await roundTripAsync(b.sb.host, "::1", 8090, "gone", 800)).toBeUndefined();
    expect(b.ctl.loopback6.active()).toEqual([]);
    const e3 = await b.ctl.connect({ network: "dual", containerId: "pub3", netns: c, ports: parsePortMappings("[::1]:5301:5300/udp") });
    const q = Bun.spawn(["ip", "netns", "exec", b.sb.host, "socat", "-T2", "-", "UDP6:[::1]:5301"], { stdin: new TextEncoder().encode("ping\n"), stdout: "pipe" });
    expect((await new Response(q.stdout).text()).trim()).toBe("pong");
    udp.kill();
    await b.ctl.disconnect("dual", "pub3", c);
    expect(e3.ports.length).toBe(1);
  });

  test("routed gateway mode: no NAT66, only published container ports reachable from outside", async () => {
    const net = await b.ctl.createNetwork({
      name: "routed",
      enableIPv6: true,
      options: { "com.docker.network.bridge.gateway_mode_ipv6": "routed" },
      ipam: { config: [{ subnet: "10.66.2.0/24" }, { subnet: "fd00:66:2::/64" }] },
    });
    const c = b.containerNs();
    await startEchoServer(b.sb, c, "::", 80);
    await startEchoServer(b.sb, c, "::", 81);
    const e = await b.ctl.connect({ network: "routed", containerId: "rt", netns: c, ports: parsePortMappings("8082:80") });
    const addr = v6(e);
    must("ip", "-n", ext, "-6", "route", "add", "fd00:66::/48", "via", EXT_HOST);
    // straight to the container address, client address kept; the unpublished port stays closed
    expect(tcpRoundTrip(ext, addr, 80, "direct")).toBe(`echo:direct from:${EXT_CLIENT}`);
    expect(tcpRoundTrip(ext, addr, 81, "closed", 800)).toBeUndefined();
    expect(reachable(ext, addr)).toBe(true);
    // out without NAT66: the outside sees the container's own address
    expect(seenFrom(tcpRoundTrip(c, EXT_CLIENT, 7000, "out"))).toBe(addr);
    // the host port is not DNATed in routed mode (Docker's semantics); IPv4 stays NAT
    expect(portMap(b.sb.host, 6).some((m) => m.includes(addr))).toBe(false);
    expect(portMap(b.sb.host, 4)).toContain(`0.0.0.0/0 . tcp . 8082 : ${e.addresses[0]!.ip} . 80`);
    expect(setHolds(b.sb.host, "nat6", addr)).toBe(false);
    expect(setHolds(b.sb.host, "nat4", e.addresses[0]!.ip.toString())).toBe(true);
    expect(nftElems(b.sb.host, "set", "routed6").map((x) => nftValue(JSON.parse(x)))).toEqual(["fd00:66:2::/64"]);
    // a NAT-mode network stays closed to routed traffic even with a route (only published host ports)
    const d = b.containerNs();
    await startEchoServer(b.sb, d, "::", 80);
    const ed = await b.ctl.connect({ network: "dual", containerId: "natted", netns: d });
    expect(tcpRoundTrip(ext, v6(ed), 80, "nat", 800)).toBeUndefined();
    expect(canPing(ext, v6(ed))).toBe(false);
    expect(net.enableIPv6).toBe(true);
  });

  test("berth trace explains IPv6 routed mode, NAT66 and [::1], and agrees with real packets", async () => {
    const web = await b.rt.run({ name: "web6", command: ["sleep", "300"], networks: [{ network: "routed", ports: parsePortMappings("80:80") }] });
    const pub = await b.rt.run({ name: "pub6", command: ["sleep", "300"], networks: [{ network: "dual", ports: parsePortMappings("[::1]:8095:80") }] });
    await startEchoServer(b.sb, web.netns, "::", 80);
    await startEchoServer(b.sb, pub.netns, "::", 80);
    const webIP = v6(web.endpoints[0]!);
    const direct = await trace(b.ctl, EXT_CLIENT, "web6", 80, "tcp");
    expect([direct.verdict, direct.steps.map((x) => x.note).join(" | ")]).toEqual(["allowed", expect.stringContaining("@open6 accept")]);
    expect(tcpRoundTrip(ext, webIP, 80, "t")).toBe(`echo:t from:${EXT_CLIENT}`);
    expect((await trace(b.ctl, EXT_CLIENT, "web6", 81, "tcp")).verdict).toBe("dropped");
    const out = await trace(b.ctl, "web6", EXT_CLIENT, 7000, "tcp");
    expect(out.steps.map((x) => x.note).join(" | ")).toContain("routed gateway mode for IPv6");
    expect((await trace(b.ctl, "pub6", EXT_CLIENT, 7000, "tcp")).steps.map((x) => x.note).join(" | ")).toContain("ip6 saddr @nat6");
    const lo = await trace(b.ctl, "::1", "::1", 8095, "tcp");
    expect(lo.verdict).toBe("allowed");
    expect(lo.reason).toContain("forwarder");
    expect(await roundTripAsync(b.sb.host, "::1", 8095, "lo")).toStartWith("echo:lo");
    await b.rt.remove(web.id, true);
    await b.rt.remove(pub.id, true);
  });

  test("isolation between networks and internal networks, over IPv6", async () => {
    const a = b.containerNs();
    const a2 = b.containerNs();
    const other = b.containerNs();
    const ea = await b.ctl.connect({ network: "v6only2", containerId: "iso-a", netns: a });
    const ea2 = await b.ctl.connect({ network: "v6only2", containerId: "iso-a2", netns: a2 });
    const eo = await b.ctl.connect({ network: "dual", containerId: "iso-o", netns: other });
    expect(reachable(a, v6(ea2))).toBe(true);
    // both have a default route via their gateway and the host forwards, but Berth drops across networks
    expect(canPing(a, v6(eo))).toBe(false);
    expect(canPing(other, v6(ea))).toBe(false);

    await b.ctl.createNetwork({ name: "int6", internal: true, enableIPv6: true, enableIPv4: false, ipam: { config: [{ subnet: "fd00:66:3::/64" }] } });
    const i1 = b.containerNs();
    const i2 = b.containerNs();
    await startEchoServer(b.sb, i1, "::", 80);
    const ei1 = await b.ctl.connect({ network: "int6", containerId: "int-1", netns: i1 });
    const ei2 = await b.ctl.connect({ network: "int6", containerId: "int-2", netns: i2 });
    expect(tcpRoundTrip(i2, v6(ei1), 80, "in")).toBe(`echo:in from:${v6(ei2)}`);
    expect(routes6(i2).some((r) => r.dst === "default")).toBe(false);
    // even with a route of its own, nothing leaves an internal network
    must("ip", "-n", i2, "-6", "route", "add", "default", "dev", "eth0");
    expect(tcpRoundTrip(i2, EXT_CLIENT, 7000, "leak", 800)).toBeUndefined();
    expect(canPing(ext, v6(ei1))).toBe(false);
  });
});

describe("IPv6 on macvlan networks", () => {
  let b: TestBerth;
  afterAll(async () => {
    await b?.close();
  });

  test("IPv6-only macvlan: containers and the segment router talk over IPv6 right after connect", async () => {
    b = await createTestBerth("mv6");
    const lan = addSegment(b.sb, "uplink0", "192.0.2.99/24");
    must("ip", "-n", lan.ns, "addr", "add", "fd00:67::1/64", "dev", "port0", "nodad");
    await b.ctl.createNetwork({
      name: "lan6",
      driver: "macvlan",
      enableIPv6: true,
      enableIPv4: false,
      options: { parent: "uplink0" },
      ipam: { config: [{ subnet: "fd00:67::/64", gateway: "fd00:67::1" }] },
    });
    const c1 = b.containerNs();
    const c2 = b.containerNs();
    await startEchoServer(b.sb, c1, "::", 80);
    await startEchoServer(b.sb, lan.ns, "::", 81);
    const e1 = await b.ctl.connect({ network: "lan6", containerId: "m1", netns: c1 });
    const e2 = await b.ctl.connect({ network: "lan6", containerId: "m2", netns: c2 });
    expect(tcpRoundTrip(c2, v6(e1), 80, "mv")).toBe(`echo:mv from:${v6(e2)}`);
    expect(tcpRoundTrip(c1, "fd00:67::1", 81, "seg")).toBe(`echo:seg from:${v6(e1)}`);
    expect(e1.addresses.map(String)).toEqual(["fd00:67::2/64"]);
    expect(globals(c1, "eth0").map((a) => a.family)).toEqual(["inet6"]);
    expect(routes6(c1).find((r) => r.dst === "default")).toMatchObject({ gateway: "fd00:67::1", dev: "eth0" });
  });
});

describe("embedded DNS on an IPv6-only network", () => {
  let b: TestBerth;
  afterAll(async () => {
    await b?.close();
  });

  /** One query from inside `ns` (async: the resolver runs in this very process). */
  async function dig(ns: string, name: string, type: string): Promise<{ rcode: string; answers: { type: string; data: string }[] }> {
    const p = Bun.spawn(
      ["nsenter", `--net=/run/netns/${ns}`, "--", process.execPath, join(import.meta.dir, "..", "fixtures", "dns-query.ts"), "127.0.0.11", "53", name, type, "udp", "5000"],
      { stdout: "pipe", stderr: "pipe" },
    );
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`dns-query ${name} ${type} failed (${code}): ${err}`);
    return JSON.parse(out);
  }

  test("AAAA answers, no A, and ip6.arpa PTR for container names", async () => {
    b = await createTestBerth("v6dns", { dns: { upstreams: [] } });
    await b.ctl.createNetwork({ name: "only6", enableIPv6: true, enableIPv4: false, ipam: { config: [{ subnet: "fd00:66:5::/64" }] } });
    const alpha = await b.rt.run({ name: "alpha", command: ["sleep", "300"], networks: [{ network: "only6" }] });
    const beta = await b.rt.run({ name: "beta", command: ["sleep", "300"], networks: [{ network: "only6", aliases: ["svc"] }] });
    const betaIP = beta.endpoints[0]!.addresses[0]!.ip;
    expect(betaIP.family).toBe(6);
    const aaaa = await dig(alpha.netns, "beta", "AAAA");
    expect([aaaa.rcode, aaaa.answers.map((a) => `${a.type} ${a.data}`)]).toEqual(["NOERROR", [`AAAA ${betaIP}`]]);
    expect((await dig(alpha.netns, "svc", "AAAA")).answers.map((a) => a.data)).toEqual([betaIP.toString()]);
    const a = await dig(alpha.netns, "beta", "A");
    expect([a.rcode, a.answers]).toEqual(["NOERROR", []]);
    const ptr = await dig(alpha.netns, reverseName(betaIP), "PTR");
    expect(reverseName(betaIP)).toEndWith(".ip6.arpa");
    expect([ptr.rcode, ptr.answers.map((x) => x.data)]).toEqual(["NOERROR", ["beta"]]);
  });
});
