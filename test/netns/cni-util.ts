/**
 * Running CNI plugins the way a runtime does, for the netns tests: a separate
 * process started inside a sandbox host namespace (nsenter), CNI_* in the
 * environment, the config on stdin. Berth's plugins run from source
 * (`bun src/main.ts cni-plugin <name>`) unless BERTH_CNI_BIN points at a directory
 * of compiled links (dist/cni); the reference plugins run from /usr/lib/cni.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ipJson } from "../harness/sandbox.ts";

export const REF_DIR = "/usr/lib/cni";
const ROOT = join(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src", "main.ts");

export type Impl = "berth" | "ref";

export interface CniCall {
  impl?: Impl;
  plugin: string;
  /** Sandbox host namespace (name under /run/netns) the plugin runs in. */
  host: string;
  command: "ADD" | "DEL" | "CHECK" | "GC" | "STATUS" | "VERSION";
  containerId?: string;
  /** Container namespace name (made into /run/netns/<name>) or an absolute path; "" for none. */
  netns?: string;
  ifname?: string;
  args?: string;
  path?: string;
  conf: unknown;
  /** Extra environment (e.g. BERTH_CNI_NO_INPROCESS). */
  env?: Record<string, string>;
}

export interface CniOut {
  code: number;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: test JSON
  json: any;
  ms: number;
}

export function pluginArgv(impl: Impl, plugin: string): string[] {
  if (impl === "ref") return [join(REF_DIR, plugin)];
  const bin = process.env.BERTH_CNI_BIN;
  if (bin) return [join(bin, plugin)];
  return [process.execPath, MAIN, "cni-plugin", plugin];
}

function nsPath(ns: string | undefined): string {
  if (ns === undefined || ns === "") return "";
  return ns.startsWith("/") ? ns : `/run/netns/${ns}`;
}

function envOf(c: CniCall): Record<string, string> {
  const impl = c.impl ?? "berth";
  const e: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    CNI_COMMAND: c.command,
    CNI_PATH: c.path ?? (impl === "ref" ? REF_DIR : (process.env.BERTH_CNI_BIN ?? REF_DIR)),
    BERTH_CNI_OPLOG: process.env.BERTH_CNI_OPLOG ?? "",
    ...(c.env ?? {}),
  };
  if (c.containerId !== undefined) e.CNI_CONTAINERID = c.containerId;
  const ns = nsPath(c.netns);
  if (ns) e.CNI_NETNS = ns;
  if (c.ifname !== undefined) e.CNI_IFNAME = c.ifname;
  if (c.args !== undefined) e.CNI_ARGS = c.args;
  return e;
}

