/** Identifiers and timestamps for records. */
import { randomBytes } from "node:crypto";

/** A new random 64-hex-character id (Docker's format). */
export function newId(): string {
  return randomBytes(32).toString("hex");
}

export function isId(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

export function nowIso(): string {
  return new Date().toISOString();
}
