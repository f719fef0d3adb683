/**
 * Berth's CNI plugins run as a runtime runs them: one process per call, inside
 * a sandbox host namespace, CNI_* env, config on stdin. Proves connectivity with
 * real packets and reads kernel state back; every failure case also proves that
 * nothing was left behind.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addExternalClient, assertRootUntouched, createSandbox, ipJson, nftJson, RUN_PREFIX, type Sandbox, startEchoServer, tcpRoundTrip, reachable } from "../harness/sandbox.ts";
import { addrState, type CniCall, type CniOut, cni, cniAsync, leases, linkState, ok, routeState } from "./cni-util.ts";
import { addrsOf, defaultRoute, link, linkNames, seenFrom } from "./util.ts";

assertRootUntouched();
// each test runs many plugin processes; a loaded machine makes them slow
setDefaultTimeout(120_000);

let sb: Sandbox;
let dataDir: string;
beforeAll(() => {
  sb = createSandbox("cp");
  dataDir = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}cni-`));
});
afterAll(async () => {
  await sb.cleanup();
  rmSync(dataDir, { recursive: true, force: true });
});

let nets = 0;
/** A bridge network config with host-local IPAM on a fresh subnet and bridge. */
function bridgeConf(over: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}): Record<string, unknown> {
  nets += 1;
  return {
    cniVersion: "1.0.0",
    name: `net${nets}`,
    type: "bridge",
    bridge: `br${nets}`,
    isGateway: true,
    ipam: { type: "host-local", dataDir, subnet: `10.77.${nets}.0/24`, routes: [{ dst: "0.0.0.0/0" }], ...ipam },
    ...over,
  };
}

function call(c: Partial<CniCall> & Pick<CniCall, "plugin" | "command" | "conf">): CniOut {
  return cni({ host: sb.host, ifname: "eth0", ...c });
}

function add(conf: Record<string, unknown>, ns: string, id = ns, extra: Partial<CniCall> = {}): CniOut {
  return call({ plugin: String(conf.type), command: "ADD", conf, containerId: id, netns: ns, ...extra });
}
function del(conf: Record<string, unknown>, ns: string, id = ns, extra: Partial<CniCall> = {}): CniOut {
  return call({ plugin: String(conf.type), command: "DEL", conf, containerId: id, netns: ns, ...extra });
}
function check(conf: Record<string, unknown>, prevResult: unknown, ns: string, id = ns): CniOut {
  return call({ plugin: String(conf.type), command: "CHECK", conf: { ...conf, prevResult }, containerId: id, netns: ns });
}

function masqElements(set: string): string[] {
  const r = Bun.spawnSync(["ip", "netns", "exec", sb.host, "nft", "-j", "list", "set", "inet", "berth-cni", set], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) return [];
  const j = JSON.parse(r.stdout.toString()) as { nftables: { set?: { elem?: unknown[] } }[] };
  return (j.nftables.find((o) => o.set)?.set?.elem ?? []).map((e) => JSON.stringify(e));
}

/** Host + container state that a failed call must leave exactly as it was. */
function snapshot(...nss: string[]): string {
  return JSON.stringify([...nss.map((n) => [linkState(n), addrState(n), routeState(n)]), nftTables()]);
}
function nftTables(): string {
  return JSON.stringify(nftJson(sb.host, "list", "tables").nftables.filter((o) => "table" in o));
}

