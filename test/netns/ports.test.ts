/**
 * Published ports with real packets: DNAT from an external client with the
 * client's source address preserved, loopback-only bindings, one nft map element
 * per mapping (no rule per port), conflicts, disconnect, hairpin.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { addExternalClient, assertRootUntouched, type EchoServer, startEchoServer, tcpRoundTrip } from "../harness/sandbox.ts";
import { parsePortMappings } from "../../src/net/index.ts";
import type { EndpointRecord } from "../../src/store/types.ts";
import { expectBerthError, linkNames, nftRuleCount, nftTableText, portMap, seenFrom } from "./util.ts";

assertRootUntouched();

const pm = (...specs: string[]) => specs.flatMap((s) => parsePortMappings(s));
const ip = (e: EndpointRecord): string => e.addresses[0]!.ip.toString();

describe("published ports", () => {
  let b: TestBerth;
  let c1: string;
  let c2: string;
  let e1: EndpointRecord;
  let e2: EndpointRecord;
  let srv: EchoServer;
  let ext: { ns: string; hostIP: string; clientIP: string };
  const GW = "10.210.0.1";

  beforeAll(async () => {
    b = await createTestBerth("pt");
    await b.ctl.createNetwork({ name: "pn", ipam: { config: [{ subnet: "10.210.0.0/24" }] } });
    c1 = b.containerNs();
    c2 = b.containerNs();
    e1 = await b.ctl.connect({
      network: "pn",
      containerId: "web",
      netns: c1,
      ports: pm("8080:7000", "8080:7000/udp", "127.0.0.1:8081:7000"),
    });
    e2 = await b.ctl.connect({ network: "pn", containerId: "peer", netns: c2 });
    ext = addExternalClient(b.sb);
    srv = await startEchoServer(b.sb, c1, "0.0.0.0", 7000);
  });
  afterAll(async () => {
    await b?.close();
  });

  test("external client reaches the published port and its source address is preserved", () => {
    const reply = tcpRoundTrip(ext.ns, ext.hostIP, 8080, "pub");
    expect(reply).toStartWith("echo:pub from:");
    expect(seenFrom(reply)).toBe(ext.clientIP);
    // an unpublished port is not reachable
    expect(tcpRoundTrip(ext.ns, ext.hostIP, 8082, "x", 700)).toBeUndefined();
  });

  test("ports4 holds exactly one element per mapping, including the UDP one", () => {
    const t = ip(e1);
    expect(portMap(b.sb.host)).toEqual(
      [`0.0.0.0/0 . tcp . 8080 : ${t} . 7000`, `0.0.0.0/0 . udp . 8080 : ${t} . 7000`, `127.0.0.1 . tcp . 8081 : ${t} . 7000`].sort(),
    );
    expect(portMap(b.sb.host, 6)).toEqual([]);
  });

  test("127.0.0.1 binding answers on the host's loopback only", () => {
    const local = tcpRoundTrip(b.sb.host, "127.0.0.1", 8081, "lo");
    expect(local).toStartWith("echo:lo from:");
    expect(tcpRoundTrip(ext.ns, ext.hostIP, 8081, "x", 700)).toBeUndefined();
    // the all-addresses mapping answers on loopback too
    expect(tcpRoundTrip(b.sb.host, "127.0.0.1", 8080, "lo2")).toStartWith("echo:lo2 from:");
  });

  test("no rule per port: 20 more mappings add 20 map elements and no rule", async () => {
    const rules = nftRuleCount(b.sb.host);
    const before = portMap(b.sb.host);
    const c = b.containerNs();
    const e = await b.ctl.connect({ network: "pn", containerId: "many", netns: c, ports: pm("9000-9019:7000-7019") });
    const after = portMap(b.sb.host);
    expect(after.length).toBe(before.length + 20);
    expect(after).toContain(`0.0.0.0/0 . tcp . 9019 : ${ip(e)} . 7019`);
    expect(nftRuleCount(b.sb.host)).toBe(rules);
    await b.ctl.disconnect("pn", "many", c);
    expect(portMap(b.sb.host)).toEqual(before);
    expect(nftRuleCount(b.sb.host)).toBe(rules);
  });

  test("publishing a host port twice is a conflict and changes nothing", async () => {
    const c = b.containerNs();
    const snap = async () => ({
      eps: (await b.store.endpoints.listByNetwork(e1.networkId)).map((e) => e.id).sort(),
      allocs: (await b.store.allocations.list()).map((a) => `${a.containerId}/${a.address}`).sort(),
      nft: nftTableText(b.sb.host),
      hostLinks: linkNames(b.sb.host),
      ctrLinks: linkNames(c),
    });
    const before = await snap();
    for (const spec of ["8080:7000", "127.0.0.1:8080:7100", "8081:7000", "8085:1/udp,8080:2/udp"]) {
      const ports = spec.split(",").flatMap((s) => parsePortMappings(s));
      await expectBerthError(b.ctl.connect({ network: "pn", containerId: "dup", netns: c, ports }), {
        kind: "conflict",
        code: "port-allocated",
        field: "ports",
      });
      expect(await snap()).toEqual(before);
    }
    // the same port twice in one request
    await expectBerthError(b.ctl.connect({ network: "pn", containerId: "dup", netns: c, ports: pm("8090:1", "8090:2") }), {
      kind: "conflict",
      code: "port-allocated",
    });
    expect(await snap()).toEqual(before);
    // the original mapping still works
    expect(seenFrom(tcpRoundTrip(ext.ns, ext.hostIP, 8080, "still"))).toBe(ext.clientIP);
  });

  test("hairpin: containers on the network reach published ports through host addresses", () => {
    // another container, through the uplink address and through the gateway
    expect(tcpRoundTrip(c2, ext.hostIP, 8080, "hp")).toStartWith("echo:hp from:");
    expect(tcpRoundTrip(c2, GW, 8080, "hp2")).toStartWith("echo:hp2 from:");
    // the container itself, through its own published port
    expect(tcpRoundTrip(c1, ext.hostIP, 8080, "self")).toStartWith("echo:self from:");
    expect(ip(e2)).toBe("10.210.0.3");
  });

  test("disconnect removes the map elements and the port stops answering", async () => {
    expect(tcpRoundTrip(ext.ns, ext.hostIP, 8080, "a")).toBeDefined();
    await b.ctl.disconnect("pn", "web", c1);
    expect(portMap(b.sb.host)).toEqual([]);
    expect(tcpRoundTrip(ext.ns, ext.hostIP, 8080, "b", 700)).toBeUndefined();
    expect(tcpRoundTrip(b.sb.host, "127.0.0.1", 8081, "c", 700)).toBeUndefined();
    // the server itself is still there: only the mapping is gone
    expect(tcpRoundTrip(c1, "127.0.0.1", 7000, "d")).toBe("echo:d from:127.0.0.1");
    await srv.stop();
    // the host port is free again
    const c = b.containerNs();
    const e = await b.ctl.connect({ network: "pn", containerId: "again", netns: c, ports: pm("8080:7000") });
    expect(portMap(b.sb.host)).toEqual([`0.0.0.0/0 . tcp . 8080 : ${ip(e)} . 7000`]);
    const s2 = await startEchoServer(b.sb, c, "0.0.0.0", 7000);
    try {
      expect(seenFrom(tcpRoundTrip(ext.ns, ext.hostIP, 8080, "e"))).toBe(ext.clientIP);
    } finally {
      await s2.stop();
    }
  });
});
