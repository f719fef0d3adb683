/**
 * The firewall as Berth renders it, as data: the sets and maps of the table with
 * their elements and the chains with their rules. It is read back from the very
 * text `renderTable` produces (so it can never differ from what is applied), for
 * the web UI and `GET /berth/firewall`.
 *
 * Splitting elements on ", " is safe: elements are addresses, prefixes,
 * protocol/port tuples and quoted interface names, and an interface name cannot
 * contain whitespace.
 */
import { type FirewallState, renderTable, TABLE_FAMILY, TABLE_NAME } from "./ruleset.ts";

export interface TableSet {
  name: string;
  kind: "set" | "map";
  type: string;
  flags: string[];
  elements: string[];
}

export interface TableChain {
  name: string;
  /** e.g. "type nat hook prerouting priority dstnat; policy accept;" */
  base: string;
  rules: string[];
}

export interface TableView {
  family: string;
  name: string;
  comment: string;
  sets: TableSet[];
  chains: TableChain[];
  /** The nft text itself. */
  text: string;
}

const SET_RE = /^(set|map) (\S+) \{ (.*) \}$/;

function parseSet(kind: "set" | "map", name: string, body: string): TableSet {
  let type = "";
  const flags: string[] = [];
  let elements: string[] = [];
  const el = body.indexOf("elements = { ");
  const head = el >= 0 ? body.slice(0, el) : body;
  if (el >= 0) {
    const inner = body.slice(el + "elements = { ".length).replace(/\s*\}\s*$/, "");
    elements = inner.split(", ").map((e) => e.trim()).filter((e) => e !== "");
  }
  for (const part of head.split(";").map((p) => p.trim()).filter((p) => p !== "")) {
    if (part.startsWith("type ")) type = part.slice(5);
    else if (part.startsWith("flags ")) flags.push(...part.slice(6).split(",").map((f) => f.trim()));
    else flags.push(part);
  }
  return { name, kind, type, flags, elements };
}

/** Parses text in the shape `renderTable` writes (one table, one set per line, one rule per line). */
export function parseRenderedTable(text: string): TableView {
  const view: TableView = { family: TABLE_FAMILY, name: TABLE_NAME, comment: "", sets: [], chains: [], text };
  let chain: TableChain | undefined;
  for (const raw of text.split("\n")) {
    const l = raw.trim();
    if (l === "") continue;
    if (chain) {
      if (l === "}") {
        view.chains.push(chain);
        chain = undefined;
      } else if (l.startsWith("type ")) chain.base = l;
      else chain.rules.push(l);
      continue;
    }
    const t = /^table (\S+) (\S+) \{$/.exec(l);
    if (t) {
      view.family = t[1]!;
      view.name = t[2]!;
      continue;
    }
    if (l.startsWith("comment ")) {
      view.comment = JSON.parse(l.slice("comment ".length)) as string;
      continue;
    }
    const s = SET_RE.exec(l);
    if (s) {
      view.sets.push(parseSet(s[1] as "set" | "map", s[2]!, s[3]!));
      continue;
    }
    const c = /^chain (\S+) \{$/.exec(l);
    if (c) chain = { name: c[1]!, base: "", rules: [] };
  }
  return view;
}

/** The table Berth renders for `state`, as data. */
export function describeTable(state: FirewallState): TableView {
  return parseRenderedTable(renderTable(state));
}
