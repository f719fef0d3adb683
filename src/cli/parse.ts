/** Small parsers for CLI flag values (sizes, key=value pairs). */
import { invalid } from "../errors.ts";

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** Docker-style sizes: 512, 64k, 64m, 1g (binary units). */
export function parseSize(s: string, field: string): number {
  const m = /^(\d+(?:\.\d+)?)([bkmg]?)b?$/i.exec(s.trim());
  if (!m) throw invalid("bad-size", `invalid size ${JSON.stringify(s)} for --${field}: use a number with an optional unit b, k, m or g`, field);
  return Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
}

export function parseKeyValues(items: readonly string[] | undefined, field: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const it of items ?? []) {
    const i = it.indexOf("=");
    if (i <= 0) throw invalid("bad-key-value", `--${field} ${JSON.stringify(it)} must look like key=value`, field);
    out[it.slice(0, i)] = it.slice(i + 1);
  }
  return out;
}

export function parseNumber(s: string, field: string): number {
  const n = Number(s);
  if (s.trim() === "" || !Number.isFinite(n)) throw invalid("bad-number", `--${field} ${JSON.stringify(s)} is not a number`, field);
  return n;
}
