// The CNI operation log: plugins append, berthd reads incrementally across partial lines and rotation.
import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureOplog, errorCodeOf, oplogPath, parseOpLine, recordOp } from "../../src/cni/oplog.ts";
import { CniOpReader } from "../../src/observe/cni-metrics.ts";

const dir = mkdtempSync(join(tmpdir(), "berth-oplog-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("CNI operation log", () => {
  test("path from the environment: unset = default, empty = off", () => {
    expect(oplogPath({})).toBe("/run/berth/cni-ops.log");
    expect(oplogPath({ BERTH_CNI_OPLOG: "" })).toBeUndefined();
    expect(oplogPath({ BERTH_CNI_OPLOG: "/x/y" })).toBe("/x/y");
  });

  test("error codes come from the plugin's error JSON", () => {
    expect(errorCodeOf('{"cniVersion":"1.1.0","code":7,"msg":"x"}')).toBe(7);
    expect(errorCodeOf("garbage")).toBe(999);
  });

  test("without a log file (no berthd) nothing is recorded, nothing is created, nothing throws", () => {
    const missing = join(dir, "none.log");
    expect(() => recordOp(missing, { plugin: "bridge", verb: "ADD", seconds: 0.01, code: 0 })).not.toThrow();
    expect(existsSync(missing)).toBe(false);
    expect(() => recordOp(join(dir, "no", "such", "file"), { plugin: "bridge", verb: "ADD", seconds: 0.01, code: 0 })).not.toThrow();
  });

  test("lines round-trip; malformed lines are skipped", () => {
    const p = join(dir, "rt.log");
    ensureOplog(p);
    recordOp(p, { plugin: "bridge", verb: "ADD", seconds: 0.0123456789, code: 0 });
    const seen: string[] = [];
    new CniOpReader(p, (l) => seen.push(l)).poll();
    expect(parseOpLine(seen[0]!)).toEqual({ plugin: "bridge", verb: "ADD", seconds: 0.012346, code: 0 });
    expect(parseOpLine("{not json")).toBeUndefined();
    expect(parseOpLine('{"plugin":1}')).toBeUndefined();
  });

  test("the reader reads only what is new, waits for a line to be complete, and survives rotation", () => {
    const p = join(dir, "inc.log");
    const seen: string[] = [];
    const r = new CniOpReader(p, (l) => seen.push(l), 64);
    r.poll(); // no file yet
    appendFileSync(p, "a\nb\npar");
    r.poll();
    expect(seen).toEqual(["a", "b"]);
    appendFileSync(p, "tial\n");
    r.poll();
    expect(seen).toEqual(["a", "b", "partial"]);
    appendFileSync(p, `${"x".repeat(70)}\n`); // past 64 bytes: rotated after reading
    r.poll();
    expect(existsSync(`${p}.1`)).toBe(true);
    appendFileSync(`${p}.1`, "late\n"); // a plugin that opened the old file just before the rename
    appendFileSync(p, "new\n");
    r.poll();
    expect(seen.slice(3)).toEqual(["x".repeat(70), "late", "new"]);
    expect(existsSync(`${p}.1`)).toBe(false);
  });
});
