/**
 * CNI operation metrics for berthd: reads the plugins' operation log
 * (src/cni/oplog.ts) incrementally at each scrape and folds it into counters
 * and a latency histogram. When the log grows past `rotateBytes` it is renamed
 * to `<path>.1` and finished at the next scrape (a plugin that opened the old
 * file just before the rename still lands its line there), then removed.
 */
import { closeSync, openSync, readSync, renameSync, statSync, unlinkSync } from "node:fs";
import { parseOpLine } from "../cni/oplog.ts";
import type { Registry } from "./metrics.ts";

interface Cursor {
  path: string;
  ino: number;
  offset: number;
  /** bytes of an incomplete last line carried to the next read */
  partial: string;
}

export class CniOpReader {
  private cur: Cursor | undefined;
  private retiring: Cursor | undefined;

  constructor(
    private readonly path: string,
    private readonly onRecord: (line: string) => void,
    private readonly rotateBytes = 8 * 1024 * 1024,
  ) {}

  /** Reads everything appended since the last call. */
  poll(): void {
    if (this.retiring) {
      this.drain(this.retiring);
      try {
        unlinkSync(this.retiring.path);
      } catch {}
      this.retiring = undefined;
    }
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(this.path);
    } catch {
      this.cur = undefined;
      return;
    }
    if (!this.cur || this.cur.ino !== st.ino || st.size < this.cur.offset) {
      this.cur = { path: this.path, ino: st.ino, offset: 0, partial: "" };
    }
    this.drain(this.cur);
    if (this.cur.offset >= this.rotateBytes) {
      const old = `${this.path}.1`;
      try {
        renameSync(this.path, old);
        this.retiring = { ...this.cur, path: old };
        this.cur = undefined;
      } catch {}
    }
  }

  private drain(c: Cursor): void {
    let fd: number;
    try {
      fd = openSync(c.path, "r");
    } catch {
      return;
    }
    try {
      const buf = Buffer.alloc(64 * 1024);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, c.offset);
        if (n <= 0) break;
        c.offset += n;
        const text = c.partial + buf.subarray(0, n).toString("utf8");
        const lines = text.split("\n");
        c.partial = lines.pop() ?? "";
        for (const l of lines) if (l) this.onRecord(l);
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** Registers `berth_cni_operations_total` and `berth_cni_operation_duration_seconds`, fed from the log at `path`. */
export function registerCniMetrics(r: Registry, path: string): CniOpReader {
  const ops = r.counter("berth_cni_operations_total", "CNI plugin operations by plugin, verb and result (ok or the CNI error code)");
  const latency = r.histogram("berth_cni_operation_duration_seconds", "CNI plugin operation latency by plugin and verb", [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
  ]);
  const errors = r.counter("berth_cni_operation_errors_total", "Failed CNI plugin operations by plugin, verb and CNI error code");
  const reader = new CniOpReader(path, (line) => {
    const rec = parseOpLine(line);
    if (!rec) return;
    const result = rec.code === 0 ? "ok" : String(rec.code);
    ops.inc({ plugin: rec.plugin, verb: rec.verb, result });
    latency.observe({ plugin: rec.plugin, verb: rec.verb }, rec.seconds);
    if (rec.code !== 0) errors.inc({ plugin: rec.plugin, verb: rec.verb, code: String(rec.code) });
  });
  r.beforeScrape(async () => reader.poll());
  return reader;
}