describe("bridge + host-local", () => {
  test("two containers get addresses, the gateway lives on the bridge, they reach each other and the gateway", () => {
    const conf = bridgeConf();
    const c1 = sb.netns("c");
    const c2 = sb.netns("c");
    const r1 = ok(add(conf, c1)).json;
    const r2 = ok(add(conf, c2)).json;
    const sub = String(conf.bridge).slice(2);
    expect(r1.cniVersion).toBe("1.0.0");
    expect(r1.interfaces.map((i: { name: string }) => i.name)).toEqual([conf.bridge, expect.stringMatching(/^veth[0-9a-f]{8}$/), "eth0"]);
    expect(r1.interfaces[2].sandbox).toBe(`/run/netns/${c1}`);
    expect(r1.ips).toEqual([{ interface: 2, address: `10.77.${sub}.2/24`, gateway: `10.77.${sub}.1` }]);
    expect(r2.ips[0].address).toBe(`10.77.${sub}.3/24`);
    expect(r1.routes).toEqual([{ dst: "0.0.0.0/0" }]);
    // kernel state agrees with the result
    expect(addrsOf(c1, "eth0")).toContain(`10.77.${sub}.2/24`);
    expect(link(c1, "eth0")?.address).toBe(r1.interfaces[2].mac);
    expect(defaultRoute(c1)?.gateway).toBe(`10.77.${sub}.1`);
    expect(addrsOf(sb.host, String(conf.bridge))).toContain(`10.77.${sub}.1/24`);
    expect(link(sb.host, r1.interfaces[1].name)?.master).toBe(String(conf.bridge));
    expect(link(sb.host, String(conf.bridge))?.linkinfo?.info_kind).toBe("bridge");
    // real packets (3 tries for the first contact: the machine may be loaded)
    expect(reachable(c1, `10.77.${sub}.3`)).toBe(true);
    expect(reachable(c2, `10.77.${sub}.2`)).toBe(true);
    expect(reachable(c1, `10.77.${sub}.1`)).toBe(true);
    ok(del(conf, c1));
    ok(del(conf, c2));
  });

  test("ipMasq: an external client sees the host's address; one nft element per subnet, removed with the last user", async () => {
    const conf = bridgeConf({ ipMasq: true });
    const ext = addExternalClient(sb, "192.0.2.1/24", "192.0.2.2/24");
    const srv = await startEchoServer(sb, ext.ns, ext.clientIP, 7411);
    const c1 = sb.netns("m");
    const c2 = sb.netns("m");
    ok(add(conf, c1));
    ok(add(conf, c2));
    const sub = String(conf.bridge).slice(2);
    expect(seenFrom(tcpRoundTrip(c1, ext.clientIP, 7411))).toBe(ext.hostIP);
    expect(seenFrom(tcpRoundTrip(c2, ext.clientIP, 7411))).toBe(ext.hostIP);
    // inside the subnet: no NAT (the peer sees the container's own address)
    const srv2 = await startEchoServer(sb, c2, "0.0.0.0", 7412);
    expect(seenFrom(tcpRoundTrip(c1, `10.77.${sub}.3`, 7412))).toBe(`10.77.${sub}.2`);
    await srv2.stop();
    expect(masqElements("masq4").length).toBe(1);
    expect(masqElements("masq4-users").length).toBe(2);
    // our own table only: berthd's table is not there, no other table was created
    const tables = nftJson(sb.host, "list", "tables").nftables.flatMap((o) => ("table" in o ? [(o.table as { name: string }).name] : []));
    expect(tables).toEqual(["berth-cni"]);
    ok(del(conf, c1));
    expect(masqElements("masq4").length).toBe(1); // c2 still uses the subnet
    expect(masqElements("masq4-users").length).toBe(1);
    expect(seenFrom(tcpRoundTrip(c2, ext.clientIP, 7411))).toBe(ext.hostIP);
    ok(del(conf, c2));
    expect(masqElements("masq4")).toEqual([]);
    expect(masqElements("masq4-users")).toEqual([]);
    await srv.stop();
  });

  test("DEL twice succeeds; DEL after the namespace is gone succeeds and releases the address", async () => {
    const conf = bridgeConf({ ipMasq: true });
    const c1 = sb.netns("d");
    const r = ok(add(conf, c1)).json;
    const hostVeth = r.interfaces[1].name;
    ok(del(conf, c1));
    ok(del(conf, c1));
    expect(link(sb.host, hostVeth)).toBeUndefined();
    expect(await leases(dataDir, String(conf.name))).toEqual([]);
    const c2 = sb.netns("d");
    ok(add(conf, c2));
    expect((await leases(dataDir, String(conf.name))).length).toBe(1);
    Bun.spawnSync(["ip", "netns", "del", c2]);
    ok(del(conf, c2));
    ok(del(conf, c2));
    expect(await leases(dataDir, String(conf.name))).toEqual([]);
    expect(masqElements("masq4-users").filter((e) => e.includes(String(conf.name)))).toEqual([]);
    // and with no CNI_NETNS at all
    ok(call({ plugin: "bridge", command: "DEL", conf, containerId: "gone", netns: "" }));
  });

  test("CHECK passes after ADD and fails once the container interface is deleted", () => {
    const conf = bridgeConf();
    const c1 = sb.netns("k");
    const r = ok(add(conf, c1)).json;
    ok(check(conf, r, c1), "CHECK after ADD");
    // a result that claims an address the interface does not have fails
    const wrong = { ...r, ips: [{ ...r.ips[0], address: "10.77.250.9/24" }] };
    expect(check(conf, wrong, c1).code).not.toBe(0);
    Bun.spawnSync(["ip", "-n", c1, "link", "del", "eth0"]);
    const bad = check(conf, r, c1);
    expect(bad.code).not.toBe(0);
    expect(bad.json.code).toBe(102);
    expect(bad.json.msg).toContain("eth0");
    ok(del(conf, c1));
  });

  test("GC releases leases (and masquerade users) of attachments not in valid-attachments", async () => {
    const conf = bridgeConf({ ipMasq: true });
    const [a, b, c] = [sb.netns("g"), sb.netns("g"), sb.netns("g")];
    for (const n of [a, b, c]) ok(add(conf, n));
    expect((await leases(dataDir, String(conf.name))).length).toBe(3);
    // b and c "leaked": the runtime lost them
    ok(call({ plugin: "bridge", command: "GC", conf: { ...conf, "cni.dev/valid-attachments": [{ containerID: a, ifname: "eth0" }] } }));
    expect(await leases(dataDir, String(conf.name))).toEqual([`${a}/eth0=10.77.${String(conf.bridge).slice(2)}.2`]);
    expect(masqElements("masq4-users").filter((e) => e.includes(String(conf.name))).length).toBe(1);
    expect(masqElements("masq4").length).toBeGreaterThanOrEqual(1);
    // GC without the list is refused rather than releasing everything
    const noList = call({ plugin: "bridge", command: "GC", conf });
    expect(noList.code).not.toBe(0);
    expect((await leases(dataDir, String(conf.name))).length).toBe(1);
    ok(call({ plugin: "bridge", command: "GC", conf: { ...conf, "cni.dev/valid-attachments": [] } }));
    expect(await leases(dataDir, String(conf.name))).toEqual([]);
    for (const n of [a, b, c]) ok(del(conf, n));
  });

  test("STATUS answers for the plugin and its IPAM", () => {
    const conf = { ...bridgeConf(), cniVersion: "1.1.0" };
    ok(call({ plugin: "bridge", command: "STATUS", conf }));
    // bandwidth asks the kernel's traffic control (rtnetlink), not for a tc binary
    ok(call({ plugin: "bandwidth", command: "STATUS", conf: { cniVersion: "1.1.0", name: "bw", type: "bandwidth" } }));
  });

  test("several ADDs at once on a new bridge: all succeed with distinct addresses", async () => {
    const conf = bridgeConf({ ipMasq: true });
    const nss = Array.from({ length: 6 }, () => sb.netns("p"));
    const outs = await Promise.all(nss.map((n) => cniAsync({ host: sb.host, plugin: "bridge", command: "ADD", conf, containerId: n, netns: n, ifname: "eth0" })));
    for (const o of outs) ok(o, "parallel ADD");
    const addrs = outs.map((o) => o.json.ips[0].address);
    expect(new Set(addrs).size).toBe(6);
    expect(linkNames(sb.host).filter((n) => n === conf.bridge)).toEqual([String(conf.bridge)]);
    expect(reachable(nss[0] ?? "", String(addrs[5]).split("/")[0] ?? "")).toBe(true);
    const dels = await Promise.all(nss.map((n) => cniAsync({ host: sb.host, plugin: "bridge", command: "DEL", conf, containerId: n, netns: n, ifname: "eth0" })));
    for (const o of dels) ok(o, "parallel DEL");
    expect(await leases(dataDir, String(conf.name))).toEqual([]);
    expect(masqElements("masq4-users").filter((e) => e.includes(String(conf.name)))).toEqual([]);
  });

  test("CNI_NETNS given as /proc/PID/ns/net (a runtime without named namespaces)", async () => {
    const conf = bridgeConf();
    const c1 = sb.netns("pp");
    const holder = sb.track(Bun.spawn(["ip", "netns", "exec", c1, "sleep", "60"], { stdout: "ignore", stderr: "ignore" }));
    await Bun.sleep(100);
    const path = `/proc/${holder.pid}/ns/net`;
    const r = ok(add(conf, path, "proc-1")).json;
    expect(r.interfaces[2].sandbox).toBe(path);
    expect(addrsOf(c1, "eth0")).toEqual([r.ips[0].address]);
    ok(check(conf, r, path, "proc-1"));
    ok(del(conf, path, "proc-1"));
    expect(linkNames(c1)).toEqual(["lo"]);
    holder.kill("SIGKILL");
    await holder.exited;
    // the process (and with it the path) is gone: DEL still succeeds
    ok(del(conf, path, "proc-1"));
  });

  test("runtimeConfig.mac and isDefaultGateway", () => {
    const conf = bridgeConf({ isDefaultGateway: true, runtimeConfig: { mac: "02:aa:bb:cc:dd:01" } }, { routes: [] });
    const c1 = sb.netns("x");
    const r = ok(add(conf, c1)).json;
    expect(link(c1, "eth0")?.address).toBe("02:aa:bb:cc:dd:01");
    expect(r.interfaces[2].mac).toBe("02:aa:bb:cc:dd:01");
    expect(r.routes).toEqual([{ dst: "0.0.0.0/0", gw: r.ips[0].gateway }]);
    expect(defaultRoute(c1)?.gateway).toBe(r.ips[0].gateway);
    ok(del(conf, c1));
  });

  test("mtu, hairpinMode, promiscMode and unknown keys", () => {
    const conf = bridgeConf({ mtu: 1400, hairpinMode: true, promiscMode: true, someFutureKey: { x: 1 }, "example.org/thing": "y" });
    const c1 = sb.netns("u");
    const r = ok(add(conf, c1)).json;
    expect(link(c1, "eth0")?.mtu).toBe(1400);
    expect(link(sb.host, r.interfaces[1].name)?.mtu).toBe(1400);
    expect(link(sb.host, String(conf.bridge))?.flags).toContain("PROMISC");
    const d = ipJson<{ linkinfo?: { info_slave_data?: { hairpin?: boolean } } }[]>(sb.host, "-d", "link", "show", "dev", r.interfaces[1].name)[0];
    expect(d?.linkinfo?.info_slave_data?.hairpin).toBe(true);
    ok(del(conf, c1));
  });

  test("older and newer result versions: 0.3.1 and 0.4.0 carry ips[].version, 1.1.0 carries the MTU", () => {
    for (const [v, check] of [
      ["0.3.1", (r: { ips: { version?: string }[] }) => expect(r.ips[0]?.version).toBe("4")],
      ["0.4.0", (r: { ips: { version?: string }[] }) => expect(r.ips[0]?.version).toBe("4")],
      ["1.1.0", (r: { interfaces: { mtu?: number }[] }) => expect(r.interfaces[2]?.mtu).toBe(1400)],
    ] as [string, (r: never) => void][]) {
      const conf = { ...bridgeConf({ mtu: 1400 }), cniVersion: v };
      const c1 = sb.netns("ver");
      const r = ok(add(conf, c1)).json;
      expect(r.cniVersion).toBe(v);
      check(r as never);
      ok(del(conf, c1));
    }
  });

  test("IPv6 and dual stack", () => {
    nets += 1;
    const conf = {
      cniVersion: "1.0.0",
      name: `net${nets}`,
      type: "bridge",
      bridge: `br${nets}`,
      isGateway: true,
      ipam: { type: "host-local", dataDir, ranges: [[{ subnet: `10.77.${nets}.0/24` }], [{ subnet: `fd77:${nets}::/64` }]] },
    };
    const [c1, c2] = [sb.netns("v"), sb.netns("v")];
    const r1 = ok(add(conf, c1)).json;
    ok(add(conf, c2));
    expect(r1.ips.map((i: { address: string }) => i.address)).toEqual([`10.77.${nets}.2/24`, `fd77:${nets}::2/64`]);
    expect(reachable(c1, `fd77:${nets}::3`)).toBe(true);
    expect(reachable(c1, `fd77:${nets}::1`)).toBe(true);
    ok(del(conf, c1));
    ok(del(conf, c2));
  });
});