function parse(stdout: string): unknown {
  try {
    return stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs one plugin call and waits for it. */
export function cni(c: CniCall): CniOut {
  const argv = ["nsenter", `--net=/run/netns/${c.host}`, "--", ...pluginArgv(c.impl ?? "berth", c.plugin)];
  const stdin = typeof c.conf === "string" ? c.conf : JSON.stringify(c.conf);
  const t0 = performance.now();
  const r = Bun.spawnSync(argv, { stdin: new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe", env: envOf(c) });
  const ms = performance.now() - t0;
  const stdout = r.stdout.toString();
  return { code: r.exitCode ?? -1, stdout, stderr: r.stderr.toString(), json: parse(stdout), ms };
}

/** The same, without blocking (for concurrent calls). */
export async function cniAsync(c: CniCall): Promise<CniOut> {
  const argv = ["nsenter", `--net=/run/netns/${c.host}`, "--", ...pluginArgv(c.impl ?? "berth", c.plugin)];
  const stdin = typeof c.conf === "string" ? c.conf : JSON.stringify(c.conf);
  const t0 = performance.now();
  const p = Bun.spawn(argv, { stdin: new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe", env: envOf(c) });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr, json: parse(stdout), ms: performance.now() - t0 };
}

/** Asserts-free helper: the call must succeed; throws with the plugin's output otherwise. */
export function ok(o: CniOut, what = "plugin call"): CniOut {
  if (o.code !== 0) throw new Error(`${what} failed (exit ${o.code}): ${o.stdout.trim()} ${o.stderr.trim()}`);
  return o;
}

// ---------- kernel state, normalised for comparisons ----------

interface JLinkD {
  ifname: string;
  mtu: number;
  flags?: string[];
  operstate?: string;
  master?: string;
  linkinfo?: { info_kind?: string; info_data?: { mode?: string } };
}
interface JAddrD {
  ifname: string;
  addr_info?: { family: string; local: string; prefixlen: number; broadcast?: string; scope: string }[];
}
interface JRouteD {
  dst: string;
  gateway?: string;
  dev?: string;
  scope?: string;
  protocol?: string;
  prefsrc?: string;
  metric?: number;
}

/** Links of a namespace as "name kind mtu up" lines (veth names hidden: they are random). */
export function linkState(ns: string): string[] {
  return ipJson<JLinkD[]>(ns, "-d", "link", "show")
    .map((l) => {
      const kind = l.linkinfo?.info_kind ?? "-";
      const mode = l.linkinfo?.info_data?.mode ? `/${l.linkinfo.info_data.mode}` : "";
      const up = (l.flags ?? []).includes("UP") ? "up" : "down";
      return `${hideVeth(l.ifname)} ${kind}${mode} mtu=${l.mtu} ${up}${l.master ? ` master=${l.master}` : ""}`;
    })
    .sort();
}

/** Global (non link-local) addresses as "dev addr/len brd scope". */
export function addrState(ns: string): string[] {
  return ipJson<JAddrD[]>(ns, "addr", "show")
    .flatMap((l) =>
      (l.addr_info ?? [])
        .filter((a) => a.scope !== "link")
        .map((a) => `${hideVeth(l.ifname)} ${a.local}/${a.prefixlen}${a.broadcast ? ` brd ${a.broadcast}` : ""} ${a.scope}`),
    )
    .sort();
}

/** Routes (v4 and v6, main table) as iproute2 prints them, veth names hidden, link-local v6 left out. */
export function routeState(ns: string): string[] {
  const fmt = (r: JRouteD) =>
    [
      r.dst,
      r.gateway ? `via ${r.gateway}` : "",
      r.dev ? `dev ${hideVeth(r.dev)}` : "",
      r.protocol && r.protocol !== "boot" ? `proto ${r.protocol}` : "",
      r.scope && r.scope !== "global" ? `scope ${r.scope}` : "",
      r.prefsrc ? `src ${r.prefsrc}` : "",
    ]
      .filter(Boolean)
      .join(" ");
  const v4 = ipJson<JRouteD[]>(ns, "-4", "route", "show").map(fmt);
  const v6 = ipJson<JRouteD[]>(ns, "-6", "route", "show")
    .filter((r) => !r.dst.startsWith("fe80") && !r.dst.startsWith("ff00") && !r.dst.startsWith("multicast"))
    .map(fmt);
  return [...v4, ...v6].sort();
}

export function hideVeth(name: string): string {
  return /^veth[0-9a-f]{8}$/.test(name) ? "veth*" : name;
}

/** A result with random parts hidden (MACs, veth names, sandbox paths) for comparing two implementations. */
// biome-ignore lint/suspicious/noExplicitAny: test JSON
export function normaliseResult(r: any): unknown {
  if (!r || typeof r !== "object") return r;
  return {
    cniVersion: r.cniVersion,
    // biome-ignore lint/suspicious/noExplicitAny: test JSON
    interfaces: (r.interfaces ?? []).map((i: any) => ({ name: hideVeth(i.name), sandbox: i.sandbox ? "<netns>" : undefined, mac: i.mac ? "<mac>" : undefined })),
    // biome-ignore lint/suspicious/noExplicitAny: test JSON
    ips: (r.ips ?? []).map((i: any) => ({ address: i.address, gateway: i.gateway, interface: i.interface })),
    routes: r.routes ?? [],
    dns: r.dns ?? {},
  };
}

/** Files under a host-local dataDir (to prove nothing was allocated). */
export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(e.name);
  return out;
}

/** Leases held in Berth's host-local store (count of rows), read with the sqlite store. */
export async function leases(dataDir: string, network: string): Promise<string[]> {
  const db = join(dataDir, "berth", "berth.db");
  if (!existsSync(db)) return [];
  const { openSqliteStore } = await import("../../src/store/sqlite.ts");
  const s = openSqliteStore(join(dataDir, "berth"));
  try {
    return (await s.allocations.list({ networkId: network })).map((a) => `${a.containerId}/${a.ifname}=${a.address}`).sort();
  } finally {
    await s.close();
  }
}
