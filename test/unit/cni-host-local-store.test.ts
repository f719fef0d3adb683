// host-local's lease store: a store a machine crash left unreadable is discarded only when it predates this boot.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { plugin } from "../../src/cni/plugins/host-local.ts";
import { runPlugin } from "../../src/cni/skel.ts";

const root = mkdtempSync(join(tmpdir(), "berth-hl-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function add(dataDir: string) {
  const conf = { cniVersion: "1.1.0", name: "hlnet", type: "host-local", ipam: { type: "host-local", subnet: "10.9.0.0/24", dataDir } };
  const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: "/proc/self/ns/net", CNI_IFNAME: "eth0", CNI_PATH: "/nonexistent" };
  return runPlugin(plugin, env, JSON.stringify({ ...conf, ...conf.ipam, type: "host-local" }));
}

function garbageStore(dataDir: string, mtimeSec: number): string {
  const dir = join(dataDir, "berth");
  mkdirSync(dir, { recursive: true });
  const db = join(dir, "berth.db");
  writeFileSync(db, "this is not an SQLite database, a crash left it like this".repeat(100));
  utimesSync(db, mtimeSec, mtimeSec);
  return dir;
}

describe("host-local lease store", () => {
  test("allocates with the fast (no fsync) store", async () => {
    const out = await add(join(root, "ok"));
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout).ips[0].address).toBe("10.9.0.2/24");
  });

  test("an unreadable store written before this boot is moved aside and allocation goes on", async () => {
    const dataDir = join(root, "old");
    const dir = garbageStore(dataDir, 1000); // 1970: before any boot
    const out = await add(dataDir);
    expect(out.exitCode).toBe(0);
    expect(readdirSync(dir).some((f) => f.startsWith("berth.db.corrupt-"))).toBe(true);
  });

  test("an unreadable store written in this boot is an I/O error, left as it is", async () => {
    const dataDir = join(root, "new");
    const dir = garbageStore(dataDir, Date.now() / 1000);
    const out = await add(dataDir);
    expect(out.exitCode).not.toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 5 });
    expect(JSON.parse(out.stdout).msg).toContain("cannot open lease store");
    expect(existsSync(join(dir, "berth.db"))).toBe(true);
    expect(readdirSync(dir).some((f) => f.startsWith("berth.db.corrupt-"))).toBe(false);
  });
});