describe("bad input changes nothing", () => {
  function expectNothingChanged(before: string, conf: Record<string, unknown>, ...nss: string[]): void {
    expect(snapshot(sb.host, ...nss)).toBe(before);
    expect(linkNames(sb.host).filter((n) => n === conf.bridge)).toEqual([]);
  }

  test.each([
    ["malformed JSON", { conf: '{"cniVersion": "1.0.0", "name": ', code: 6 }],
    ["unknown cniVersion", { conf: { cniVersion: "9.9.9" }, code: 1 }],
    ["ifname over 15 characters", { ifname: "eth0123456789abc", code: 4 }],
    ["missing CNI_NETNS", { netns: "", code: 4 }],
    ["netns path that does not exist", { netns: "/run/netns/does-not-exist-x", code: 8 }],
    ["netns path that is not a namespace", { netns: "/etc/hostname", code: 8 }],
    ["ipam type not found", { conf: { ipam: { type: "no-such-ipam" } }, path: "/nonexistent", code: 7, msg: "no-such-ipam" }],
    ["vlan", { conf: { vlan: 100 }, code: 2, msg: "vlan" }],
    ["macspoofchk", { conf: { macspoofchk: true }, code: 2, msg: "macspoofchk" }],
    ["bad mtu", { conf: { mtu: 20 }, code: 7, msg: "mtu" }],
    ["bad boolean", { conf: { isGateway: "yes" }, code: 7, msg: "isGateway" }],
    ["bad subnet", { conf: { ipam: { subnet: "10.1.2.3/24" } }, code: 7, msg: "host bits" }],
    ["bad runtime MAC", { conf: { runtimeConfig: { mac: "zz" } }, code: 7, msg: "mac" }],
    ["requested IP outside the range", { conf: { runtimeConfig: { ips: ["10.99.99.9"] } }, code: 7, msg: "10.99.99.9" }],
  ] as [string, { conf?: unknown; ifname?: string; netns?: string; path?: string; code: number; msg?: string }][])(
    "%s",
    async (_name, t) => {
      const base = bridgeConf();
      const c1 = sb.netns("b");
      const before = snapshot(sb.host, c1);
      let conf: unknown = base;
      if (typeof t.conf === "string") conf = t.conf;
      else if (t.conf) {
        const o = t.conf as Record<string, unknown>;
        conf = { ...base, ...o, ...(o.ipam ? { ipam: { ...(base.ipam as object), ...(o.ipam as object) } } : {}) };
      }
      const out = call({
        plugin: "bridge",
        command: "ADD",
        conf,
        containerId: "bad1",
        netns: t.netns ?? c1,
        ifname: t.ifname ?? "eth0",
        ...(t.path ? { path: t.path } : {}),
      });
      expect(out.code).not.toBe(0);
      expect(out.json?.code).toBe(t.code);
      if (t.msg) expect(out.json?.msg).toContain(t.msg);
      expectNothingChanged(before, base, c1);
      expect(await leases(dataDir, String(base.name))).toEqual([]);
    },
  );

  test("an interface that already exists in the container: error, the lease and host veth are not left behind", async () => {
    const conf = bridgeConf();
    const c1 = sb.netns("e");
    Bun.spawnSync(["ip", "-n", c1, "link", "add", "eth0", "type", "veth", "peer", "name", "other0"]);
    const before = snapshot(sb.host, c1);
    const out = add(conf, c1);
    expect(out.code).not.toBe(0);
    expect(out.json.msg).toContain("eth0");
    expect(snapshot(sb.host, c1)).toBe(before);
    expect(await leases(dataDir, String(conf.name))).toEqual([]);
  });

  test("a failure after IPAM (address pool exhausted) rolls everything back", async () => {
    const conf = bridgeConf();
    const sub = String(conf.bridge).slice(2);
    conf.ipam = { ...(conf.ipam as object), rangeStart: `10.77.${sub}.10`, rangeEnd: `10.77.${sub}.10` };
    const [c1, c2] = [sb.netns("f"), sb.netns("f")];
    ok(add(conf, c1));
    const before = snapshot(sb.host, c2);
    const out = add(conf, c2);
    expect(out.code).not.toBe(0);
    expect(out.json.code).toBe(11);
    expect(out.json.msg).toContain("no IP addresses available");
    expect(snapshot(sb.host, c2)).toBe(before);
    expect((await leases(dataDir, String(conf.name))).length).toBe(1);
    ok(del(conf, c1));
  });

  test("forceAddress: a bridge with another address is refused unless forced", () => {
    const conf = bridgeConf();
    Bun.spawnSync(["ip", "-n", sb.host, "link", "add", String(conf.bridge), "type", "bridge"]);
    Bun.spawnSync(["ip", "-n", sb.host, "addr", "add", "10.66.0.1/24", "dev", String(conf.bridge)]);
    const c1 = sb.netns("o");
    const out = add(conf, c1);
    expect(out.code).not.toBe(0);
    expect(out.json.msg).toContain("10.66.0.1/24");
    expect(linkNames(c1)).toEqual(["lo"]);
    const forced = { ...conf, forceAddress: true };
    ok(add(forced, c1));
    expect(addrsOf(sb.host, String(conf.bridge))).toEqual([`10.77.${String(conf.bridge).slice(2)}.1/24`]);
    ok(del(forced, c1));
  });
});

