/**
 * The real docker CLI (28.x in /usr/local/bin when present, else Debian's 20.10)
 * against a real berthd in a sandbox namespace: DOCKER_HOST=unix://<berth socket>.
 * Network create with every IPAM flag, ls with filters and formats, inspect
 * shapes, rm, prune, connect/disconnect of a Berth container, and Docker's
 * error messages, exit codes and HTTP status codes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { dockerCli } from "../harness/dockerd.ts";
import { assertRootUntouched, canPing, createSandbox, ipJson, type Sandbox, reachable } from "../harness/sandbox.ts";

assertRootUntouched();

interface Net {
  Name: string;
  Id: string;
  Created: string;
  Scope: string;
  Driver: string;
  EnableIPv6: boolean;
  Internal: boolean;
  IPAM: { Driver: string; Options: Record<string, string>; Config: Record<string, unknown>[] };
  Containers: Record<string, { Name: string; EndpointID: string; MacAddress: string; IPv4Address: string; IPv6Address: string }>;
  Options: Record<string, string>;
  Labels: Record<string, string>;
}

const CLI = dockerCli();

describe.skipIf(!CLI)("docker CLI against berthd", () => {
  let sb: Sandbox;
  let d: TestDaemon;
  const run = (cli: string, ...args: string[]) => {
    const r = Bun.spawnSync([cli, ...args], { env: { ...process.env, DOCKER_HOST: `unix://${d.socket}` }, stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode ?? -1, out: r.stdout.toString().trim(), err: r.stderr.toString().trim() };
  };
  const docker = (...args: string[]) => run(CLI!, ...args);
  const ok = (...args: string[]): string => {
    const r = docker(...args);
    if (r.code !== 0) throw new Error(`docker ${args.join(" ")} -> ${r.code}: ${r.err}`);
    return r.out;
  };
  const inspect = (n: string): Net => JSON.parse(ok("network", "inspect", n))[0];
  const ls = (...args: string[]): string[] => ok("network", "ls", ...args, "--format", "{{.Name}}").split("\n").filter(Boolean).sort();
  const raw = async (method: string, path: string, body?: string) => {
    const r = await fetch(`http://berthd${path}`, { unix: d.socket, method, ...(body === undefined ? {} : { body, headers: { "Content-Type": "application/json" } }) });
    return { status: r.status, text: await r.text() };
  };

  beforeAll(async () => {
    sb = createSandbox("dc");
    d = await startDaemon(sb);
  });
  afterAll(async () => {
    for (const id of d.cli("ps", "-a", "-q").out.split("\n").filter(Boolean)) d.cli("rm", "-f", id);
    await d.stop();
    await sb.cleanup();
  });

  test("version negotiation: the CLI talks API 1.41 to berthd", () => {
    expect(ok("version", "--format", "{{.Server.APIVersion}}")).toBe("1.41");
  });

  test("network create with --subnet --ip-range --gateway --aux-address --label -o; inspect shape", () => {
    const id = ok("network", "create", "--subnet", "10.250.0.0/24", "--ip-range", "10.250.0.128/25", "--gateway", "10.250.0.1",
      "--aux-address", "router=10.250.0.5", "--label", "team=a", "--label", "tier=front",
      "-o", "com.docker.network.bridge.name=dk-front", "-o", "com.docker.network.driver.mtu=1400", "front");
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const n = inspect("front");
    expect(n.Id).toBe(id);
    expect(n.Name).toBe("front");
    expect(n.Driver).toBe("bridge");
    expect(n.Scope).toBe("local");
    expect(Number.isNaN(Date.parse(n.Created))).toBe(false);
    expect(n.IPAM.Driver).toBe("default");
    expect(n.IPAM.Config).toEqual([{ Subnet: "10.250.0.0/24", IPRange: "10.250.0.128/25", Gateway: "10.250.0.1", AuxiliaryAddresses: { router: "10.250.0.5" } }]);
    expect(n.Options).toEqual({ "com.docker.network.bridge.name": "dk-front", "com.docker.network.driver.mtu": "1400" });
    expect(n.Labels).toEqual({ team: "a", tier: "front" });
    expect(n.Containers).toEqual({});
    // the kernel agrees: bridge named as asked, MTU, gateway address
    const br = ipJson<{ ifname: string; mtu: number; addr_info: { local: string }[] }[]>(sb.host, "-4", "addr", "show", "dev", "dk-front")[0]!;
    expect(br.mtu).toBe(1400);
    expect(br.addr_info.map((a) => a.local)).toEqual(["10.250.0.1"]);
  });

  test("--internal and --ipv6 networks", () => {
    ok("network", "create", "--internal", "--subnet", "10.251.0.0/24", "back");
    expect(inspect("back").Internal).toBe(true);
    ok("network", "create", "--ipv6", "--subnet", "10.252.0.0/24", "--subnet", "fd00:b1::/64", "dual");
    const dual = inspect("dual");
    expect(dual.EnableIPv6).toBe(true);
    // (the CLI sends the two subnets in either order)
    expect(dual.IPAM.Config.map((c) => c.Subnet).sort()).toEqual(["10.252.0.0/24", "fd00:b1::/64"]);
    expect(ipJson<{ addr_info: { local: string }[] }[]>(sb.host, "-6", "addr", "show", "dev", `br-${dual.Id.slice(0, 12)}`)[0]!.addr_info.map((a) => a.local)).toContain("fd00:b1::1");
    // IPv6 without a subnet: one is chosen from Berth's ULA /48
    ok("network", "create", "--ipv6", "v6auto");
    expect(inspect("v6auto").IPAM.Config.map((c) => c.Subnet as string).some((s) => /^fd[0-9a-f]{2}:.*\/64$/.test(s))).toBe(true);
    // an IPv6 subnet without --ipv6 is refused with a clear error
    const r = docker("network", "create", "--subnet", "fd00:b2::/64", "v6off");
    expect(r.code).toBe(1);
    expect(r.err).toContain("IPv6 is not enabled");
  });

  test("ls with --filter and --format", () => {
    expect(ls()).toEqual(["back", "bridge", "dual", "front", "host", "none", "v6auto"]);
    expect(ls("--filter", "label=team=a")).toEqual(["front"]);
    expect(ls("--filter", "label=team")).toEqual(["front"]);
    expect(ls("--filter", "label=team=b")).toEqual([]);
    expect(ls("--filter", "name=fro")).toEqual(["front"]);
    expect(ls("--filter", "name=^v6")).toEqual(["v6auto"]);
    expect(ls("--filter", "driver=null")).toEqual(["none"]);
    expect(ls("--filter", "type=builtin")).toEqual(["bridge", "host", "none"]);
    expect(ls("--filter", "type=custom")).toEqual(["back", "dual", "front", "v6auto"]);
    expect(ls("--filter", "scope=local").length).toBe(7);
    expect(ls("--filter", "scope=swarm")).toEqual([]);
    expect(ls("--filter", "dangling=true")).toEqual(["back", "dual", "front", "v6auto"]);
    expect(ls("--filter", "dangling=false")).toEqual(["bridge", "host", "none"]);
    const id = inspect("front").Id;
    expect(ls("--filter", `id=${id.slice(0, 10)}`)).toEqual(["front"]);
    expect(ok("network", "ls", "-q", "--filter", "name=front")).toBe(id.slice(0, 12));
    const row = ok("network", "ls", "--filter", "name=front", "--format", "{{.ID}}|{{.Name}}|{{.Driver}}|{{.Scope}}|{{.IPv6}}|{{.Internal}}|{{.Labels}}").split("|");
    expect(row.slice(0, 6)).toEqual([id.slice(0, 12), "front", "bridge", "local", "false", "false"]);
    // the CLI prints a map: any order
    expect(row[6]!.split(",").sort()).toEqual(["team=a", "tier=front"]);
    expect(ok("network", "ls", "--filter", "name=dual", "--format", "{{.IPv6}}")).toBe("true");
    const bad = docker("network", "ls", "--filter", "nosuch=1");
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("invalid filter");
  });

  test("errors: duplicate (409), overlap (403), unknown (404), in use (403), bad body (400); docker exits 1", async () => {
    const cases: [string[], string][] = [
      [["network", "create", "front"], "network with name front already exists"],
      [["network", "create", "--subnet", "10.250.0.0/16", "ov"], "Pool overlaps with other one on this address space"],
      [["network", "inspect", "nosuch"], "network nosuch not found"],
      [["network", "rm", "nosuch"], "network nosuch not found"],
      [["network", "create", "-d", "nosuchdriver", "x"], "unknown network driver"],
      [["network", "create", "--subnet", "10.253.0.0/24", "--gateway", "10.253.0.0", "x"], "is the network address of 10.253.0.0/24"],
      [["network", "rm", "bridge"], "pre-defined network"],
    ];
    for (const [args, msg] of cases) {
      const r = docker(...args);
      expect(r.code).toBe(1);
      expect(r.err).toContain(msg);
    }
    // the statuses behind them, as Docker sends them
    const body = (o: unknown) => JSON.stringify(o);
    expect((await raw("POST", "/v1.41/networks/create", body({ Name: "front" }))).status).toBe(409);
    expect((await raw("POST", "/v1.41/networks/create", body({ Name: "ov", IPAM: { Config: [{ Subnet: "10.250.0.0/16" }] } }))).status).toBe(403);
    expect((await raw("GET", "/v1.41/networks/nosuch")).status).toBe(404);
    expect((await raw("DELETE", "/v1.41/networks/nosuch")).status).toBe(404);
    expect((await raw("POST", "/v1.41/networks/create", "{bad json")).status).toBe(400);
    expect((await raw("POST", "/v1.41/networks/create", body({ Name: "x", IPAM: { Config: "nope" } }))).status).toBe(400);
    expect((await raw("GET", `/v1.41/networks?filters=${encodeURIComponent('{"type":{"weird":true}}')}`)).status).toBe(400);
    const err = JSON.parse((await raw("DELETE", "/v1.41/networks/nosuch")).text);
    expect(err.message).toBe("network nosuch not found");
    expect(ls()).toEqual(["back", "bridge", "dual", "front", "host", "none", "v6auto"]);
  });

  test("docker-compose's create body (nulls in IPAM config, no Driver) and its label filter", async () => {
    const r = await raw("POST", "/v1.41/networks/create", JSON.stringify({
      Attachable: true,
      CheckDuplicate: true,
      IPAM: { Config: [{ AuxiliaryAddresses: null, Gateway: null, IPRange: null, Subnet: "10.205.0.0/24" }], Driver: "default", Options: null },
      Labels: { "com.docker.compose.network": "front", "com.docker.compose.project": "bt" },
      Name: "bt_front",
      Options: null,
      Internal: false,
    }));
    expect(r.status).toBe(201);
    expect(JSON.parse(r.text)).toEqual({ Id: expect.stringMatching(/^[0-9a-f]{64}$/), Warning: "" });
    const filtered = await raw("GET", `/v1.41/networks?filters=${encodeURIComponent('{"label":{"com.docker.compose.project=bt":true}}')}`);
    expect((JSON.parse(filtered.text) as Net[]).map((n) => n.Name)).toEqual(["bt_front"]);
    const n = inspect("bt_front");
    expect(n.Driver).toBe("bridge");
    expect(n.IPAM.Config).toEqual([{ Subnet: "10.205.0.0/24", Gateway: "10.205.0.1" }]);
    ok("network", "rm", "bt_front");
  });

  test("connect / disconnect a Berth container (berth run) with the docker CLI", () => {
    expect(d.cli("run", "-d", "--name", "app", "--network", "front", "sleep", "120").code).toBe(0);
    expect(d.cli("run", "-d", "--name", "peer", "--network", "back", "sleep", "120").code).toBe(0);
    ok("network", "connect", "--ip", "10.251.0.77", "--alias", "db", "back", "app");
    const back = inspect("back");
    const entries = Object.values(back.Containers);
    expect(entries.map((c) => c.Name).sort()).toEqual(["app", "peer"]);
    const app = entries.find((c) => c.Name === "app")!;
    expect(app.IPv4Address).toBe("10.251.0.77/24");
    expect(app.MacAddress).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(app.EndpointID).toMatch(/^[0-9a-f]{64}$/);
    // real packets over the new interface
    const [peer] = JSON.parse(d.cli("inspect", "peer").out);
    expect(reachable(peer.NetnsName, "10.251.0.77")).toBe(true);
    // twice: Docker's 403 message; the network is in use now
    const twice = docker("network", "connect", "back", "app");
    expect(twice.code).toBe(1);
    expect(twice.err).toContain("already exists in network back");
    const inUse = docker("network", "rm", "back");
    expect(inUse.code).toBe(1);
    expect(inUse.err).toContain("has active endpoints");
    expect(ls("--filter", "dangling=false")).toEqual(["back", "bridge", "front", "host", "none"]);
    ok("network", "disconnect", "back", "app");
    expect(Object.values(inspect("back").Containers).map((c) => c.Name)).toEqual(["peer"]);
    expect(canPing(peer.NetnsName, "10.251.0.77")).toBe(false);
    const again = docker("network", "disconnect", "back", "app");
    expect(again.code).toBe(1);
    expect(again.err).toContain("is not connected");
    const unknown = docker("network", "connect", "back", "nosuchcontainer");
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain("no such container");
    expect(d.cli("rm", "-f", "app", "peer").code).toBe(0);
  });

  test("prune removes unused user networks only; rm removes one", () => {
    expect(d.cli("run", "-d", "--name", "keep", "--network", "front", "sleep", "120").code).toBe(0);
    ok("network", "create", "--label", "drop=yes", "tmp1");
    expect(ok("network", "prune", "-f", "--filter", "label=drop=yes")).toContain("tmp1");
    expect(ls()).toEqual(["back", "bridge", "dual", "front", "host", "none", "v6auto"]);
    const pruned = ok("network", "prune", "-f");
    for (const n of ["back", "dual", "v6auto"]) expect(pruned).toContain(n);
    expect(pruned).not.toContain("front");
    expect(ls()).toEqual(["bridge", "front", "host", "none"]);
    expect(d.cli("rm", "-f", "keep").code).toBe(0);
    expect(ok("network", "rm", "front")).toBe("front");
    expect(ls()).toEqual(["bridge", "host", "none"]);
    // nothing left in the kernel either
    expect(ipJson<{ ifname: string }[]>(sb.host, "link", "show").map((l) => l.ifname).filter((n) => n.startsWith("br-") || n === "dk-front")).toEqual([]);
  });

  test.skipIf(!existsSync("/usr/bin/docker") || CLI === "/usr/bin/docker")("Debian's docker 20.10 CLI works too", () => {
    const r = run("/usr/bin/docker", "network", "create", "--subnet", "10.206.0.0/24", "--label", "cli=20.10", "old");
    expect(r.code).toBe(0);
    expect(run("/usr/bin/docker", "network", "ls", "--filter", "label=cli=20.10", "--format", "{{.Name}}").out).toBe("old");
    expect(run("/usr/bin/docker", "network", "rm", "old").code).toBe(0);
  });
});
