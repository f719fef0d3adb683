/**
 * The ipvlan CNI plugin needs a kernel with ipvlan, which this machine's lacks:
 * this test boots one VM (/work/shared/tools/run-in-vm.sh, a stock Debian
 * kernel under QEMU) for the whole of test/vm/cni-ipvlan.test.ts and passes
 * when every test there passed. Berth's plugins run in the VM as the compiled
 * multi-call binary, built here first (fast start-up under emulation).
 * Skips with a message only when qemu cannot be installed.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertRootUntouched } from "../harness/sandbox.ts";

const ROOT = join(import.meta.dir, "..", "..");
const RUN_IN_VM = "/work/shared/tools/run-in-vm.sh";

assertRootUntouched();

function qemuAvailable(): { ok: boolean; why: string } {
  if (!Bun.file(RUN_IN_VM).size) return { ok: false, why: `${RUN_IN_VM} is missing` };
  if (Bun.which("qemu-system-x86_64")) return { ok: true, why: "" };
  // run-in-vm.sh installs what is missing; --prepare does only that
  const r = Bun.spawnSync([RUN_IN_VM, "--prepare"], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode === 0 && Bun.which("qemu-system-x86_64")) return { ok: true, why: "" };
  return { ok: false, why: `qemu cannot be installed: ${r.stderr.toString().trim().split("\n").slice(-3).join(" | ")}` };
}

const q = qemuAvailable();
if (!q.ok) console.error(`[cni-ipvlan] SKIPPED: ${q.why}`);

// not named with the harness prefix: the preload inside the VM would remove it as a dead run's leftover
const bin = mkdtempSync(join(tmpdir(), "berth-vmbin-"));
afterAll(() => rmSync(bin, { recursive: true, force: true }));

test.skipIf(!q.ok)(
  "ipvlan plugin tests pass inside a VM with an ipvlan-capable kernel",
  async () => {
    const b = Bun.spawnSync(
      [process.execPath, "build", "--compile", "--minify", "--bytecode", join(ROOT, "src", "main.ts"), "--outfile", join(bin, "berth")],
      { stdout: "pipe", stderr: "pipe", cwd: ROOT },
    );
    expect(b.exitCode).toBe(0);
    for (const p of ["ipvlan", "host-local", "loopback"]) symlinkSync("berth", join(bin, p));
    const p = Bun.spawn([RUN_IN_VM, "-t", "900", "--", process.execPath, "test", "--timeout", "240000", "test/vm/cni-ipvlan.test.ts"], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, BERTH_CNI_BIN: bin },
    });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    const text = `${out}\n${err}`;
    if (code !== 0) console.error(text.split("\n").slice(-80).join("\n"));
    const pass = Number(/^\s*(\d+) pass$/m.exec(text)?.[1] ?? 0);
    const fail = Number(/^\s*(\d+) fail$/m.exec(text)?.[1] ?? -1);
    expect({ code, fail, skipped: /skipped: this kernel has no ipvlan/.test(text) }).toEqual({ code: 0, fail: 0, skipped: false });
    console.error(`[cni-ipvlan] inside the VM: ${pass} pass, ${fail} fail`);
    expect(pass).toBeGreaterThanOrEqual(6);
  },
  1_000_000,
);
