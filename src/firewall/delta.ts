/**
 * Incremental changes to Berth's nftables tables.
 *
 * The tables are rendered whole from the state (ruleset.ts) and every variable
 * datum lives in a set or map. When the only difference between the rendering
 * last applied and the next one is in the elements of sets and maps, sending just
 * those elements (`delete element` / `add element`, one transaction) is the same
 * change at a cost that does not grow with the table: with 1000 containers a
 * connect no longer re-sends and the kernel no longer re-parses every element.
 * Anything else (a rule, a set declaration, or an auto-merge interval set such as
 * nat4, whose elements the kernel merges) gives `undefined`: replace the tables.
 */

/** One rendered table: `table FAMILY NAME { ... }` as ruleset.ts renders it. */
export interface RenderedTable {
  family: string;
  name: string;
  text: string;
}

interface Parsed {
  /** The text with element lists taken out (kept in for auto-merge sets). */
  skeleton: string;
  sets: Map<string, { map: boolean; elems: string[] }>;
}

// every set/map is one line: `  set NAME { DECL; elements = { A, B } }` (no elements: `{ DECL;  }`)
const SET_LINE = /^(\s*)(set|map) (\S+) \{ (.*?)\s*(?:elements = \{ (.*) \} )?\}$/;

function parse(text: string): Parsed | undefined {
  const sets = new Map<string, { map: boolean; elems: string[] }>();
  const lines: string[] = [];
  for (const line of text.split("\n")) {
    const m = SET_LINE.exec(line);
    if (!m) {
      lines.push(line);
      continue;
    }
    const [, indent, kind, name, decl, elems] = m;
    // elements hold no ", " (interface names cannot contain whitespace): a plain split is exact
    const list = elems ? elems.split(", ") : [];
    if (decl!.includes("auto-merge")) {
      lines.push(line);
      continue;
    }
    if (sets.has(name!)) return undefined;
    sets.set(name!, { map: kind === "map", elems: list });
    lines.push(`${indent}${kind} ${name} { ${decl} }`);
  }
  return { skeleton: lines.join("\n"), sets };
}

/**
 * The nft script turning the applied tables into the next ones by their elements
 * only; "" when nothing changed; undefined when more than elements changed.
 */
export function elementDelta(applied: readonly RenderedTable[], next: readonly RenderedTable[]): string | undefined {
  if (applied.length !== next.length) return undefined;
  const out: string[] = [];
  for (const [i, n] of next.entries()) {
    const a = applied[i]!;
    if (a.family !== n.family || a.name !== n.name) return undefined;
    const pa = parse(a.text);
    const pn = parse(n.text);
    if (!pa || !pn || pa.skeleton !== pn.skeleton) return undefined;
    for (const [set, want] of pn.sets) {
      const had = new Set(pa.sets.get(set)?.elems ?? []);
      const wanted = new Set(want.elems);
      const gone = [...had].filter((e) => !wanted.has(e));
      const added = want.elems.filter((e) => !had.has(e));
      // a map element is deleted by its key alone
      const key = (e: string) => (want.map ? e.split(" : ")[0]! : e);
      if (gone.length > 0) out.push(`delete element ${n.family} ${n.name} ${set} { ${gone.map(key).join(", ")} }`);
      if (added.length > 0) out.push(`add element ${n.family} ${n.name} ${set} { ${added.join(", ")} }`);
    }
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`;
}
