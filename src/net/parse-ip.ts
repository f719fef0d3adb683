/**
 * The IP address grammar, free of the IP class so that Prefix/IPNet/port
 * mappings can report errors in their own words. Returns a reason instead of throwing.
 */
import type { Family } from "./ip.ts";
import { DECIMAL, HAS_WHITESPACE, quote } from "./internal.ts";

export type AddrResult =
  | { readonly ok: true; readonly family: Family; readonly value: bigint }
  | { readonly ok: false; readonly what: string; readonly reason: string };

const fail = (what: string, reason: string): AddrResult => ({ ok: false, what, reason });
const V4 = "IPv4 address";
const V6 = "IPv6 address";
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Strict dotted quad: exactly 4 decimal octets 0-255, no leading zeros. Returns the value or a reason. */
export function parseV4(s: string): bigint | string {
  const parts = s.split(".");
  if (parts.length !== 4) return `expected 4 decimal octets separated by ".", got ${parts.length}`;
  let v = 0;
  for (const [i, p] of parts.entries()) {
    if (p === "") return `octet ${i + 1} is empty`;
    if (!DECIMAL.test(p)) return `octet ${quote(p)} is not a decimal number`;
    if (p.length > 1 && p.startsWith("0")) return `octet ${quote(p)} has a leading zero`;
    const n = p.length > 3 ? Number.POSITIVE_INFINITY : Number(p);
    if (n > 255) return `octet ${p} is out of range 0-255`;
    v = v * 256 + n;
  }
  return BigInt(v);
}

function parseGroups(groups: readonly string[], out: number[]): string | undefined {
  for (const g of groups) {
    if (g === "") return `has an empty group (stray ":")`;
    if (!HEX_GROUP.test(g)) return `group ${quote(g)} is not 1-4 hex digits`;
    out.push(Number.parseInt(g, 16));
  }
  return undefined;
}

/** RFC 4291 section 2.2 text forms. Zone ids and brackets are rejected. */
export function parseV6(s: string): bigint | string {
  if (s.startsWith("[") || s.endsWith("]")) return "remove the surrounding brackets";
  if (s.includes("%")) return "zone identifiers (the %... suffix) are not supported";
  if (s.includes(":::")) return `contains ":::"`;
  const dbl = s.indexOf("::");
  if (dbl !== -1 && s.indexOf("::", dbl + 1) !== -1) return `"::" may appear only once`;
  const split = (t: string): string[] => (t === "" ? [] : t.split(":"));
  const head = dbl === -1 ? split(s) : split(s.slice(0, dbl));
  const tail = dbl === -1 ? [] : split(s.slice(dbl + 2));

  // An embedded IPv4 address may only be the very last thing in the address.
  const lastList = dbl === -1 ? head : tail;
  let v4: bigint | undefined;
  const last = lastList.at(-1);
  if (last?.includes(".")) {
    const r = parseV4(last);
    if (typeof r === "string") return `embedded IPv4 part ${quote(last)}: ${r}`;
    v4 = r;
    lastList.pop();
  }
  if ([...head, ...tail].some((g) => g.includes("."))) return "an embedded IPv4 address must come last";

  const headWords: number[] = [];
  const tailWords: number[] = [];
  const bad = parseGroups(head, headWords) ?? parseGroups(tail, tailWords);
  if (bad !== undefined) return bad;

  const units = head.length + tail.length + (v4 === undefined ? 0 : 2);
  if (dbl === -1 && units !== 8) {
    return units > 8
      ? `has ${units} groups of 16 bits; an IPv6 address has 8`
      : `has ${units} groups of 16 bits; expected 8 (or use "::" for a run of zeros)`;
  }
  if (dbl !== -1 && units > 7) return `has ${units} groups of 16 bits plus "::"; at most 7 are allowed with "::"`;
  const words = [...headWords, ...new Array<number>(8 - units).fill(0), ...tailWords];

  let v = 0n;
  for (const w of words) v = (v << 16n) | BigInt(w);
  if (v4 !== undefined) v = (v << 32n) | v4;
  return v;
}

/** Parses either family; on failure says which family it looked like and why it is wrong. */
export function parseAddr(s: string): AddrResult {
  if (s === "") return fail("IP address", "empty string");
  if (HAS_WHITESPACE.test(s)) return fail("IP address", "contains whitespace");
  if (s.includes(":") || s.startsWith("[")) {
    const r = parseV6(s);
    return typeof r === "string" ? fail(V6, r) : { ok: true, family: 6, value: r };
  }
  if (/^[0-9.]+$/.test(s) || (s.includes(".") && /^[0-9]/.test(s))) {
    const r = parseV4(s);
    return typeof r === "string" ? fail(V4, r) : { ok: true, family: 4, value: r };
  }
  return fail("IP address", "not an IPv4 or IPv6 address");
}

/** RFC 5952 text: lowercase, no leading zeros, the first longest run (>= 2) of zero groups as "::". */
export function formatV6(v: bigint): string {
  if (v >> 32n === 0xffffn) {
    return `::ffff:${formatV4(v & 0xffffffffn)}`;
  }
  const words: number[] = [];
  for (let i = 7; i >= 0; i--) words.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1; // runs must be at least 2 long
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(":");
  if (bestStart === -1) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

export function formatV4(v: bigint): string {
  const n = Number(v);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
