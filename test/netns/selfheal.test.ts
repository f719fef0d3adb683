// Self-healing: berthd repairs Berth's own kernel objects within 2 s and leaves everything else alone.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { assertRootUntouched, canPing, createSandbox, ipJson, nftJson, type Sandbox, reachable } from "../harness/sandbox.ts";

assertRootUntouched();

function sh(...argv: string[]): number {
  return Bun.spawnSync(argv, { stdout: "ignore", stderr: "ignore" }).exitCode ?? -1;
}

async function within(ms: number, check: () => boolean): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (check()) return performance.now() - t0;
    await Bun.sleep(50);
  }
  throw new Error(`not repaired within ${ms} ms`);
}

interface Ctr {
  netns: string;
  ip: string;
}

describe("self-healing dataplane", () => {
  let sb: Sandbox;
  let d: TestDaemon;
  let a: Ctr;
  let b: Ctr;
  let bridge: string;
  const repairLines = () => d.logs().split("\n").filter((l) => l.includes('"msg":"repair"') && l.includes('"result":"repaired"'));
  const hasTable = () => sh("ip", "netns", "exec", sb.host, "nft", "list", "table", "inet", "berth") === 0;

  beforeAll(async () => {
    sb = createSandbox("heal");
    d = await startDaemon(sb);
    expect(d.cli("network", "create", "--subnet", "10.251.0.0/24", "healnet").code).toBe(0);
    const info = (n: string): Ctr => {
      const [c] = JSON.parse(d.cli("inspect", n).out);
      return { netns: c.NetnsName, ip: (c.Networks[0].Addresses[0] as string).split("/")[0]! };
    };
    expect(d.cli("run", "-d", "--network", "healnet", "--name", "ha", "-p", "9090:9090", "sleep", "120").code).toBe(0);
    expect(d.cli("run", "-d", "--network", "healnet", "--name", "hb", "sleep", "120").code).toBe(0);
    a = info("ha");
    b = info("hb");
    bridge = JSON.parse(d.cli("network", "inspect", "healnet").out)[0].BerthDriverState.bridge;
    expect(reachable(a.netns, b.ip)).toBe(true);
  });

  afterAll(async () => {
    d.cli("rm", "-f", "ha", "hb");
    await d.stop();
    await sb.cleanup();
  });

  test("nft flush ruleset: Berth's table is back within 2 s, with its elements", async () => {
    // berthd may put the table back before a spawned `nft list` could see it gone,
    // so the proof that the flush happened and was undone is the repair it logs
    const before = repairLines().length;
    expect(sh("ip", "netns", "exec", sb.host, "nft", "flush", "ruleset")).toBe(0);
    const took = await within(2000, () => repairLines().length > before && hasTable());
    const map = nftJson(sb.host, "list", "map", "inet", "berth", "ports4").nftables.find((o) => "map" in o) as { map: { elem?: unknown[] } };
    expect(map.map.elem?.length).toBe(1);
    expect(took).toBeLessThan(2000);
  });

  test("a foreign table and a foreign link are never touched by repairs", async () => {
    expect(sh("ip", "netns", "exec", sb.host, "nft", "add", "table", "inet", "foreign")).toBe(0);
    expect(sh("ip", "netns", "exec", sb.host, "nft", "add", "chain", "inet", "foreign", "c")).toBe(0);
    expect(sh("ip", "-n", sb.host, "link", "add", "foreignbr", "type", "bridge")).toBe(0);
    // make Berth repair something, then check the foreign objects are as they were
    expect(sh("ip", "netns", "exec", sb.host, "nft", "delete", "table", "inet", "berth")).toBe(0);
    await within(2000, hasTable);
    expect(sh("ip", "netns", "exec", sb.host, "nft", "list", "chain", "inet", "foreign", "c")).toBe(0);
    const fb = ipJson<{ ifname: string; flags: string[] }[]>(sb.host, "link", "show", "dev", "foreignbr")[0]!;
    expect(fb.flags.includes("UP")).toBe(false);
  });

  test("a deleted bridge is recreated with its gateway, and containers talk again", async () => {
    expect(sh("ip", "-n", sb.host, "link", "del", bridge)).toBe(0);
    await within(2500, () => canPing(a.netns, b.ip));
    const addrs = ipJson<{ addr_info: { local: string }[] }[]>(sb.host, "addr", "show", "dev", bridge)[0]!;
    expect(addrs.addr_info.map((x) => x.local)).toContain("10.251.0.1");
  });

  test("a container's deleted interface is rebuilt with its address and route", async () => {
    expect(sh("ip", "-n", b.netns, "link", "del", "eth0")).toBe(0);
    await within(2500, () => canPing(a.netns, b.ip));
    const routes = ipJson<{ dst: string; gateway?: string }[]>(b.netns, "route", "show");
    expect(routes.find((r) => r.dst === "default")?.gateway).toBe("10.251.0.1");
  });

  test("the daemon logged each repair as a JSON line", async () => {
    await d.stop();
    const log = d.logs();
    const repairs = log
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg: string; object: string; result: string; op: string })
      .filter((r) => r.msg === "repair");
    expect(repairs.filter((r) => r.result === "repaired" && r.op === "reconcile").length).toBeGreaterThanOrEqual(4);
    expect(repairs.some((r) => r.object.startsWith("network healnet"))).toBe(true);
    expect(repairs.some((r) => r.object.startsWith("endpoint eth0 of hb"))).toBe(true);
    d = await startDaemon(sb); // afterAll removes the containers through a live daemon
  });
});
