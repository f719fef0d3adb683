/**
 * Berth's CNI runtime (what libcni does for podman/containerd, SPEC.md
 * "Section 4: Plugin Delegation" and the runtime duties):
 *
 *  - version negotiation: the highest version of cniVersion ∪ cniVersions that
 *    Berth understands AND every plugin of the list reports in VERSION;
 *  - chaining: ADD and CHECK run the plugins in order, each getting the previous
 *    result as prevResult; DEL runs them in reverse with the cached final result;
 *  - runtimeConfig injected only for the capabilities a plugin declares (and the
 *    `capabilities` key removed from what the plugin sees);
 *  - the result cache (libcni's cniCacheV1 format, cache.ts), used for CHECK/DEL
 *    and to enumerate attachments for GC;
 *  - CHECK honours disableCheck; GC synthesises DEL for cached attachments that
 *    are not valid, then (>= 1.1.0, unless disableGC) sends GC to every plugin,
 *    aggregating errors; STATUS (>= 1.1.0) stops at the first failing plugin;
 *  - names (network, container ID, interface) are validated before any exec.
 */
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { validateContainerId, validateIfName } from "../../net/index.ts";
import { CNI_ERR, CniError, cniError, toCniError } from "../errors.ts";
import { parseResult, resultToJson } from "../types.ts";
import { atLeast, compareVersions, parseVersion, SUPPORTED_VERSIONS } from "../version.ts";
import { cachedAttachments, cachePath, deleteCache, encodeConfig, readCache, writeCache, type CacheEntry } from "./cache.ts";
import { type NetworkConfigList, type PluginConf, validateNetName } from "./conflist.ts";
import { binaryExec, findPlugin, type PluginExec, type RuntimeVerb } from "./exec.ts";

export interface RuntimeConf {
  containerId: string;
  /** Path of the container's network namespace (DEL allows it to be empty or gone). */
  netns: string;
  ifname: string;
  /** CNI_ARGS as pairs. */
  args?: [string, string][];
  /** Values for capabilities (portMappings, bandwidth, ips, mac, ...). */
  capabilityArgs?: Record<string, unknown>;
}

export interface RuntimeOptions {
  /** CNI_PATH directories searched for plugin binaries. */
  path: string[];
  cacheDir: string;
  exec?: PluginExec;
  /** Ask each plugin for its versions (VERSION) and choose a common one (default true). */
  negotiate?: boolean;
  /** On a failed ADD, run DEL for the whole list so nothing leaks (default true). */
  delOnAddFailure?: boolean;
  /** Remember plugins' VERSION answers in <cacheDir>/berth-versions.json per binary (path, size, mtime); default true. */
  cacheVersions?: boolean;
}

const VERSION_CACHE = "berth-versions.json";

export interface VersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

export interface ValidAttachment {
  containerID: string;
  ifname: string;
}

type Json = Record<string, unknown>;

function isVersion(v: string): boolean {
  try {
    parseVersion(v);
    return true;
  } catch {
    return false;
  }
}

/** CNI_ARGS text "K=V;K2=V2" as pairs. */
export function parseArgs(s: string): [string, string][] {
  return s
    .split(";")
    .filter((p) => p.trim() !== "")
    .map((p) => {
      const i = p.indexOf("=");
      if (i <= 0) throw cniError(CNI_ERR.invalidEnv, `invalid CNI_ARGS pair ${JSON.stringify(p)} (want K=V)`);
      return [p.slice(0, i), p.slice(i + 1)] as [string, string];
    });
}

export function formatArgs(a: readonly [string, string][] | undefined): string {
  return (a ?? []).map(([k, v]) => `${k}=${v}`).join(";");
}

/** The request a plugin gets (SPEC.md "Deriving execution configuration from plugin configuration"). */
export function buildRequest(list: NetworkConfigList, plugin: PluginConf, version: string, rt: RuntimeConf | undefined, prevResult?: Json): Json {
  const conf: Json = { ...plugin, name: list.name, cniVersion: version };
  delete conf.capabilities;
  delete conf.prevResult;
  const rc: Json = {};
  for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
    if (on && rt?.capabilityArgs && Object.hasOwn(rt.capabilityArgs, cap)) rc[cap] = rt.capabilityArgs[cap];
  }
  // like libcni: runtimeConfig is what the runtime supplies for declared capabilities
  if (Object.keys(rc).length > 0) conf.runtimeConfig = rc;
  else delete conf.runtimeConfig;
  if (prevResult) conf.prevResult = prevResult;
  return conf;
}

