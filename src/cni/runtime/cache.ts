/**
 * The runtime's result cache, in libcni's format (cniCacheV1) so that tools that
 * read libcni's cache understand Berth's and the other way round:
 *
 *   <cacheDir>/results/<network>-<containerID>-<ifname>     (dir 0700, file 0600)
 *   {"kind":"cniCacheV1","containerId":..,"config":<base64 of the list>,"ifName":..,
 *    "networkName":..,"netns":..,"cniArgs":[[k,v],..],"capabilityArgs":{..},"result":{..}}
 *
 * `config` is base64 because libcni stores a Go []byte. Writes go to a temp file
 * and are renamed into place, so a crash never leaves half a cache entry.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CNI_ERR, cniError } from "../errors.ts";

export const CACHE_KIND = "cniCacheV1";
export const DEFAULT_CACHE_DIR = "/var/lib/cni";

export interface CacheEntry {
  kind: typeof CACHE_KIND;
  containerId: string;
  /** base64 of the network config list bytes. */
  config: string;
  ifName: string;
  networkName: string;
  netns: string;
  cniArgs?: [string, string][];
  capabilityArgs?: Record<string, unknown>;
  result?: Record<string, unknown>;
}

export interface AttachmentKey {
  network: string;
  containerId: string;
  ifname: string;
}

export function cachePath(cacheDir: string, k: AttachmentKey): string {
  return join(cacheDir, "results", `${k.network}-${k.containerId}-${k.ifname}`);
}

export function writeCache(cacheDir: string, e: CacheEntry): string {
  const dir = join(cacheDir, "results");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const p = cachePath(cacheDir, { network: e.networkName, containerId: e.containerId, ifname: e.ifName });
  const tmp = `${p}.tmp${process.pid}`;
  try {
    writeFileSync(tmp, JSON.stringify(e), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, p);
  } catch (x) {
    rmSync(tmp, { force: true });
    throw cniError(CNI_ERR.ioFailure, `cannot write result cache ${p}: ${(x as Error).message}`);
  }
  return p;
}

function parseEntry(text: string): CacheEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  const o = v as Partial<CacheEntry>;
  if (!o || typeof o !== "object" || o.kind !== CACHE_KIND) return undefined;
  if (typeof o.containerId !== "string" || typeof o.ifName !== "string" || typeof o.networkName !== "string") return undefined;
  return o as CacheEntry;
}

export function readCache(cacheDir: string, k: AttachmentKey): CacheEntry | undefined {
  const p = cachePath(cacheDir, k);
  if (!existsSync(p)) return undefined;
  return parseEntry(readFileSync(p, "utf8"));
}

export function deleteCache(cacheDir: string, k: AttachmentKey): void {
  rmSync(cachePath(cacheDir, k), { force: true });
}

/** Every cached attachment of `network` (libcni GetCachedAttachments). */
export function cachedAttachments(cacheDir: string, network: string): CacheEntry[] {
  const dir = join(cacheDir, "results");
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: CacheEntry[] = [];
  for (const n of names) {
    if (!n.startsWith(`${network}-`) || n.includes(".tmp")) continue;
    let text: string;
    try {
      text = readFileSync(join(dir, n), "utf8");
    } catch {
      continue;
    }
    const e = parseEntry(text);
    if (e && e.networkName === network) out.push(e);
  }
  return out;
}

export function encodeConfig(bytes: string): string {
  return Buffer.from(bytes, "utf8").toString("base64");
}

export function decodeConfig(b64: string): string {
  return Buffer.from(b64, "base64").toString("utf8");
}
