/**
 * The CNI operation log: every plugin process appends one line per operation
 * (plugin, verb, duration, CNI error code) to a shared file, which berthd reads
 * for its `/metrics`. The plugins run without a daemon and share no memory, so an
 * append-only file is their counter: one `O_APPEND` write of a short line is
 * atomic between processes and costs tens of microseconds.
 *
 * Path: `BERTH_CNI_OPLOG` (empty = off), default `/run/berth/cni-ops.log`. The
 * plugins only append to a log that exists (berthd creates it when it starts):
 * without a reader nothing is written anywhere, and recording never fails an
 * operation.
 */
import { closeSync, constants, openSync, writeSync } from "node:fs";

export const DEFAULT_OPLOG = "/run/berth/cni-ops.log";

export interface OpRecord {
  plugin: string;
  verb: string;
  seconds: number;
  /** 0 for success, else the CNI error code. */
  code: number;
}

export function oplogPath(env: Record<string, string | undefined>): string | undefined {
  const p = env.BERTH_CNI_OPLOG;
  if (p === undefined) return DEFAULT_OPLOG;
  return p === "" ? undefined : p;
}

/** The CNI error code of a failed plugin's output (its error JSON), 999 when unreadable. */
export function errorCodeOf(stdout: string): number {
  const m = /"code"\s*:\s*(\d+)/.exec(stdout);
  return m ? Number(m[1]) : 999;
}

export function recordOp(path: string | undefined, r: OpRecord): void {
  if (!path) return;
  const line = `${JSON.stringify({ plugin: r.plugin, verb: r.verb, s: Number(r.seconds.toFixed(6)), code: r.code })}\n`;
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND); // no O_CREAT: only where berthd reads
    writeSync(fd, line);
  } catch {
    // metrics are best effort: no log (no berthd) must not fail a CNI operation
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Creates the log if it is missing (berthd, at start), so that plugins start recording. */
export function ensureOplog(path: string): void {
  closeSync(openSync(path, "a", 0o644));
}

/** Parses one line; undefined for anything that is not a well-formed record. */
export function parseOpLine(line: string): OpRecord | undefined {
  try {
    const j = JSON.parse(line) as { plugin?: unknown; verb?: unknown; s?: unknown; code?: unknown };
    if (typeof j.plugin !== "string" || typeof j.verb !== "string" || typeof j.s !== "number" || typeof j.code !== "number") return undefined;
    return { plugin: j.plugin, verb: j.verb, seconds: j.s, code: j.code };
  } catch {
    return undefined;
  }
}