describe("host-local", () => {
  function hl(ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
    nets += 1;
    return { cniVersion: "1.0.0", name: `hl${nets}`, type: "host-local", ipam: { type: "host-local", dataDir, ...ipam }, ...extra };
  }
  const hadd = (conf: Record<string, unknown>, id: string, extra: Partial<CniCall> = {}) =>
    call({ plugin: "host-local", command: "ADD", conf, containerId: id, netns: sb.host, ...extra });
  const hdel = (conf: Record<string, unknown>, id: string, extra: Partial<CniCall> = {}) =>
    call({ plugin: "host-local", command: "DEL", conf, containerId: id, netns: sb.host, ...extra });

  test("ranges with rangeStart/rangeEnd/gateway, routes and resolvConf", () => {
    const rc = join(dataDir, "resolv.conf");
    writeFileSync(rc, "nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch a.example b.example\noptions ndots:2\ndomain a.example\n");
    const conf = hl({
      ranges: [[{ subnet: "10.88.0.0/24", rangeStart: "10.88.0.100", rangeEnd: "10.88.0.101", gateway: "10.88.0.254" }]],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "192.168.0.0/16", gw: "10.88.0.253" }],
      resolvConf: rc,
    });
    const a = ok(hadd(conf, "a")).json;
    expect(a.ips).toEqual([{ address: "10.88.0.100/24", gateway: "10.88.0.254" }]);
    expect(a.routes).toEqual([{ dst: "0.0.0.0/0" }, { dst: "192.168.0.0/16", gw: "10.88.0.253" }]);
    expect(a.dns).toEqual({ nameservers: ["192.0.2.53", "192.0.2.54"], search: ["a.example", "b.example"], options: ["ndots:2"], domain: "a.example" });
    expect(a.interfaces).toBeUndefined();
    expect(ok(hadd(conf, "b")).json.ips[0].address).toBe("10.88.0.101/24");
    const full = hadd(conf, "c");
    expect(full.json.code).toBe(11);
    expect(full.json.msg).toContain("10.88.0.100-10.88.0.101");
    // ADD again for the same attachment returns the same address
    expect(ok(hadd(conf, "a")).json.ips[0].address).toBe("10.88.0.100/24");
    ok(hdel(conf, "a"));
    expect(ok(hadd(conf, "c")).json.ips[0].address).toBe("10.88.0.100/24");
  });

  test("requested addresses: runtimeConfig.ips (both forms, duplicates), args.cni.ips, CNI_ARGS IP", () => {
    const conf = hl({ ranges: [[{ subnet: "10.89.0.0/24" }], [{ subnet: "fd89::/64" }]] });
    const r = ok(hadd({ ...conf, runtimeConfig: { ips: ["10.89.0.50/24", "10.89.0.50", "fd89::50"] } }, "rc")).json;
    expect(r.ips.map((i: { address: string }) => i.address)).toEqual(["10.89.0.50/24", "fd89::50/64"]);
    expect(ok(hadd({ ...conf, args: { cni: { ips: ["10.89.0.51"] } } }, "ar")).json.ips[0].address).toBe("10.89.0.51/24");
    expect(ok(hadd(conf, "ea", { args: "IP=10.89.0.52" })).json.ips[0].address).toBe("10.89.0.52/24");
    // taken already
    const taken = hadd({ ...conf, runtimeConfig: { ips: ["10.89.0.50"] } }, "other");
    expect(taken.code).not.toBe(0);
    expect(taken.json.msg).toContain("10.89.0.50");
    // the gateway is never handed out
    expect(hadd({ ...conf, runtimeConfig: { ips: ["10.89.0.1"] } }, "gw").code).not.toBe(0);
    // unknown CNI_ARGS key without IgnoreUnknown
    const unk = hadd(conf, "u", { args: "FOO=1" });
    expect(unk.json.code).toBe(4);
    ok(hadd(conf, "u", { args: "FOO=1;IgnoreUnknown=1" }));
  });

  test("legacy keys, CHECK, DEL idempotent, GC", async () => {
    const conf = hl({ subnet: "10.90.0.0/24", gateway: "10.90.0.1" });
    ok(hadd(conf, "x"));
    ok(hadd(conf, "y"));
    ok(call({ plugin: "host-local", command: "CHECK", conf, containerId: "x", netns: sb.host }));
    ok(hdel(conf, "x"));
    ok(hdel(conf, "x"));
    const chk = call({ plugin: "host-local", command: "CHECK", conf, containerId: "x", netns: sb.host });
    expect(chk.code).not.toBe(0);
    expect(chk.json.msg).toContain("x");
    ok(hadd(conf, "z"));
    expect((await leases(dataDir, String(conf.name))).length).toBe(2);
    ok(call({ plugin: "host-local", command: "GC", conf: { ...conf, cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: "z", ifname: "eth0" }] } }));
    // round robin: z got the address after y's, not x's released one
    expect(await leases(dataDir, String(conf.name))).toEqual(["z/eth0=10.90.0.4"]);
  });

  test("invalid ranges are refused with the key named", () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ ranges: [[{ subnet: "10.91.0.0/24", rangeStart: "10.92.0.5" }]] }, "rangeStart"],
      [{ ranges: [[{ subnet: "10.91.0.0/31" }]] }, "too small"],
      [{ ranges: [[{ subnet: "10.91.0.0/24" }], [{ subnet: "10.91.0.0/25" }]] }, "overlaps"],
      [{ ranges: [[{ subnet: "10.91.0.0/24" }, { subnet: "fd91::/64" }]] }, "mixed"],
      [{}, "no IP ranges"],
      [{ ranges: [[{ subnet: "10.91.0.0/24", rangeStart: "10.91.0.9", rangeEnd: "10.91.0.3" }]] }, "after"],
    ];
    for (const [ipam, msg] of cases) {
      const out = hadd(hl(ipam), "bad");
      expect(out.json?.code).toBe(7);
      expect(out.json?.msg).toContain(msg);
    }
  });
});

