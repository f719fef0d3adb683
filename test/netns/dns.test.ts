/**
 * Embedded DNS with real containers (started by the runtime) and real packets:
 * queries are sent from inside the container namespaces by a small dns-packet
 * client (test/fixtures/dns-query.ts) to the resolver at 127.0.0.11.
 *
 * Layout: networks front (dual stack), back and an internal one; containers
 * a, d (both alias "web") on front, b on front+back, c on back (alias "db"),
 * e on the internal network. Upstreams are fake servers in an "external"
 * sandbox namespace: 192.0.2.3 never answers, 192.0.2.4 says SERVFAIL,
 * 192.0.2.2 answers names under .example with 198.51.100.2. No query ever
 * leaves the sandbox.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { addExternalClient, assertRootUntouched } from "../harness/sandbox.ts";
import { addSegment } from "../harness/segment.ts";
import type { ContainerView } from "../../src/runtime/containers.ts";
import { reverseName } from "../../src/dns/names.ts";
import { IP } from "../../src/net/index.ts";
import { expectBerthError } from "./util.ts";

assertRootUntouched();
// real processes and namespaces: generous under a loaded machine (scripts/test.sh uses 120 s anyway)
setDefaultTimeout(60_000);

const FIXTURES = join(import.meta.dir, "..", "fixtures");

interface Reply {
  rcode: string;
  aa: boolean;
  tc: boolean;
  answers: { type: string; name: string; data: string }[];
}

/** One query from inside `ns` (async: the resolver runs in this very process). */
async function dig(ns: string, name: string, o: { type?: string; server?: string; tcp?: boolean; timeoutMs?: number } = {}): Promise<Reply | "timeout"> {
  const p = Bun.spawn(
    [
      "nsenter",
      `--net=/run/netns/${ns}`,
      "--",
      process.execPath,
      join(FIXTURES, "dns-query.ts"),
      o.server ?? "127.0.0.11",
      "53",
      name,
      o.type ?? "A",
      o.tcp ? "tcp" : "udp",
      String(o.timeoutMs ?? 5000),
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code === 2) return "timeout";
  if (code !== 0) throw new Error(`dns-query failed (${code}): ${err}`);
  return JSON.parse(out) as Reply;
}

async function addrs(ns: string, name: string, type = "A"): Promise<string[]> {
  const r = await dig(ns, name, { type });
  if (r === "timeout") throw new Error(`no reply for ${name}`);
  return r.answers.filter((a) => a.type === type).map((a) => a.data);
}

describe("embedded DNS (netns)", () => {
  let b: TestBerth;
  let ext: { ns: string };
  const c: Record<string, ContainerView> = {};
  const ip = (name: string, net: string, fam: 4 | 6 = 4): string => {
    const ep = c[name]!.endpoints.find((e) => e.networkId === nets[net]);
    const a = ep?.addresses.find((x) => x.ip.family === fam);
    if (!a) throw new Error(`${name} has no IPv${fam} address on ${net}`);
    return a.ip.toString();
  };
  const nets: Record<string, string> = {};

  beforeAll(async () => {
    b = await createTestBerth("dns", {
      dns: {
        upstreams: [
          { ip: IP.parse("192.0.2.3"), port: 53 },
          { ip: IP.parse("192.0.2.4"), port: 53 },
          { ip: IP.parse("192.0.2.2"), port: 53 },
        ],
        forwardTimeoutMs: 400,
      },
    });
    ext = addExternalClient(b.sb);
    for (const a of ["192.0.2.3/24", "192.0.2.4/24"]) Bun.spawnSync(["ip", "-n", ext.ns, "addr", "add", a, "dev", "eth0"]);
    // the external namespace can route to container subnets through the sandbox host
    Bun.spawnSync(["ip", "-n", ext.ns, "route", "add", "10.0.0.0/8", "via", "192.0.2.1"]);
    const up = Bun.spawn(
      ["nsenter", `--net=/run/netns/${ext.ns}`, "--", process.execPath, join(FIXTURES, "dns-upstream.ts"),
        "192.0.2.2:53:answer:198.51.100.2", "192.0.2.3:53:silent:0.0.0.0", "192.0.2.4:53:servfail:0.0.0.0"],
      { stdout: "pipe", stderr: "inherit" },
    );
    b.sb.track(up);
    const reader = up.stdout.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain("listening");
    reader.releaseLock();

    await b.ctl.ensurePredefined();
    nets.front = (await b.ctl.createNetwork({ name: "front", enableIPv6: true, ipam: { config: [{ subnet: "10.211.0.0/24" }, { subnet: "fd00:211::/64" }] } })).id;
    nets.back = (await b.ctl.createNetwork({ name: "back", ipam: { config: [{ subnet: "10.212.0.0/24" }] } })).id;
    nets.iso = (await b.ctl.createNetwork({ name: "iso", internal: true, ipam: { config: [{ subnet: "10.213.0.0/24" }] } })).id;
    const run = async (name: string, networks: { network: string; aliases?: string[] }[]) => {
      c[name] = await b.rt.run({ name, command: ["sleep", "300"], networks });
    };
    await run("a", [{ network: "front", aliases: ["web"] }]);
    await run("d", [{ network: "front", aliases: ["web"] }]);
    await run("b", [{ network: "front" }, { network: "back" }]);
    await run("c", [{ network: "back", aliases: ["db"] }]);
    await run("e", [{ network: "iso" }]);
  });
  afterAll(async () => {
    await b?.close();
  });

  test("other names are forwarded upstream, failing over from a dead and a SERVFAIL upstream", async () => {
    const dns = b.rt.dns!;
    const s0 = dns.stats();
    expect(s0.forwarded).toBe(0); // the first forward of this file
    const t = performance.now();
    expect(await addrs(c.a!.netns, "www.example")).toEqual(["198.51.100.2"]);
    expect(performance.now() - t).toBeGreaterThanOrEqual(400); // one timeout (192.0.2.3) first
    const s1 = dns.stats();
    expect(s1.forwarded).toBe(1);
    expect(s1.forwardFailures).toBe(0);
    const byAddr = Object.fromEntries(s1.upstreams.map((u) => [u.address, u]));
    expect(byAddr["192.0.2.3:53"]).toMatchObject({ queries: 1, failures: 1, healthy: false }); // timed out
    expect(byAddr["192.0.2.4:53"]).toMatchObject({ queries: 1, failures: 1, healthy: false }); // SERVFAIL
    expect(byAddr["192.0.2.2:53"]).toMatchObject({ queries: 1, failures: 0, healthy: true });
    expect(byAddr["192.0.2.2:53"]!.healthy).toBe(true);
    // the failed ones are now tried last: the next forward goes straight to the good one
    expect(await addrs(c.b!.netns, "api.example")).toEqual(["198.51.100.2"]);
    expect(dns.stats().upstreams.map((u) => u.queries)).toEqual([1, 1, 2]);
    // NXDOMAIN from upstream is passed through and counted
    const r = await dig(c.a!.netns, "nothing.invalid");
    expect(r !== "timeout" && r.rcode).toBe("NXDOMAIN");
    expect(dns.stats().nxdomain).toBeGreaterThan(s1.nxdomain);
  });

  test("container names resolve on the network they share (A and AAAA)", async () => {
    expect(await addrs(c.a!.netns, "b")).toEqual([ip("b", "front")]);
    expect(await addrs(c.a!.netns, "d")).toEqual([ip("d", "front")]);
    expect(await addrs(c.a!.netns, "d", "AAAA")).toEqual([ip("d", "front", 6)]);
    // case-insensitive, trailing dot ignored, short container ID is a name too
    expect(await addrs(c.a!.netns, "D.")).toEqual([ip("d", "front")]);
    expect(await addrs(c.a!.netns, c.d!.id.slice(0, 12))).toEqual([ip("d", "front")]);
    const r = await dig(c.a!.netns, "b");
    expect(r !== "timeout" && r.aa && r.rcode === "NOERROR").toBe(true);
  });

  test("a name with no address of the family asked for is NOERROR without answers, not forwarded", async () => {
    const before = b.rt.dns!.stats().forwarded;
    const r = await dig(c.b!.netns, "c", { type: "AAAA" });
    expect(r).not.toBe("timeout");
    expect((r as Reply).rcode).toBe("NOERROR");
    expect((r as Reply).answers).toEqual([]);
    expect(b.rt.dns!.stats().forwarded).toBe(before);
  });

  test("an alias shared by two containers returns both addresses, in random order", async () => {
    const want = [ip("a", "front"), ip("d", "front")].sort();
    const firsts = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const got = await addrs(c.b!.netns, "web");
      expect([...got].sort()).toEqual(want);
      firsts.add(got[0]!);
    }
    expect(firsts.size).toBe(2); // 12 queries all in one order: p = 2^-11
  });

  test("names are scoped: a container does not resolve names of networks it is not attached to", async () => {
    // c is only on back: a (front) must not see it; the query goes upstream, which says NXDOMAIN
    for (const n of ["c", "db", "c.back"]) {
      const r = await dig(c.a!.netns, n);
      expect(r).not.toBe("timeout");
      expect((r as Reply).answers).toEqual([]);
      expect((r as Reply).rcode).toBe("NXDOMAIN");
    }
    // c sees b only through back, and never a or d
    expect(await addrs(c.c!.netns, "b")).toEqual([ip("b", "back")]);
    expect(await addrs(c.c!.netns, "a")).toEqual([]);
    expect(await addrs(c.c!.netns, "web")).toEqual([]);
    // b is on both networks: it sees both sides; a network-qualified name narrows the answer
    expect(await addrs(c.b!.netns, "db")).toEqual([ip("c", "back")]);
    expect(await addrs(c.b!.netns, "c.back")).toEqual([ip("c", "back")]);
    expect(await addrs(c.b!.netns, "c.front")).toEqual([]);
  });

  test("PTR for IPv4 and IPv6 container addresses, scoped the same way", async () => {
    const ptr = async (ns: string, addr: string) => {
      const r = await dig(ns, reverseName(IP.parse(addr)), { type: "PTR" });
      if (r === "timeout") throw new Error("timeout");
      return { rcode: r.rcode, names: r.answers.map((x) => x.data) };
    };
    expect(await ptr(c.a!.netns, ip("b", "front"))).toEqual({ rcode: "NOERROR", names: ["b"] });
    expect(await ptr(c.a!.netns, ip("d", "front", 6))).toEqual({ rcode: "NOERROR", names: ["d"] });
    // c's address is on back: a is not attached there, so it is not Berth's to answer; upstream says NXDOMAIN
    expect((await ptr(c.a!.netns, ip("c", "back"))).names).toEqual([]);
    // an unused address of an attached subnet: NXDOMAIN from Berth itself, never leaked upstream
    const before = b.rt.dns!.stats().forwarded;
    expect(await ptr(c.a!.netns, "10.211.0.200")).toEqual({ rcode: "NXDOMAIN", names: [] });
    expect(b.rt.dns!.stats().forwarded).toBe(before);
  });

  test("TCP works for local and forwarded names", async () => {
    const r1 = await dig(c.a!.netns, "web", { tcp: true });
    expect(r1 !== "timeout" && r1.answers.map((x) => x.data).sort()).toEqual([ip("a", "front"), ip("d", "front")].sort());
    const r2 = await dig(c.a!.netns, "tcp.example", { tcp: true });
    expect(r2 !== "timeout" && r2.answers.map((x) => x.data)).toEqual(["198.51.100.2"]);
  });

  test("internal networks: names resolve, nothing is forwarded (REFUSED)", async () => {
    expect(await addrs(c.e!.netns, "e")).toEqual([ip("e", "iso")]);
    const r = await dig(c.e!.netns, "www.example");
    expect(r !== "timeout" && r.rcode).toBe("REFUSED");
  });

  test("port 53 stays free inside the container: it can run its own DNS server on 0.0.0.0:53", async () => {
    // the resolver listens on other ports of 127.0.0.11, reached through a DNAT in the container's own nftables
    const own = `
      const d = require("node:dgram").createSocket("udp4");
      d.on("error", (e) => { console.log("udp", e.code); process.exit(1); });
      d.bind(53, "0.0.0.0", () => {
        const t = require("node:net").createServer();
        t.on("error", (e) => { console.log("tcp", e.code); process.exit(1); });
        t.listen(53, "0.0.0.0", () => { console.log("bound"); setTimeout(() => process.exit(0), 1500); });
      });`;
    const p = Bun.spawn(["nsenter", `--net=/run/netns/${c.b!.netns}`, "--", process.execPath, "-e", own], { stdout: "pipe", stderr: "pipe" });
    const reader = p.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("bound");
    expect(await addrs(c.b!.netns, "a")).toEqual([ip("a", "front")]);
    const tcp = await dig(c.b!.netns, "a", { tcp: true });
    expect(tcp !== "timeout" && tcp.answers.map((x) => x.data)).toEqual([ip("a", "front")]);
    expect(await p.exited).toBe(0);
  });

  test("the resolver is not reachable from outside the container namespaces", async () => {
    // from the external client and from the sandbox host: their own 127.0.0.11 has nothing,
    // and the container's addresses have no DNS service
    for (const ns of [ext.ns, b.sb.host]) {
      expect(await dig(ns, "a", { timeoutMs: 600 })).toBe("timeout");
      expect(await dig(ns, "a", { server: ip("a", "front"), timeoutMs: 600 })).toBe("timeout");
      expect(await dig(ns, "a", { server: ip("a", "front"), tcp: true, timeoutMs: 600 })).toBe("timeout");
    }
  });

  test("each container gets a resolv.conf pointing at the resolver, bound over /etc/resolv.conf only for it", async () => {
    expect(c.a!.resolvConfPath).not.toBe("");
    expect(readFileSync(c.a!.resolvConfPath, "utf8")).toContain("nameserver 127.0.0.11\n");
    const hostBefore = readFileSync("/etc/resolv.conf", "utf8");
    const v = await b.rt.run({ name: "reader", command: ["cat", "/etc/resolv.conf"], networks: [{ network: "front" }] });
    expect(await b.rt.wait(v.id)).toBe(0);
    const log = readFileSync(v.logPath, "utf8");
    expect(log).toContain("nameserver 127.0.0.11");
    expect(log).not.toBe(hostBefore);
    expect(readFileSync("/etc/resolv.conf", "utf8")).toBe(hostBefore);
    // the process still runs in the container's network namespace and cgroup
    const v2 = await b.rt.run({ name: "where", command: ["sh", "-c", "readlink /proc/self/ns/net; cat /proc/self/cgroup"], networks: [{ network: "front" }] });
    await b.rt.wait(v2.id);
    const out = readFileSync(v2.logPath, "utf8");
    const inode = Bun.spawnSync(["stat", "-L", "-c", "%i", `/run/netns/${v2.netns}`]).stdout.toString().trim();
    expect(out).toContain(`net:[${inode}]`);
    expect(out).toContain(v2.cgroup!);
    await b.rt.remove(v.id, true);
    await b.rt.remove(v2.id, true);
  });

  test("names that are not DNS labels are rejected at run and connect", async () => {
    await expectBerthError(b.rt.run({ name: "my_web", command: ["true"], networks: [{ network: "front" }] }), {
      kind: "invalid",
      code: "name-not-dns",
      field: "name",
      message: /resolvable by name.*"_"/,
    });
    await expectBerthError(b.rt.run({ command: ["true"], networks: [{ network: "front", aliases: ["-bad"] }] }), { kind: "invalid", code: "dns-label-invalid", field: "Aliases" });
    expect((await b.store.containers.list()).map((x) => x.name).sort()).toEqual(["a", "b", "c", "d", "e"]);
  });

  test("connect, disconnect and remove change what resolves at once", async () => {
    await b.ctl.connect({ network: "back", containerId: c.a!.id, netns: c.a!.netns, aliases: ["a"] });
    expect(await addrs(c.a!.netns, "db")).toEqual([ip("c", "back")]);
    await b.ctl.disconnect("back", c.a!.id, c.a!.netns);
    expect(await addrs(c.a!.netns, "db")).toEqual([]);
    await b.rt.remove(c.d!.id, true);
    expect(await addrs(c.b!.netns, "web")).toEqual([ip("a", "front")]);
  });

  test("macvlan: names resolve and forwarding works too (the resolver is on the container's loopback, not a host address)", async () => {
    // the host cannot talk to its own macvlan children: a resolver on a host/gateway address
    // (aardvark's design) would be unreachable here
    addSegment(b.sb, "mvup0", "10.214.0.1/24");
    nets.mv = (await b.ctl.createNetwork({ name: "mv", driver: "macvlan", options: { parent: "mvup0" }, ipam: { config: [{ subnet: "10.214.0.0/24" }] } })).id;
    c.m1 = await b.rt.run({ name: "m1", command: ["sleep", "300"], networks: [{ network: "mv" }] });
    c.m2 = await b.rt.run({ name: "m2", command: ["sleep", "300"], networks: [{ network: "mv", aliases: ["mvweb"] }, { network: "back" }] });
    expect(await addrs(c.m1!.netns, "m2")).toEqual([ip("m2", "mv")]);
    expect(await addrs(c.m1!.netns, "mvweb")).toEqual([ip("m2", "mv")]);
    expect(await addrs(c.m2!.netns, "c")).toEqual([ip("c", "back")]);
    expect(await addrs(c.m1!.netns, "c")).toEqual([]);
    expect(await addrs(c.m1!.netns, "mv.example")).toEqual(["198.51.100.2"]);
    await b.rt.remove(c.m1!.id, true);
    await b.rt.remove(c.m2!.id, true);
  });

  test("a run that fails after the resolver was opened leaves no resolver and no resolv.conf", async () => {
    const before = b.rt.dns!.stats().listeners;
    b.faults.arm("run:before-spawn");
    await expectBerthError(b.rt.run({ name: "doomed", command: ["sleep", "30"], networks: [{ network: "front" }] }), { kind: "system", code: "injected-fault" });
    expect(b.rt.dns!.stats().listeners).toBe(before);
    expect(readdirSync(join(b.sb.stateDir, "containers")).filter((f) => f.endsWith(".resolv.conf")).length).toBe(before);
  });

  test("after a daemon restart (resolver sockets gone) recover() opens them again", async () => {
    b.rt.dns!.detach(c.a!.id);
    expect(await dig(c.a!.netns, "b", { timeoutMs: 500 })).toBe("timeout");
    await b.rt.recover();
    expect(await addrs(c.a!.netns, "b")).toEqual([ip("b", "front")]);
  });

  test("counters add up", () => {
    const s = b.rt.dns!.stats();
    expect(s.queries).toBeGreaterThan(40);
    expect(s.answeredLocally + s.forwarded + s.dropped).toBe(s.queries);
    expect(s.forwardFailures).toBe(0);
    expect(s.nxdomain).toBeGreaterThan(0);
    expect(s.listeners).toBe(4); // a, b, c, e (d was removed)
  });
});
