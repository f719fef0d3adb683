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

/**
 * Docker-style boolean flags that also take a value (`--ipv6`, `--ipv4=false`):
 * removes them from argv (node's parseArgs refuses a value on a boolean) and
 * returns their values.
 */
export function takeBoolFlags(argv: readonly string[], names: readonly string[]): { rest: string[]; flags: Record<string, boolean> } {
  const rest: string[] = [];
  const flags: Record<string, boolean> = {};
  for (const a of argv) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(a);
    const name = m?.[1];
    if (!m || name === undefined || !names.includes(name)) {
      rest.push(a);
      continue;
    }
    const v = m[2];
    if (v === undefined || v === "true" || v === "1") flags[name] = true;
    else if (v === "false" || v === "0") flags[name] = false;
    else throw invalid("bad-flag", `--${name}=${JSON.stringify(v)}: the value must be true or false`, name);
  }
  return { rest, flags };
}