/** A result JSON in `version` (results of another family are converted through the typed model). */
export function resultAs(r: Json, version: string): Json {
  const rv = typeof r.cniVersion === "string" ? r.cniVersion : version;
  if (rv === version) return r;
  if (!atLeast(version, "0.3.0") || !isVersion(rv) || !atLeast(rv, "0.3.0")) {
    throw cniError(CNI_ERR.incompatibleVersion, `cannot convert a ${rv} result to ${version}`);
  }
  return resultToJson(parseResult(r, rv), version);
}

export class CniRuntime {
  readonly path: string[];
  readonly cacheDir: string;
  private readonly exec: PluginExec;
  private readonly negotiateVersions: boolean;
  private readonly delOnAddFailure: boolean;
  private readonly versions = new Map<string, VersionInfo>();
  private readonly persistVersions: boolean;
  private versionCache: Record<string, VersionInfo> | undefined;

  constructor(opts: RuntimeOptions) {
    this.path = opts.path;
    this.cacheDir = opts.cacheDir;
    this.exec = opts.exec ?? binaryExec();
    this.persistVersions = opts.exec === undefined && (opts.cacheVersions ?? true);
    this.negotiateVersions = opts.negotiate ?? true;
    this.delOnAddFailure = opts.delOnAddFailure ?? true;
  }

  /** Persistent VERSION answers, keyed by binary path, size and mtime (saves a process start per plugin and call). */
  private diskVersions(): Record<string, VersionInfo> {
    if (!this.versionCache) {
      try {
        this.versionCache = JSON.parse(readFileSync(join(this.cacheDir, VERSION_CACHE), "utf8")) as Record<string, VersionInfo>;
      } catch {
        this.versionCache = {};
      }
    }
    return this.versionCache;
  }

  private binaryKey(type: string): string | undefined {
    const bin = findPlugin(type, this.path);
    if (!bin) return undefined;
    try {
      const st = statSync(bin);
      return `${bin}:${st.size}:${st.mtimeMs}`;
    } catch {
      return undefined;
    }
  }

  /** VERSION of one plugin (cached in memory, and on disk per binary when the runtime executes binaries). */
  async pluginVersions(type: string, asked: string): Promise<VersionInfo> {
    const hit = this.versions.get(type);
    if (hit) return hit;
    const key = this.persistVersions ? this.binaryKey(type) : undefined;
    const disk = key ? this.diskVersions()[key] : undefined;
    if (disk && Array.isArray(disk.supportedVersions)) {
      this.versions.set(type, disk);
      return disk;
    }
    const out = await this.exec({
      type,
      command: "VERSION",
      env: { CNI_CONTAINERID: "", CNI_NETNS: "", CNI_IFNAME: "", CNI_ARGS: "" },
      path: this.path,
      stdin: JSON.stringify({ cniVersion: asked }),
    });
    const sv = out?.supportedVersions;
    if (!out || !Array.isArray(sv) || sv.some((v) => typeof v !== "string")) {
      throw cniError(CNI_ERR.decodeFailure, `plugin type=${JSON.stringify(type)} answered VERSION without supportedVersions`);
    }
    const info = { cniVersion: String(out.cniVersion ?? ""), supportedVersions: sv as string[] };
    this.versions.set(type, info);
    if (key) {
      const all = this.diskVersions();
      all[key] = info;
      try {
        mkdirSync(this.cacheDir, { recursive: true, mode: 0o700 });
        const tmp = join(this.cacheDir, `${VERSION_CACHE}.tmp${process.pid}`);
        writeFileSync(tmp, JSON.stringify(all), { mode: 0o600 });
        renameSync(tmp, join(this.cacheDir, VERSION_CACHE));
      } catch {
        /* a cache: failing to write it only costs the next call a VERSION */
      }
    }
    return info;
  }

