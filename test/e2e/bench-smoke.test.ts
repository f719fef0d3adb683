// The benchmark suite (bench/run.ts) at its tiny `--quick` scale, so it keeps working: every
// scenario either runs and reports numbers or says why it is not available on this machine,
// none fails, and the report, the raw JSON and real PNG charts are written. No timing is
// asserted (the numbers at this scale mean nothing); the full run is `bash scripts/bench.sh`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertRootUntouched, RUN_PREFIX } from "../harness/sandbox.ts";

assertRootUntouched();

const ROOT = join(import.meta.dir, "..", "..");
const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

interface Results {
  sections: { id: string; title: string; tables: { rows: unknown[][] }[]; charts: { name: string }[] }[];
  skipped: { id: string; reason: string }[];
}

describe("bench/run.ts --quick", () => {
  const out = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}bench-`));
  let code = -1;
  let stderr = "";
  beforeAll(() => {
    if (!existsSync(join(ROOT, "dist", "cni", "bridge"))) Bun.spawnSync(["bash", join(ROOT, "scripts", "build.sh")]);
    const r = Bun.spawnSync([process.execPath, join(ROOT, "bench", "run.ts"), "--quick", "--out", out], { stdout: "pipe", stderr: "pipe" });
    code = r.exitCode ?? -1;
    stderr = r.stderr.toString();
  }, 170_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  test("every scenario ran or was reported not available; none failed", () => {
    if (code !== 0) console.error(stderr);
    expect(code).toBe(0);
    const res = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as Results;
    expect(res.skipped.filter((s) => s.reason.startsWith("failed"))).toEqual([]);
    const ids = [...res.sections.map((s) => s.id), ...res.skipped.map((s) => s.id)].sort();
    expect(ids).toEqual(["berthd", "cni", "dataplane", "dns", "netavark", "ports"]);
    // the scenarios whose only needs are Berth itself always run
    for (const id of ["berthd", "dns"]) expect(res.sections.map((s) => s.id)).toContain(id);
  });

  test("the report holds a numeric table for every scenario that ran", () => {
    const md = readFileSync(join(out, "report.md"), "utf8");
    const res = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as Results;
    for (const s of res.sections) {
      expect(md).toContain(`## ${s.title}`);
      const cells = s.tables.flatMap((t) => t.rows.flat()).map(String);
      expect(cells.some((c) => /\d+\.\d/.test(c))).toBe(true);
    }
    const berthd = res.sections.find((s) => s.id === "berthd")!;
    // the connect latency cell of "0 attached" is a positive number
    const row0 = berthd.tables[0]!.rows.find((r) => r[0] === 0)!;
    expect(Number.parseFloat(String(row0[1]))).toBeGreaterThan(0);
  });

  test("every chart is a real PNG linked from the report", () => {
    const md = readFileSync(join(out, "report.md"), "utf8");
    const res = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as Results;
    const charts = res.sections.flatMap((s) => s.charts.map((c) => c.name));
    expect(charts.length).toBeGreaterThan(0);
    for (const c of charts) {
      const f = join(out, `${c}.png`);
      expect(existsSync(f)).toBe(true);
      expect([...readFileSync(f).subarray(0, 8)]).toEqual(PNG_MAGIC);
      expect(statSync(f).size).toBeGreaterThan(2000);
      expect(md).toContain(`(${c}.png)`);
    }
  });
});