describe("static IPAM", () => {
  test("addresses, routes and dns from the config; runtimeConfig.ips replaces them", () => {
    nets += 1;
    const conf = {
      cniVersion: "1.0.0",
      name: `st${nets}`,
      type: "bridge",
      bridge: `br${nets}`,
      ipam: {
        type: "static",
        addresses: [{ address: "10.93.0.5/24", gateway: "10.93.0.1" }],
        routes: [{ dst: "0.0.0.0/0" }],
        dns: { nameservers: ["192.0.2.1"] },
      },
    };
    const c1 = sb.netns("s");
    const r = ok(add(conf, c1)).json;
    expect(r.ips).toEqual([{ interface: 2, address: "10.93.0.5/24", gateway: "10.93.0.1" }]);
    expect(r.dns).toEqual({ nameservers: ["192.0.2.1"] });
    expect(defaultRoute(c1)?.gateway).toBe("10.93.0.1");
    ok(del(conf, c1));
    const c2 = sb.netns("s");
    const r2 = ok(add({ ...conf, runtimeConfig: { ips: ["10.93.0.7/24", "10.93.0.7/24"] } }, c2)).json;
    expect(r2.ips.map((i: { address: string }) => i.address)).toEqual(["10.93.0.7/24"]);
    ok(del(conf, c2));
    const bad = add({ ...conf, runtimeConfig: { ips: ["10.93.0.8"] } }, sb.netns("s"));
    expect(bad.json.code).toBe(7);
    expect(bad.json.msg).toContain("CIDR");
  });
});

