/**
 * A real dockerd running containers on a Berth overlay through the remote driver
 * (`docker network create -d berth -o berth.driver=overlay`), across hosts: two
 * "hosts" on one underlay (test/harness/multihost.ts) share one etcd; host h1
 * runs dockerd with Berth as its plugin, host h2 only berthd. Docker's
 * containers on h1 and a Berth container on h2 meet on the same VXLAN network;
 * Docker gives its containers their way out on its own docker_gwbridge, as with
 * Docker's overlay, because Berth's Join names no gateway for an overlay.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startDockerd, type TestDockerd } from "../harness/dockerd.ts";
import { createMultihost, type Multihost, type TestHost } from "../harness/multihost.ts";
import { assertRootUntouched, ipJson, reachable } from "../harness/sandbox.ts";

assertRootUntouched();

const IMAGE = "berthtest/busybox:latest";

describe("dockerd on a Berth overlay network, across two hosts", () => {
  let m: Multihost;
  let dk: TestDockerd | undefined;
  let h1: TestHost;
  let h2: TestHost;
  let netId = "";
  let berthName = "";

  const ok = (...args: string[]): string => {
    if (!dk) throw new Error("no dockerd");
    const r = dk.docker(...args);
    if (r.code !== 0) throw new Error(`docker ${args.join(" ")} -> ${r.code}: ${r.err}`);
    return r.out.trim();
  };
  const berth = (h: TestHost, ...args: string[]): string => {
    const r = h.daemon.cli(...args);
    if (r.code !== 0) throw new Error(`berth ${args.join(" ")} on ${h.name}: ${r.err}`);
    return r.out;
  };
  const ipOf = (c: string): string => ok("inspect", "-f", '{{(index .NetworkSettings.Networks "ov1").IPAddress}}', c);
  const macOf = (c: string): string => ok("inspect", "-f", '{{(index .NetworkSettings.Networks "ov1").MacAddress}}', c);
  const dockerPing = (from: string, ip: string, withinMs = 3000): boolean => {
    const deadline = performance.now() + withinMs;
    do {
      if (dk?.docker("exec", from, "ping", "-c", "1", "-W", "1", ip).code === 0) return true;
    } while (performance.now() < deadline);
    return false;
  };
  const fdbMacs = (h: TestHost): string[] => {
    const vx = `vx${netId.slice(0, 12)}`;
    const r = Bun.spawnSync(["ip", "netns", "exec", h.sb.host, "bridge", "-j", "fdb", "show", "dev", vx], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) return [];
    return (JSON.parse(r.stdout.toString() || "[]") as { mac: string; dst?: string }[]).filter((e) => e.dst).map((e) => `${e.mac}>${e.dst}`);
  };

  beforeAll(async () => {
    m = await createMultihost(2, {
      beforeDaemon: async (name, sb) => {
        if (name !== "h1") return [];
        dk = await startDockerd(sb);
        return ["--plugin-socket", join(dk.pluginDir, "berth.sock")];
      },
    });
    [h1, h2] = m.hosts as [TestHost, TestHost];
    dk?.importBusybox(IMAGE, "overlay");
  }, 120_000);

  afterAll(async () => {
    // dockerd first: it tears its endpoints and networks down through Berth
    await dk?.stop();
    await m?.cleanup();
  }, 120_000);

  test("docker network create -d berth -o berth.driver=overlay makes one global Berth overlay, seen from every host", () => {
    netId = ok("network", "create", "-d", "berth", "-o", "berth.driver=overlay", "--subnet", "10.231.0.0/24", "ov1");
    expect(netId).toMatch(/^[0-9a-f]{64}$/);
    const [onH2] = JSON.parse(berth(h2, "network", "inspect", netId)) as { Name: string; Driver: string; Scope: string; Options: Record<string, string> }[];
    expect(onH2?.Driver).toBe("overlay");
    expect(onH2?.Scope).toBe("global");
    expect(Number(onH2?.Options["com.docker.network.driver.overlay.vxlanid_list"] ?? onH2?.Options.vni)).toBeGreaterThan(0);
    berthName = onH2!.Name;
    expect(berthName).toBe(`docker-${netId.slice(0, 12)}`);
  }, 60_000);

  test("Docker containers on h1 and a Berth container on h2 reach each other over VXLAN", () => {
    ok("run", "-d", "--name", "d1", "--network", "ov1", IMAGE, "sleep", "600");
    ok("run", "-d", "--name", "d2", "--network", "ov1", IMAGE, "sleep", "600");
    berth(h2, "run", "-d", "--network", berthName, "--name", "b1", "--", "sleep", "600");
    const [b1] = JSON.parse(berth(h2, "inspect", "b1")) as { NetnsName: string; Networks: { Ifname: string; Addresses: string[] }[] }[];
    const b1ip = b1!.Networks.find((n) => n.Ifname === "eth0")!.Addresses[0]!.split("/")[0]!;
    const [d1, d2] = [ipOf("d1"), ipOf("d2")];
    expect(new Set([d1, d2, b1ip]).size).toBe(3);
    for (const ip of [d1, d2, b1ip]) expect(ip.startsWith("10.231.0.")).toBe(true);
    expect(dockerPing("d1", d2)).toBe(true);
    expect(dockerPing("d1", b1ip)).toBe(true);
    expect(reachable(b1!.NetnsName, d2)).toBe(true);
    // h2's VXLAN device sends d1's and d2's MACs to h1's VTEP, and h1's sends b1's to h2
    expect(fdbMacs(h2)).toEqual(expect.arrayContaining([`${macOf("d1")}>${h1.ip}`, `${macOf("d2")}>${h1.ip}`]));
    const b1mac = ipJson<{ address: string }[]>(b1!.NetnsName, "link", "show", "dev", "eth0")[0]!.address;
    expect(fdbMacs(h1)).toContain(`${b1mac}>${h2.ip}`);
  }, 60_000);

  test("Docker gives its overlay containers their way out on docker_gwbridge (no gateway on the overlay)", () => {
    const routes = ok("exec", "d1", "ip", "route");
    expect(routes).toMatch(/default via 172\.\d+\.0\.1 dev eth1/);
    expect(routes).toContain("10.231.0.0/24 dev eth0");
    const gw = /default via (\S+)/.exec(routes)![1]!;
    expect(dockerPing("d1", gw)).toBe(true);
  }, 30_000);

  test("docker rm and network rm remove the endpoints from the other host's FDB and the network everywhere", async () => {
    const d1mac = macOf("d1");
    ok("rm", "-f", "d1", "d2");
    const deadline = performance.now() + 5000;
    while (fdbMacs(h2).some((e) => e.startsWith(d1mac)) && performance.now() < deadline) await Bun.sleep(100);
    expect(fdbMacs(h2).some((e) => e.startsWith(d1mac))).toBe(false);
    berth(h2, "rm", "-f", "b1");
    ok("network", "rm", "ov1");
    expect(h2.daemon.cli("network", "inspect", netId).code).not.toBe(0);
    expect(h1.daemon.cli("network", "inspect", netId).code).not.toBe(0);
    expect(ipJson<{ ifname: string }[]>(h1.sb.host, "link", "show").map((l) => l.ifname).filter((n) => n.startsWith("vx") || n.startsWith("bo"))).toEqual([]);
  }, 60_000);
});