  /** The version the list runs at (see the module comment). */
  async negotiate(list: NetworkConfigList): Promise<string> {
    const declared = [...new Set([...list.cniVersions, ...(list.cniVersion ? [list.cniVersion] : [])])];
    if (declared.length === 0) throw cniError(CNI_ERR.invalidConfig, `${list.source}: no cniVersion or cniVersions`);
    for (const v of declared) if (!isVersion(v)) throw cniError(CNI_ERR.invalidConfig, `${list.source}: invalid version ${JSON.stringify(v)}`);
    let candidates = declared.filter((v) => (SUPPORTED_VERSIONS as readonly string[]).includes(v));
    if (candidates.length === 0) {
      throw cniError(CNI_ERR.incompatibleVersion, `${list.source}: none of the versions ${JSON.stringify(declared)} is supported by Berth's runtime (${SUPPORTED_VERSIONS.join(", ")})`);
    }
    candidates.sort(compareVersions);
    if (this.negotiateVersions) {
      const asked = list.cniVersion || candidates[candidates.length - 1]!;
      // ask every plugin at once: VERSION is a process start each
      const types = [...new Set(list.plugins.map((p) => p.type))];
      const infos = await Promise.all(types.map((t) => this.pluginVersions(t, asked)));
      for (const [i, type] of types.entries()) {
        const info = infos[i]!;
        const left = candidates.filter((v) => info.supportedVersions.includes(v));
        if (left.length === 0) {
          throw cniError(
            CNI_ERR.incompatibleVersion,
            `plugin type=${JSON.stringify(type)} supports ${JSON.stringify(info.supportedVersions)}, none of the list's ${JSON.stringify(candidates)}`,
          );
        }
        candidates = left;
      }
    }
    return candidates[candidates.length - 1]!;
  }

  /** libcni ValidateNetworkList: every plugin answers VERSION with the list's version; returns the declared capabilities. */
  async validate(list: NetworkConfigList): Promise<{ version: string; capabilities: string[] }> {
    validateNetName(list.name, list.source);
    const version = await this.negotiate(list);
    const caps = new Set<string>();
    for (const p of list.plugins) for (const [c, on] of Object.entries(p.capabilities ?? {})) if (on) caps.add(c);
    return { version, capabilities: [...caps].sort() };
  }

  private validateRt(list: NetworkConfigList, rt: RuntimeConf, needNetns: boolean): void {
    const wrap = (f: () => void, env: string) => {
      try {
        f();
      } catch (e) {
        throw cniError(CNI_ERR.invalidEnv, `${env}: ${(e as Error).message}`);
      }
    };
    validateNetName(list.name, list.source);
    wrap(() => validateContainerId(rt.containerId), "container ID");
    wrap(() => validateIfName(rt.ifname), "interface name");
    if (needNetns && !rt.netns) throw cniError(CNI_ERR.invalidEnv, "a network namespace path is required");
    for (const [k] of rt.args ?? []) if (/[;=]/.test(k) || k === "") throw cniError(CNI_ERR.invalidEnv, `invalid CNI_ARGS key ${JSON.stringify(k)}`);
  }

  private env(rt: RuntimeConf): Record<string, string> {
    return { CNI_CONTAINERID: rt.containerId, CNI_NETNS: rt.netns, CNI_IFNAME: rt.ifname, CNI_ARGS: formatArgs(rt.args) };
  }

  private async run(list: NetworkConfigList, p: PluginConf, command: RuntimeVerb, version: string, rt: RuntimeConf, prev?: Json): Promise<Json | undefined> {
    const req = buildRequest(list, p, version, rt, prev);
    return this.exec({ type: p.type, command, env: this.env(rt), path: this.path, stdin: JSON.stringify(req) });
  }

  cacheFile(list: NetworkConfigList, rt: RuntimeConf): string {
    return cachePath(this.cacheDir, { network: list.name, containerId: rt.containerId, ifname: rt.ifname });
  }

  /** ADD through the whole chain; caches and returns the final result. */
  async add(list: NetworkConfigList, rt: RuntimeConf): Promise<Json> {
    this.validateRt(list, rt, true);
    const key = { network: list.name, containerId: rt.containerId, ifname: rt.ifname };
    if (readCache(this.cacheDir, key)) {
      throw cniError(CNI_ERR.conflict, `container ${rt.containerId} is already attached to ${list.name} as ${rt.ifname} (cache ${cachePath(this.cacheDir, key)}); DEL it first`);
    }
    const version = await this.negotiate(list);
    let prev: Json | undefined;
    try {
      for (const p of list.plugins) {
        const out = await this.run(list, p, "ADD", version, rt, prev);
        if (!out) throw cniError(CNI_ERR.decodeFailure, `plugin type=${JSON.stringify(p.type)} returned no result (add)`);
        prev = resultAs(out, version);
      }
    } catch (e) {
      if (this.delOnAddFailure) {
        // the spec asks for DEL after a failed ADD; best effort, the ADD error is what matters
        await this.delChain(list, version, rt, prev).catch(() => undefined);
      }
      throw e;
    }
    const result = prev ?? { cniVersion: version };
    writeCache(this.cacheDir, {
      kind: "cniCacheV1",
      containerId: rt.containerId,
      config: encodeConfig(list.bytes),
      ifName: rt.ifname,
      networkName: list.name,
      netns: rt.netns,
      cniArgs: rt.args ?? [],
      capabilityArgs: rt.capabilityArgs ?? {},
      result,
    });
    return result;
  }

