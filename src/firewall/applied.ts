/**
 * What Berth's tables hold, as data: every element of every set with the number
 * of contributions (the networks' part, each endpoint's part) that give it, and
 * each contributor's own elements. Changing some contributors' parts gives the
 * elements that appear (count 0 -> more) and disappear (count -> 0): exactly the
 * `delete element` / `add element` commands that turn the tables into the ones a
 * whole rendering of the new state would give, at a cost that follows the
 * change, not the number of containers.
 */
import { elementKey, SETS, type SetElement } from "./elements.ts";
import { TABLE_NAME } from "./ruleset.ts";

/** Elements by set (`FAMILY NAME`). */
export type ElementsBySet = ReadonlyMap<string, readonly string[]>;

/** A change computed against one AppliedElements, to be committed to it once the kernel took it. */
export interface ElementPlan {
  /** Elements no contribution gives any more, by set. */
  deleted: ElementsBySet;
  /** Elements no contribution gave before, by set. */
  added: ElementsBySet;
  /** The contributors' new parts (an empty list: the contributor is gone). */
  readonly parts: ReadonlyMap<string, readonly SetElement[]>;
  /** Per set and element, the change of its count. */
  readonly counts: ReadonlyMap<string, ReadonlyMap<string, number>>;
}

export class AppliedElements {
  private readonly counts = new Map<string, Map<string, number>>();
  private readonly owned = new Map<string, readonly SetElement[]>();

  /** The tables holding exactly these contributions (what a whole replace applies). */
  static of(parts: ReadonlyMap<string, readonly SetElement[]>): AppliedElements {
    const a = new AppliedElements();
    a.commit(a.plan(parts));
    return a;
  }

  /** The change giving each contributor of `parts` exactly its elements there (others keep theirs). */
  plan(parts: ReadonlyMap<string, readonly SetElement[]>): ElementPlan {
    const counts = new Map<string, Map<string, number>>();
    const bump = (set: string, el: string, d: number) => {
      let m = counts.get(set);
      if (!m) {
        m = new Map();
        counts.set(set, m);
      }
      m.set(el, (m.get(el) ?? 0) + d);
    };
    for (const [who, els] of parts) {
      for (const [set, el] of this.owned.get(who) ?? []) bump(set, el, -1);
      for (const [set, el] of els) {
        if (!SETS.has(set)) throw new RangeError(`no set ${set} in Berth's tables`);
        bump(set, el, 1);
      }
    }
    const deleted = new Map<string, string[]>();
    const added = new Map<string, string[]>();
    const push = (m: Map<string, string[]>, set: string, el: string) => {
      const l = m.get(set);
      if (l) l.push(el);
      else m.set(set, [el]);
    };
    for (const [set, m] of counts) {
      for (const [el, d] of m) {
        if (d === 0) continue;
        const had = this.counts.get(set)?.get(el) ?? 0;
        if (had + d < 0) throw new Error(`firewall state: element ${el} of ${set} given up more often than it was given`);
        if (had === 0) push(added, set, el);
        else if (had + d === 0) push(deleted, set, el);
      }
    }
    return { deleted, added, parts, counts };
  }

  /** The change to the contributions of a whole state: contributors missing from `parts` lose their elements. */
  planWhole(parts: ReadonlyMap<string, readonly SetElement[]>): ElementPlan {
    const all = new Map(parts);
    for (const who of this.owned.keys()) if (!all.has(who)) all.set(who, []);
    return this.plan(all);
  }

  /** Records a plan made against this state (and nothing since) as applied. */
  commit(p: ElementPlan): void {
    for (const [set, m] of p.counts) {
      let cur = this.counts.get(set);
      if (!cur) {
        cur = new Map();
        this.counts.set(set, cur);
      }
      for (const [el, d] of m) {
        const n = (cur.get(el) ?? 0) + d;
        if (n === 0) cur.delete(el);
        else cur.set(el, n);
      }
    }
    for (const [who, els] of p.parts) {
      if (els.length === 0) this.owned.delete(who);
      else this.owned.set(who, els);
    }
  }

  /** The elements a set holds (in no particular order). */
  elements(set: string): string[] {
    return [...(this.counts.get(set)?.keys() ?? [])];
  }

  /** How many elements each set holds (every set of SETS, 0 included). */
  sizes(): Map<string, number> {
    return new Map([...SETS.keys()].map((set) => [set, this.counts.get(set)?.size ?? 0]));
  }
}

/** Whether a plan changes nothing in the kernel. */
export function isEmptyPlan(p: ElementPlan): boolean {
  return p.deleted.size === 0 && p.added.size === 0;
}

/** Whether a plan changes an auto-merge set, which is never changed element by element (elements.ts). */
export function touchesAutoMerge(p: ElementPlan): boolean {
  return [...p.deleted.keys(), ...p.added.keys()].some((set) => SETS.get(set)?.autoMerge);
}

/** The nft script of a plan: every deletion (a map's element by its key), then every addition; "" for none. */
export function planScript(p: ElementPlan): string {
  const out: string[] = [];
  const line = (op: "delete" | "add", set: string, els: readonly string[]) => {
    const spec = SETS.get(set)!;
    out.push(`${op} element ${spec.family} ${TABLE_NAME} ${spec.name} { ${els.join(", ")} }`);
  };
  for (const [set, els] of p.deleted) line("delete", set, [...new Set(els.map((e) => elementKey(set, e)))]);
  for (const [set, els] of p.added) line("add", set, els);
  return out.length === 0 ? "" : `${out.join("\n")}\n`;
}