describe("ptp", () => {
  test("routed veth pairs: host routes, containers reach each other through the host, ipMasq", async () => {
    const outer = sb;
    sb = createSandbox("pt");
    try {
      await ptpScenario();
    } finally {
      await sb.cleanup();
      sb = outer;
    }
  });
  async function ptpScenario(): Promise<void> {
    nets += 1;
    const conf = { cniVersion: "1.0.0", name: `ptp${nets}`, type: "ptp", ipMasq: true, mtu: 1450, ipam: { type: "host-local", dataDir, subnet: `10.78.${nets}.0/24`, routes: [{ dst: "0.0.0.0/0" }] } };
    const [c1, c2] = [sb.netns("t"), sb.netns("t")];
    const r1 = ok(add(conf, c1)).json;
    const r2 = ok(add(conf, c2)).json;
    expect(r1.interfaces.map((i: { name: string }) => i.name)).toEqual([expect.stringMatching(/^veth/), "eth0"]);
    expect(r1.ips).toEqual([{ interface: 1, address: `10.78.${nets}.2/24`, gateway: `10.78.${nets}.1` }]);
    expect(routeState(c1)).toEqual([
      `0.0.0.0/0 via 10.78.${nets}.1 dev eth0`.replace("0.0.0.0/0", "default"),
      `10.78.${nets}.0/24 via 10.78.${nets}.1 dev eth0 src 10.78.${nets}.2`,
      `10.78.${nets}.1 dev eth0 scope link src 10.78.${nets}.2`,
    ].sort());
    expect(routeState(sb.host)).toContain(`10.78.${nets}.2 dev veth* scope host`);
    expect(link(c1, "eth0")?.mtu).toBe(1450);
    expect(reachable(c1, r2.ips[0].address.split("/")[0])).toBe(true);
    const ext = addExternalClient(sb, "198.51.100.1/24", "198.51.100.2/24");
    const srv = await startEchoServer(sb, ext.ns, ext.clientIP, 7413);
    expect(seenFrom(tcpRoundTrip(c1, ext.clientIP, 7413))).toBe(ext.hostIP);
    await srv.stop();
    ok(check(conf, r1, c1));
    ok(del(conf, c1));
    ok(del(conf, c1));
    expect(routeState(sb.host).filter((r) => r.startsWith(`10.78.${nets}.2 `))).toEqual([]);
    ok(del(conf, c2));
  }
});

