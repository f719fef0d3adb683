// berthd + berth CLI end to end, inside a sandbox host namespace.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { assertRootUntouched, createSandbox, ipJson, type Sandbox, reachable } from "../harness/sandbox.ts";

assertRootUntouched();

describe("berthd + berth CLI", () => {
  let sb: Sandbox;
  let d: TestDaemon;
  beforeAll(async () => {
    sb = createSandbox("cli");
    d = await startDaemon(sb);
  });
  afterAll(async () => {
    for (const id of d.cli("ps", "-a", "-q").out.split("\n").filter(Boolean)) d.cli("rm", "-f", id);
    await d.stop();
    await sb.cleanup();
  });

  test("the API socket is root-only (0600, owned by root)", () => {
    const st = statSync(d.socket);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(0);
  });

  test("predefined networks exist and cannot be removed", () => {
    const ls = d.cli("network", "ls");
    expect(ls.code).toBe(0);
    for (const n of ["bridge", "host", "none"]) expect(ls.out).toContain(n);
    const rm = d.cli("network", "rm", "bridge");
    expect(rm.code).not.toBe(0);
    expect(rm.err).toContain("pre-defined network");
  });

  test("network create / inspect / ls --filter / rm", () => {
    const cr = d.cli("network", "create", "--subnet", "10.250.0.0/24", "--ip-range", "10.250.0.128/25", "--gateway", "10.250.0.1",
      "--label", "team=a", "-o", "com.docker.network.driver.mtu=1400", "front");
    expect(cr.code).toBe(0);
    expect(cr.out.trim()).toMatch(/^[0-9a-f]{64}$/);
    const [n] = JSON.parse(d.cli("network", "inspect", "front").out);
    expect(n.Name).toBe("front");
    expect(n.IPAM.Config[0]).toEqual({ Subnet: "10.250.0.0/24", IPRange: "10.250.0.128/25", Gateway: "10.250.0.1" });
    expect(n.Options["com.docker.network.driver.mtu"]).toBe("1400");
    const bridge = n.BerthDriverState.bridge as string;
    const link = ipJson<{ mtu: number }[]>(sb.host, "link", "show", "dev", bridge)[0]!;
    expect(link.mtu).toBe(1400);
    const filtered = d.cli("network", "ls", "--filter", "label=team=a", "-q").out.trim().split("\n");
    expect(filtered).toEqual([n.Id.slice(0, 12)]);
    expect(d.cli("network", "ls", "--filter", "label=team=b", "-q").out.trim()).toBe("");
  });

  test("bad input: clear error, non-zero exit, nothing created", () => {
    const before = d.cli("network", "ls", "-q").out;
    const cases: [string[], string][] = [
      [["network", "create", "--subnet", "10.0.0.0/33", "x1"], "10.0.0.0/33"],
      [["network", "create", "-d", "nosuch", "x2"], "unknown network driver"],
      [["network", "create", "--subnet", "10.250.0.0/16", "x3"], "Pool overlaps"],
      [["network", "create", "front"], "already exists"],
      [["network", "create", "bad/name"], "bad/name"],
      [["network", "create", "-o", "com.docker.network.bridge.name=abcdefghijklmnopq", "x4"], "15"],
      [["network", "inspect", "nosuch"], "not found"],
    ];
    for (const [args, msg] of cases) {
      const r = d.cli(...args);
      expect(r.code).not.toBe(0);
      expect(r.err).toContain(msg);
    }
    expect(d.cli("network", "ls", "-q").out).toBe(before);
  });

  test("run, ps, exec, ping between containers, rm", () => {
    const a = d.cli("run", "-d", "--network", "front", "--name", "a1", "--memory", "64m", "--pids", "50", "--", "sleep", "60");
    expect(a.code).toBe(0);
    const b = d.cli("run", "-d", "--network", "front", "--name", "b1", "sleep", "60");
    expect(b.code).toBe(0);
    const ps = d.cli("ps");
    expect(ps.out).toContain("a1");
    expect(ps.out).toContain("b1");
    const [bi] = JSON.parse(d.cli("inspect", "b1").out);
    const bIp = (bi.Networks[0].Addresses[0] as string).split("/")[0]!;
    // dynamic addresses come from the ip-range
    expect(bIp.startsWith("10.250.0.")).toBe(true);
    expect(Number(bIp.split(".")[3])).toBeGreaterThanOrEqual(128);
    const ex = d.cli("exec", "a1", "--", "ping", "-c", "1", "-W", "2", bIp);
    expect(ex.code).toBe(0);
    const [ai] = JSON.parse(d.cli("inspect", "a1").out);
    expect(reachable(bi.NetnsName, (ai.Networks[0].Addresses[0] as string).split("/")[0]!)).toBe(true);
    expect(d.cli("rm", "a1").code).not.toBe(0); // running: needs -f
    expect(d.cli("rm", "-f", "a1", "b1").code).toBe(0);
    expect(d.cli("ps", "-a", "-q").out.trim()).toBe("");
    expect(sb.host && ipJson<{ ifname: string }[]>(sb.host, "link", "show").filter((l) => l.ifname.startsWith("vb"))).toEqual([]);
  });

  test("run in the foreground returns the command's exit code and output; --rm removes it", () => {
    const r = d.cli("run", "--rm", "--network", "none", "--", "sh", "-c", "echo hello-from-inside; ip -o link | wc -l; exit 3");
    expect(r.code).toBe(3);
    expect(r.out).toContain("hello-from-inside");
    expect(r.out.trim().split("\n").at(-1)!.trim()).toBe("1"); // only loopback on the none network
    expect(d.cli("ps", "-a", "-q").out.trim()).toBe("");
  });

  test("network rm refuses a network in use, then succeeds once empty", () => {
    expect(d.cli("run", "-d", "--network", "front", "--name", "c1", "sleep", "60").code).toBe(0);
    const rm = d.cli("network", "rm", "front");
    expect(rm.code).not.toBe(0);
    expect(rm.err).toContain("has active endpoints");
    expect(d.cli("rm", "-f", "c1").code).toBe(0);
    expect(d.cli("network", "rm", "front").code).toBe(0);
    expect(d.cli("network", "inspect", "front").code).not.toBe(0);
  });
});

describe("berth demo", () => {
  test("runs in its own sandbox, prints the matrix and cleans up", () => {
    const before = Bun.spawnSync(["ip", "netns", "list"]).stdout.toString();
    const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/../../src/main.ts`, "demo"], { stdout: "pipe", stderr: "pipe" });
    const out = r.stdout.toString();
    expect(out).toContain("connectivity matrix");
    expect(out).toContain("all checks passed");
    expect(r.exitCode).toBe(0);
    expect(Bun.spawnSync(["ip", "netns", "list"]).stdout.toString()).toBe(before);
  }, 120_000);
});
