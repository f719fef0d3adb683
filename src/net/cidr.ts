/**
 * Shared "address/length" splitting for Prefix and IPNet, with errors in the
 * caller's words ("prefix", "interface address").
 */
import { invalid } from "../errors.ts";
import { IP } from "./ip.ts";
import { DECIMAL, HAS_WHITESPACE, quote, requireString } from "./internal.ts";
import { parseAddr } from "./parse-ip.ts";

export interface CidrWords {
  /** e.g. "prefix" */
  readonly what: string;
  /** code stem, e.g. "prefix" gives "prefix-invalid" and "prefix-length" */
  readonly code: string;
  /** an example shown when the "/length" is missing */
  readonly example: string;
}

export function splitCidr(s: string, w: CidrWords, field: string | undefined): { ip: IP; length: number } {
  requireString(s, w.what, `${w.code}-invalid`, field);
  const bad = (reason: string, code = `${w.code}-invalid`): never => {
    throw invalid(code, `invalid ${w.what} ${quote(s)}: ${reason}`, field);
  };
  if (s === "") bad("empty string");
  if (HAS_WHITESPACE.test(s)) bad("contains whitespace");
  const slash = s.indexOf("/");
  if (slash === -1) bad(`missing "/length" (e.g. "${w.example}")`);
  if (s.indexOf("/", slash + 1) !== -1) bad(`contains more than one "/"`);
  const addr = s.slice(0, slash);
  const len = s.slice(slash + 1);
  const r = parseAddr(addr);
  if (!r.ok) return bad(addr === "" ? "missing address before \"/\"" : `${quote(addr)} is not a valid ${r.what}: ${r.reason}`);
  const bits = r.family === 4 ? 32 : 128;
  if (len === "") bad(`missing length after "/"`, `${w.code}-length`);
  if (!DECIMAL.test(len)) bad(`length ${quote(len)} is not a decimal number`, `${w.code}-length`);
  if (len.length > 1 && len.startsWith("0")) bad(`length ${quote(len)} has a leading zero`, `${w.code}-length`);
  const length = len.length > 3 ? Number.POSITIVE_INFINITY : Number(len);
  if (length > bits) bad(`length ${len} exceeds ${bits} for IPv${r.family}`, `${w.code}-length`);
  return { ip: IP.fromBigInt(r.family, r.value), length };
}