  private async delChain(list: NetworkConfigList, version: string, rt: RuntimeConf, cached: Json | undefined): Promise<void> {
    const prev = cached && atLeast(version, "0.4.0") ? resultAs(cached, version) : undefined;
    for (const p of [...list.plugins].reverse()) await this.run(list, p, "DEL", version, rt, prev);
  }

  /** DEL in reverse order with the cached result; removes the cache entry when every plugin succeeded. */
  async del(list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
    this.validateRt(list, rt, false);
    const key = { network: list.name, containerId: rt.containerId, ifname: rt.ifname };
    const cached = readCache(this.cacheDir, key);
    const version = await this.negotiate(list);
    await this.delChain(list, version, rt, cached?.result);
    deleteCache(this.cacheDir, key);
  }

  /** CHECK in order with the cached result (skipped when the list sets disableCheck). */
  async check(list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
    this.validateRt(list, rt, true);
    const version = await this.negotiate(list);
    if (!atLeast(version, "0.4.0")) throw cniError(CNI_ERR.incompatibleVersion, `configuration version ${version} does not support the CHECK command`);
    if (list.disableCheck) return;
    const cached = readCache(this.cacheDir, { network: list.name, containerId: rt.containerId, ifname: rt.ifname });
    if (!cached?.result) throw cniError(CNI_ERR.unknownContainer, `cannot CHECK ${list.name} for ${rt.containerId}/${rt.ifname}: no cached result (was it added?)`);
    const prev = resultAs(cached.result, version);
    for (const p of list.plugins) await this.run(list, p, "CHECK", version, rt, prev);
  }

  /** The cached attachments of a network. */
  attachments(list: NetworkConfigList): CacheEntry[] {
    return cachedAttachments(this.cacheDir, list.name);
  }

  /**
   * GC: DEL every cached attachment of this network that is not in `valid`, then
   * (>= 1.1.0, unless disableGC) GC to every plugin. Continues on errors and
   * throws them together at the end.
   */
  async gc(list: NetworkConfigList, valid: ValidAttachment[]): Promise<{ deleted: string[] }> {
    validateNetName(list.name, list.source);
    const version = await this.negotiate(list);
    const errors: CniError[] = [];
    const deleted: string[] = [];
    const isValid = new Set(valid.map((v) => `${v.containerID}\u0000${v.ifname}`));
    for (const a of this.attachments(list)) {
      if (isValid.has(`${a.containerId}\u0000${a.ifName}`)) continue;
      const rt: RuntimeConf = { containerId: a.containerId, netns: a.netns ?? "", ifname: a.ifName, args: a.cniArgs ?? [], capabilityArgs: a.capabilityArgs ?? {} };
      try {
        await this.delChain(list, version, rt, a.result);
        deleteCache(this.cacheDir, { network: list.name, containerId: a.containerId, ifname: a.ifName });
        deleted.push(`${a.containerId}/${a.ifName}`);
      } catch (e) {
        errors.push(toCniError(e));
      }
    }
    if (atLeast(version, "1.1.0") && !list.disableGC) {
      for (const p of list.plugins) {
        const conf = buildRequest(list, p, version, undefined);
        conf["cni.dev/valid-attachments"] = valid;
        conf["cni.dev/attachments"] = valid; // the name libcni 1.2 also sends (cni#1101)
        try {
          await this.exec({ type: p.type, command: "GC", env: {}, path: this.path, stdin: JSON.stringify(conf) });
        } catch (e) {
          errors.push(toCniError(e));
        }
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new CniError(errors[0]!.code, errors.map((e) => e.message).join("; "));
    return { deleted };
  }

  /** STATUS (>= 1.1.0; older lists have no STATUS and are reported ready). */
  async status(list: NetworkConfigList): Promise<void> {
    validateNetName(list.name, list.source);
    const version = await this.negotiate(list);
    if (!atLeast(version, "1.1.0")) return;
    for (const p of list.plugins) {
      const conf = buildRequest(list, p, version, undefined);
      await this.exec({ type: p.type, command: "STATUS", env: {}, path: this.path, stdin: JSON.stringify(conf) });
    }
  }
}

