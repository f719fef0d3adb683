/** The fault and crash points named in Berth's source, for tests that must exercise every one of them. */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const SRC = join(import.meta.dir, "..", "..", "src");

/**
 * Every point named by a call matching `call` (a global regex whose group 1 is the
 * point) in the .ts files below src/<dir> for each of `dirs` ("" = all of src).
 * Comment lines are skipped: faults.ts documents `faults.hit("point")`.
 */
export function sourcePoints(dirs: readonly string[], call: RegExp): string[] {
  const out = new Set<string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts")) {
        for (const line of readFileSync(p, "utf8").split("\n")) {
          if (/^\s*(\*|\/\/)/.test(line)) continue;
          for (const m of line.matchAll(call)) out.add(m[1]!);
        }
      }
    }
  };
  for (const d of dirs) walk(join(SRC, d));
  return [...out].sort();
}
