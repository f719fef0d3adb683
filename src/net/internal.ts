/**
 * Small helpers shared by the src/net modules. Not re-exported from index.ts.
 */
import { invalid } from "../errors.ts";

const MAX_QUOTED = 200;

/** Quotes a user-supplied value for an error message (escapes control characters, truncates huge inputs). */
export function quote(s: string): string {
  return JSON.stringify(s.length > MAX_QUOTED ? `${s.slice(0, MAX_QUOTED)}…` : s);
}

/** Describes a value of unknown type, for "expected a string" errors. */
export function describeType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v;
}

/**
 * Guards public entry points against non-string input (values that come straight
 * from JSON are only typed at compile time).
 */
export function requireString(v: unknown, what: string, code: string, field: string | undefined): string {
  if (typeof v !== "string") throw invalid(code, `invalid ${what}: expected a string, got ${describeType(v)}`, field);
  return v;
}

/** Converts a bigint-or-number argument to bigint; numbers must be safe integers. */
export function toBigInt(n: bigint | number, code: string, what: string): bigint {
  if (typeof n === "bigint") return n;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) {
    throw invalid(code, `${what} must be an integer, got ${String(n)}`);
  }
  return BigInt(n);
}

export const DECIMAL = /^[0-9]+$/;
export const HAS_WHITESPACE = /\s/;
