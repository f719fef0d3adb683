/** Small helpers shared by the netns test files (kernel state read back with ip -j / nft -j). */
import { expect } from "bun:test";
import { BerthError, type ErrorKind } from "../../src/errors.ts";
import { ipJson, nftJson } from "../harness/sandbox.ts";

export interface JLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  address?: string;
  master?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string };
}
export interface JAddr {
  ifname: string;
  address?: string;
  mtu: number;
  addr_info: { family: string; local: string; prefixlen: number }[];
}
export interface JRoute {
  dst: string;
  gateway?: string;
  dev?: string;
}

export function links(ns: string): JLink[] {
  return ipJson<JLink[]>(ns, "-d", "link", "show");
}

export function linkNames(ns: string): string[] {
  return links(ns)
    .map((l) => l.ifname)
    .sort();
}

export function link(ns: string, dev: string): JLink | undefined {
  return links(ns).find((l) => l.ifname === dev);
}

/** IPv4 addresses (with prefix length) of one interface. */
export function addrsOf(ns: string, dev: string): string[] {
  const l = ipJson<JAddr[]>(ns, "addr", "show").find((x) => x.ifname === dev);
  return (l?.addr_info ?? []).filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`);
}

export function routes(ns: string): JRoute[] {
  return ipJson<JRoute[]>(ns, "-4", "route", "show");
}

export function defaultRoute(ns: string): JRoute | undefined {
  return routes(ns).find((r) => r.dst === "default");
}

/** The text of Berth's nft table in `ns` (no handles), or "" when it does not exist. */
export function nftTableText(ns: string): string {
  const r = Bun.spawnSync(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "berth"], { stdout: "pipe", stderr: "pipe" });
  return r.exitCode === 0 ? r.stdout.toString() : "";
}

/** The elements of a set or map of Berth's table, each as compact JSON (stable for comparisons). */
export function nftElems(ns: string, kind: "set" | "map", name: string): string[] {
  const j = nftJson(ns, "list", kind, "inet", "berth", name);
  for (const o of j.nftables) {
    const s = (o[kind] ?? undefined) as { name: string; elem?: unknown[] } | undefined;
    if (s && s.name === name) return (s.elem ?? []).map((e) => JSON.stringify(e));
  }
  throw new Error(`no ${kind} ${name} in nft output`);
}

/** Number of rules in Berth's table. */
export function nftRuleCount(ns: string): number {
  return nftJson(ns, "list", "table", "inet", "berth").nftables.filter((o) => "rule" in o).length;
}

/** Awaits `p` and asserts it rejects with a BerthError of this kind (and code / field / message part). */
export async function expectBerthError(
  p: Promise<unknown>,
  want: { kind: ErrorKind; code?: string; field?: string | RegExp; message?: string | RegExp },
): Promise<BerthError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(BerthError);
  const be = err as BerthError;
  expect(be.kind).toBe(want.kind);
  if (want.code !== undefined) expect(be.code).toBe(want.code);
  if (want.field instanceof RegExp) expect(be.field ?? "").toMatch(want.field);
  else if (want.field !== undefined) expect(be.field).toBe(want.field);
  if (want.message instanceof RegExp) expect(be.message).toMatch(want.message);
  else if (want.message !== undefined) expect(be.message).toContain(want.message);
  return be;
}

/** The address the echo server saw, from a tcpRoundTrip reply ("echo:x from:ADDR"). */
export function seenFrom(reply: string | undefined): string | undefined {
  if (reply === undefined) return undefined;
  const m = /from:(?:::ffff:)?(\S+)$/.exec(reply);
  return m?.[1];
}

/** Polls `f` until it returns true or `ms` pass. */
export async function eventually(f: () => boolean | Promise<boolean>, ms = 3000, step = 50): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await f()) return true;
    if (Date.now() > end) return false;
    await Bun.sleep(step);
  }
}

/** Formats one nft JSON value (concat, prefix, range, scalar) as nft prints it. */
export function nftValue(v: unknown): string {
  if (Array.isArray(v)) return v.map(nftValue).join(" : ");
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if ("concat" in o) return (o.concat as unknown[]).map(nftValue).join(" . ");
    if ("prefix" in o) {
      const p = o.prefix as { addr: string; len: number };
      return `${p.addr}/${p.len}`;
    }
    if ("range" in o) return (o.range as unknown[]).map(nftValue).join("-");
    if ("elem" in o) return nftValue((o.elem as { val: unknown }).val);
    return JSON.stringify(o);
  }
  return String(v);
}

/** Elements of the map `ports4`/`ports6` as "host . proto . port : target . port". */
export function portMap(ns: string, fam: 4 | 6 = 4): string[] {
  return nftElems(ns, "map", `ports${fam}`)
    .map((e) => nftValue(JSON.parse(e)))
    .sort();
}