describe("macvlan", () => {
  test("children of a master reach each other and the LAN; default master from the default route", () => {
    // the "LAN": a veth from the sandbox host to a namespace with an address
    const lan = sb.netns("lan");
    Bun.spawnSync(["ip", "-n", sb.host, "link", "add", "mv0", "type", "veth", "peer", "name", "eth0", "netns", lan]);
    Bun.spawnSync(["ip", "-n", sb.host, "link", "set", "mv0", "up"]);
    Bun.spawnSync(["ip", "-n", lan, "addr", "add", "10.79.0.200/24", "dev", "eth0"]);
    Bun.spawnSync(["ip", "-n", lan, "link", "set", "eth0", "up"]);
    const conf = { cniVersion: "1.0.0", name: "mvnet", type: "macvlan", master: "mv0", mode: "bridge", ipam: { type: "host-local", dataDir, subnet: "10.79.0.0/24" } };
    const [c1, c2] = [sb.netns("mv"), sb.netns("mv")];
    const r1 = ok(add(conf, c1)).json;
    ok(add(conf, c2));
    expect(r1.interfaces).toEqual([{ name: "eth0", mac: expect.any(String), sandbox: `/run/netns/${c1}` }]);
    expect(r1.ips).toEqual([{ interface: 0, address: "10.79.0.2/24", gateway: "10.79.0.1" }]);
    expect(linkState(c1)).toContain("eth0 macvlan/bridge mtu=1500 up");
    expect(link(c1, "eth0")?.address).toBe(r1.interfaces[0].mac);
    expect(reachable(c1, "10.79.0.3")).toBe(true);
    expect(reachable(c1, "10.79.0.200")).toBe(true);
    ok(check(conf, r1, c1));
    ok(del(conf, c1));
    ok(del(conf, c1));
    expect(linkNames(c1)).toEqual(["lo"]);
    // no master: the default route's interface
    Bun.spawnSync(["ip", "-n", sb.host, "addr", "add", "10.79.0.254/24", "dev", "mv0"]);
    Bun.spawnSync(["ip", "-n", sb.host, "route", "add", "default", "via", "10.79.0.200"]);
    const dflt = { ...conf, name: "mvnet2", master: undefined, mode: "private", mtu: 1400, ipam: { ...conf.ipam, rangeStart: "10.79.0.100" } };
    const r3 = ok(add(dflt, c1)).json;
    expect(linkState(c1)).toContain("eth0 macvlan/private mtu=1400 up");
    expect(reachable(c1, "10.79.0.200")).toBe(true);
    expect(r3.ips[0].address).toBe("10.79.0.100/24");
    ok(del(dflt, c1));
    Bun.spawnSync(["ip", "-n", sb.host, "route", "del", "default"]);
    ok(del(conf, c2));
    // linkInContainer: the master lives in the container's namespace
    const c3 = sb.netns("mv");
    Bun.spawnSync(["ip", "-n", c3, "link", "add", "up9", "type", "veth", "peer", "name", "up9p"]);
    Bun.spawnSync(["ip", "-n", c3, "link", "set", "up9", "up"]);
    const inC = { ...conf, name: "mvnet3", master: "up9", linkInContainer: true, ifname: undefined };
    const r4 = ok(add(inC, c3, c3, { ifname: "net1" })).json;
    expect(r4.interfaces[0].name).toBe("net1");
    expect(linkState(c3)).toContain("net1 macvlan/bridge mtu=1500 up");
    ok(del(inC, c3, c3, { ifname: "net1" }));
    expect(linkNames(c3)).toEqual(["lo", "up9", "up9p"]);
    // bad: unknown master, mtu above the master's, unknown mode
    for (const [over, msg] of [
      [{ master: "nope0" }, "nope0"],
      [{ mtu: 9000 }, "mtu"],
      [{ mode: "source" }, "mode"],
    ] as [Record<string, unknown>, string][]) {
      const out = add({ ...conf, ...over }, c1);
      expect(out.json?.code).toBe(7);
      expect(out.json?.msg).toContain(msg);
      expect(linkNames(c1)).toEqual(["lo"]);
    }
  });
});

