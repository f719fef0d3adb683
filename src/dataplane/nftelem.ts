/**
 * Reading nftables set and map elements back from the kernel (`nft -j list`),
 * rendered as nft syntax so they can be deleted again in a transaction.
 *
 * Elements carry a comment; the CNI meta plugins put their owner
 * (network/container/interface) there, so DEL and GC find exactly their own
 * elements with no state file: the kernel is the state.
 */
import { systemError } from "../errors.ts";
import type { Dataplane } from "./dataplane.ts";

export interface NftElement {
  /** The key in nft syntax, e.g. `0.0.0.0/0 . tcp . 8080`. */
  key: string;
  /** Maps: the value in nft syntax (`10.0.0.2 . 80`, `goto chain`). */
  value?: string;
  comment?: string;
}

type JVal = string | number | { [k: string]: unknown };

interface JSet {
  type: string | string[];
  map?: string | string[];
  elem?: unknown[];
}

const NFT_STRING_TYPES = new Set(["ifname", "string"]);

function renderVal(v: unknown, type: string | undefined): string {
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return type !== undefined && NFT_STRING_TYPES.has(type) ? JSON.stringify(v) : v;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (o.prefix) {
      const p = o.prefix as { addr: string; len: number };
      return `${p.addr}/${p.len}`;
    }
    if (Array.isArray(o.range)) return `${renderVal(o.range[0], type)}-${renderVal(o.range[1], type)}`;
    if (o.goto) return `goto ${(o.goto as { target: string }).target}`;
    if (o.jump) return `jump ${(o.jump as { target: string }).target}`;
    if ("accept" in o) return "accept";
    if ("drop" in o) return "drop";
    if ("return" in o) return "return";
  }
  throw systemError("nft-json", `cannot render nft element value ${JSON.stringify(v)}`);
}

function renderTyped(v: unknown, types: string[]): string {
  if (v && typeof v === "object" && Array.isArray((v as { concat?: unknown[] }).concat)) {
    const parts = (v as { concat: unknown[] }).concat;
    return parts.map((p, i) => renderVal(p, types[i])).join(" . ");
  }
  return renderVal(v, types[0]);
}

function asList(t: string | string[] | undefined): string[] {
  return t === undefined ? [] : Array.isArray(t) ? t : [t];
}

/** Parses the elements of one `nft -j list set|map` answer. */
export function parseElements(set: JSet): NftElement[] {
  const keyTypes = asList(set.type);
  const valTypes = asList(set.map);
  const out: NftElement[] = [];
  for (const e of set.elem ?? []) {
    let k: unknown = e;
    let value: string | undefined;
    if (Array.isArray(e)) {
      k = e[0];
      value = renderTyped(e[1] as JVal, valTypes);
    }
    let comment: string | undefined;
    if (k && typeof k === "object" && "elem" in (k as object)) {
      const el = (k as { elem: { val: unknown; comment?: string } }).elem;
      comment = el.comment;
      k = el.val;
    }
    out.push({ key: renderTyped(k, keyTypes), ...(value !== undefined ? { value } : {}), ...(comment !== undefined ? { comment } : {}) });
  }
  return out;
}

/** Elements of set or map `name`, or undefined when the table or the set does not exist. */
export async function listElements(dp: Dataplane, ns: string | null, family: string, table: string, kind: "set" | "map", name: string): Promise<NftElement[] | undefined> {
  const r = await dp.nft(ns, ["-j", "list", kind, family, table, name]);
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.stderr)) return undefined;
    throw systemError("nft", `nft list ${kind} ${family} ${table} ${name}: ${r.stderr.trim()}`);
  }
  const j = JSON.parse(r.stdout) as { nftables: Record<string, unknown>[] };
  for (const o of j.nftables) {
    const s = (o[kind] ?? undefined) as JSet | undefined;
    if (s) return parseElements(s);
  }
  return [];
}

/** Names of the chains in a table (empty when the table does not exist). */
export async function listChains(dp: Dataplane, ns: string | null, family: string, table: string): Promise<string[]> {
  const j = await dp.nftListTable(ns, family, table);
  if (!j) return [];
  return j.nftables.flatMap((o) => (o.chain ? [(o.chain as { name: string }).name] : []));
}

/** Quotes a comment for nft syntax (nft limits comments to 128 bytes). */
export function nftComment(s: string): string {
  if (s.length > 127 || /["\\\n]/.test(s)) throw new RangeError(`invalid nft comment ${JSON.stringify(s)}`);
  return `comment ${JSON.stringify(s)}`;
}

/**
 * Every set and map of a table with its elements, from one `nft -j list table`
 * (undefined when the table does not exist).
 */
export async function listTableElements(dp: Dataplane, ns: string | null, family: string, table: string): Promise<Map<string, NftElement[]> | undefined> {
  const j = await dp.nftListTable(ns, family, table);
  if (!j) return undefined;
  const out = new Map<string, NftElement[]>();
  for (const o of j.nftables) {
    const s = (o.set ?? o.map) as (JSet & { name: string }) | undefined;
    if (s) out.set(s.name, parseElements(s));
  }
  return out;
}
