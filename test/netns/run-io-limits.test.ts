// berth run block I/O limits (Docker's --device-write-bps / --device-read-bps): the kernel's throttle files hold
// them and dd with O_DIRECT measures the limit within 10%.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { devNumber } from "../../src/dataplane/cgroup.ts";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { assertRootUntouched, createSandbox, type Sandbox } from "../harness/sandbox.ts";

assertRootUntouched();

/** The whole disk under a directory, as a /dev node, or undefined (tmpfs, overlay, no node). */
function diskOf(dir: string): string | undefined {
  const sys = `/sys/dev/block/${devNumber(statSync(dir).dev)}`;
  if (!existsSync(sys)) return undefined;
  let real = realpathSync(sys);
  if (existsSync(join(real, "partition"))) real = realpathSync(join(real, ".."));
  const node = `/dev/${basename(real)}`;
  return existsSync(node) && statSync(node).isBlockDevice() ? node : undefined;
}

/** Bytes per second from dd's summary line ("N bytes (...) copied, S s, ..."). */
function ddRate(out: string): number {
  const m = /(\d+) bytes .* copied, ([\d.]+) s/.exec(out);
  if (!m) throw new Error(`no dd summary in: ${out}`);
  return Number(m[1]) / Number(m[2]);
}

describe("berth run block I/O limits", () => {
  let sb: Sandbox;
  let d: TestDaemon;
  let disk: string | undefined;
  const MiB = 1024 * 1024;

  beforeAll(async () => {
    sb = createSandbox("io");
    d = await startDaemon(sb);
    disk = diskOf(sb.stateDir);
    expect(d.cli("network", "create", "--subnet", "10.252.7.0/24", "ionet").code).toBe(0);
  });
  afterAll(async () => {
    d.cli("rm", "-f", "io1");
    await d.stop();
    await sb.cleanup();
  });

  test("a write throttle holds within 10% (dd, O_DIRECT) and is what the kernel's file says", () => {
    if (!disk) {
      console.warn(`skipped: ${sb.stateDir} is not on a block device with a /dev node`);
      return;
    }
    const file = join(sb.stateDir, "io.bin");
    const dd = ["dd", "if=/dev/zero", `of=${file}`, "bs=256k", "count=24", "oflag=direct"];
    const free = d.cli("run", "--rm", "--network", "ionet", "--", ...dd);
    expect(free.code).toBe(0);
    const unlimited = ddRate(free.out + free.err);
    const limit = 2 * MiB;
    expect(unlimited).toBeGreaterThan(2 * limit); // otherwise the disk itself, not the throttle, would be measured
    const r = d.cli("run", "-d", "--name", "io1", "--network", "ionet", "--device-write-bps", `${disk}:2m`, "--", "sh", "-c", `${dd.join(" ")} 2>&1; sleep 60`);
    expect(r.code).toBe(0);
    const [ctr] = JSON.parse(d.cli("inspect", "io1").out);
    const cg = d.cgroupParent;
    const name = `${d.netnsPrefix}${ctr.Id.slice(0, 12)}`;
    const v1 = `/sys/fs/cgroup/blkio/${cg}/${name}/blkio.throttle.write_bps_device`;
    const v2 = `/sys/fs/cgroup/${cg}/${name}/io.max`;
    const kernel = existsSync(v1) ? readFileSync(v1, "utf8") : readFileSync(v2, "utf8");
    expect(kernel).toMatch(new RegExp(`\\d+:\\d+ (wbps=)?${limit}`));
    let out = "";
    for (let i = 0; i < 200 && !/copied/.test(out); i++) {
      Bun.sleepSync(100);
      out = d.cli("logs", "io1").out;
    }
    const rate = ddRate(out);
    expect(rate).toBeGreaterThan(limit * 0.9);
    expect(rate).toBeLessThan(limit * 1.1);
  }, 60_000);

  test("bad device limits are refused with a clear error and nothing is created", () => {
    const before = d.cli("ps", "-a", "-q").out;
    const cases: [string[], RegExp][] = [
      [["--device-write-bps", "/dev/null:1m"], /not a block device/],
      [["--device-write-bps", "/nonexistent:1m"], /does not exist/],
      [["--device-read-bps", "/dev/vda"], /DEVICE:RATE/],
      [["--device-read-iops", `${disk ?? "/dev/vda"}:0`], /positive integer|no I\/O limit|does not exist/],
      [["--device-write-bps", "/dev/vda:lots"], /invalid size/],
    ];
    for (const [flags, msg] of cases) {
      const r = d.cli("run", "--network", "ionet", ...flags, "--", "true");
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
    }
    expect(d.cli("ps", "-a", "-q").out).toBe(before);
  });
});