describe("tuning (chained after bridge)", () => {
  test("sysctl, mac, mtu, promisc, allmulti: applied, passed on in the result, restored on DEL", () => {
    const conf = bridgeConf();
    const c1 = sb.netns("tu");
    const prev = ok(add(conf, c1)).json;
    const tdir = join(dataDir, "tuning");
    const tconf = {
      cniVersion: "1.0.0",
      name: conf.name,
      type: "tuning",
      dataDir: tdir,
      sysctl: { "net.ipv4.conf.eth0.arp_notify": "1", "net/ipv6/conf/eth0/accept_ra": "0" },
      mac: "02:12:34:56:78:9a",
      mtu: 1300,
      promisc: true,
      allmulti: true,
      prevResult: prev,
    };
    const origMac = link(c1, "eth0")?.address;
    const r = ok(call({ plugin: "tuning", command: "ADD", conf: tconf, containerId: c1, netns: c1 })).json;
    expect(r.interfaces[2].mac).toBe("02:12:34:56:78:9a");
    expect(r.ips).toEqual(prev.ips);
    const l = link(c1, "eth0");
    expect(l?.address).toBe("02:12:34:56:78:9a");
    expect(l?.mtu).toBe(1300);
    expect(l?.flags).toContain("PROMISC");
    expect(l?.flags).toContain("ALLMULTI");
    expect(l?.flags).toContain("UP");
    const sysctl = (k: string) => Bun.spawnSync(["ip", "netns", "exec", c1, "cat", `/proc/sys/${k}`], { stdout: "pipe" }).stdout.toString().trim();
    expect(sysctl("net/ipv4/conf/eth0/arp_notify")).toBe("1");
    ok(call({ plugin: "tuning", command: "CHECK", conf: { ...tconf, prevResult: r }, containerId: c1, netns: c1 }));
    // GC forgets saved settings of attachments that are gone, keeps the live one
    const stateFile = join(tdir, String(conf.name), `${c1}-eth0.json`);
    writeFileSync(join(tdir, String(conf.name), "gone-1-eth0.json"), "{}");
    ok(call({ plugin: "tuning", command: "GC", conf: { ...tconf, cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: c1, ifname: "eth0" }] } }));
    expect(existsSync(stateFile)).toBe(true);
    expect(existsSync(join(tdir, String(conf.name), "gone-1-eth0.json"))).toBe(false);
    ok(call({ plugin: "tuning", command: "DEL", conf: tconf, containerId: c1, netns: c1 }));
    expect(existsSync(stateFile)).toBe(false);
    const back = link(c1, "eth0");
    expect(back?.address).toBe(origMac);
    expect(back?.mtu).toBe(1500);
    expect(back?.flags).not.toContain("PROMISC");
    expect(sysctl("net/ipv4/conf/eth0/arp_notify")).toBe("0");
    const chk = call({ plugin: "tuning", command: "CHECK", conf: { ...tconf, prevResult: r }, containerId: c1, netns: c1 });
    expect(chk.json.code).toBe(102);
    // refused: a key outside net.*, a sysctl that does not exist, no prevResult: nothing changes
    const before = snapshot(c1);
    for (const [over, code, msg] of [
      [{ sysctl: { "kernel.hostname": "x" } }, 7, "kernel.hostname"],
      [{ sysctl: { "net.ipv4.conf.eth0.no_such_knob": "1" }, mtu: 1200 }, 7, "no_such_knob"],
      [{ sysctl: { "net/../../kernel/x": "1" } }, 7, "net/../../kernel/x"],
      [{ prevResult: undefined }, 7, "prevResult"],
    ] as [Record<string, unknown>, number, string][]) {
      const out = call({ plugin: "tuning", command: "ADD", conf: { ...tconf, ...over }, containerId: c1, netns: c1 });
      expect(out.json?.code).toBe(code);
      expect(out.json?.msg).toContain(msg);
      expect(snapshot(c1)).toBe(before);
    }
    ok(del(conf, c1));
  });
});

describe("loopback", () => {
  test("brings lo up", () => {
    const c1 = sb.netns("lo");
    Bun.spawnSync(["ip", "-n", c1, "link", "set", "lo", "down"]);
    const r = ok(call({ plugin: "loopback", command: "ADD", conf: { cniVersion: "1.0.0", name: "lo", type: "loopback" }, containerId: c1, netns: c1, ifname: "lo" })).json;
    expect(r.interfaces[0].name).toBe("lo");
    expect(reachable(c1, "127.0.0.1")).toBe(true);
  });
});
