/**
 * Network configuration lists (SPEC.md "Configuration format") and how a runtime
 * finds them (libcni's LoadConfList): the first *.conflist in lexical order whose
 * name matches, else a single-plugin *.conf / *.json up-converted to a list.
 * Unless loadOnlyInlinedPlugins, plugin configs from <dir>/<name>/*.conf are
 * appended. Unknown keys are kept: each plugin gets its object as written.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { CNI_ERR, cniError } from "../errors.ts";

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [k: string]: unknown;
}

export interface NetworkConfigList {
  name: string;
  /** As written (may be empty when only cniVersions is given). */
  cniVersion: string;
  cniVersions: string[];
  disableCheck: boolean;
  disableGC: boolean;
  loadOnlyInlinedPlugins: boolean;
  plugins: PluginConf[];
  /** The file's bytes (what libcni caches as `config`). */
  bytes: string;
  /** Where it came from (for messages). */
  source: string;
}

/** libcni accepts the booleans as JSON booleans or as the strings "true"/"false". */
function bool(v: unknown, key: string, source: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v === "boolean") return v;
  if (typeof v === "string" && /^(true|false)$/i.test(v)) return v.toLowerCase() === "true";
  throw cniError(CNI_ERR.invalidConfig, `${source}: ${key} must be a boolean, got ${JSON.stringify(v)}`);
}

function obj(text: string, source: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw cniError(CNI_ERR.decodeFailure, `${source}: invalid JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw cniError(CNI_ERR.decodeFailure, `${source}: must be a JSON object`);
  return v as Record<string, unknown>;
}

export function validateNetName(name: unknown, source: string): string {
  if (typeof name !== "string" || name === "") throw cniError(CNI_ERR.invalidConfig, `${source}: missing network name`);
  if (!NAME_RE.test(name)) throw cniError(CNI_ERR.invalidConfig, `${source}: invalid network name ${JSON.stringify(name)}: must match ${NAME_RE}`);
  return name;
}

export function validatePlugin(p: unknown, where: string): PluginConf {
  if (!p || typeof p !== "object" || Array.isArray(p)) throw cniError(CNI_ERR.invalidConfig, `${where}: must be an object`);
  const o = p as Record<string, unknown>;
  if (typeof o.type !== "string" || o.type === "") throw cniError(CNI_ERR.invalidConfig, `${where}: missing type`);
  if (/[/\\]/.test(o.type) || o.type === "." || o.type === "..") throw cniError(CNI_ERR.invalidConfig, `${where}: invalid plugin type ${JSON.stringify(o.type)}`);
  if (o.capabilities !== undefined) {
    const c = o.capabilities;
    if (!c || typeof c !== "object" || Array.isArray(c) || Object.values(c).some((x) => typeof x !== "boolean")) {
      throw cniError(CNI_ERR.invalidConfig, `${where}: capabilities must map names to booleans`);
    }
  }
  return o as PluginConf;
}

/** Parses a *.conflist. */
export function parseConfList(text: string, source = "conflist"): NetworkConfigList {
  const o = obj(text, source);
  const name = validateNetName(o.name, source);
  const cniVersion = o.cniVersion ?? "";
  if (typeof cniVersion !== "string") throw cniError(CNI_ERR.invalidConfig, `${source}: cniVersion must be a string`);
  const cniVersions = o.cniVersions ?? [];
  if (!Array.isArray(cniVersions) || cniVersions.some((v) => typeof v !== "string")) {
    throw cniError(CNI_ERR.invalidConfig, `${source}: cniVersions must be a list of strings`);
  }
  const loadOnlyInlinedPlugins = bool(o.loadOnlyInlinedPlugins, "loadOnlyInlinedPlugins", source);
  let plugins: PluginConf[] = [];
  if (o.plugins === undefined || o.plugins === null) {
    if (loadOnlyInlinedPlugins) throw cniError(CNI_ERR.invalidConfig, `${source}: loadOnlyInlinedPlugins is true but there is no plugins list`);
  } else {
    if (!Array.isArray(o.plugins)) throw cniError(CNI_ERR.invalidConfig, `${source}: plugins must be a list`);
    plugins = o.plugins.map((p, i) => validatePlugin(p, `${source}: plugins[${i}]`));
  }
  return {
    name,
    cniVersion,
    cniVersions: cniVersions as string[],
    disableCheck: bool(o.disableCheck, "disableCheck", source),
    disableGC: bool(o.disableGC, "disableGC", source),
    loadOnlyInlinedPlugins,
    plugins,
    bytes: text,
    source,
  };
}

/** A single-plugin *.conf / *.json as a list of one (libcni ConfListFromConf). */
export function parseSingleConf(text: string, source = "conf"): NetworkConfigList {
  const o = obj(text, source);
  const name = validateNetName(o.name, source);
  const cniVersion = typeof o.cniVersion === "string" ? o.cniVersion : "";
  const plugin = validatePlugin(o, source);
  return { name, cniVersion, cniVersions: [], disableCheck: false, disableGC: false, loadOnlyInlinedPlugins: true, plugins: [plugin], bytes: text, source };
}

function filesWith(dir: string, exts: string[]): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw cniError(CNI_ERR.ioFailure, `cannot read config dir ${dir}: ${(e as Error).message}`);
  }
  return names
    .filter((n) => exts.some((x) => n.endsWith(x)))
    .sort()
    .map((n) => join(dir, n))
    .filter((p) => {
      try {
        return statSync(p).isFile();
      } catch {
        return false;
      }
    });
}

/** Plugin configs in <dir>/<name>/*.conf, appended to a list unless it loads only inlined plugins. */
function aggregate(list: NetworkConfigList, dir: string): NetworkConfigList {
  if (list.loadOnlyInlinedPlugins) return list;
  const sub = join(dir, list.name);
  if (!existsSync(sub)) {
    if (list.plugins.length === 0) throw cniError(CNI_ERR.invalidConfig, `${list.source}: no plugins in the list and no ${sub} folder`);
    return list;
  }
  const extra = filesWith(sub, [".conf"]).map((p) => validatePlugin(obj(readFileSync(p, "utf8"), p), p));
  const plugins = [...list.plugins, ...extra];
  if (plugins.length === 0) throw cniError(CNI_ERR.invalidConfig, `${list.source}: no plugins in the list or in ${sub}`);
  return { ...list, plugins };
}

/** Finds network `name` in `dir` (lexical order, *.conflist first, then *.conf / *.json). */
export function loadConfList(dir: string, name: string): NetworkConfigList {
  for (const p of filesWith(dir, [".conflist"])) {
    const list = parseConfList(readFileSync(p, "utf8"), p);
    if (list.name === name) return aggregate(list, dir);
  }
  for (const p of filesWith(dir, [".conf", ".json"])) {
    const list = parseSingleConf(readFileSync(p, "utf8"), p);
    if (list.name === name) return list;
  }
  throw cniError(CNI_ERR.invalidConfig, `no net configuration with name ${JSON.stringify(name)} in ${dir}`);
}

/** Every network defined in `dir` (first definition of each name wins). */
export function listNetworks(dir: string): NetworkConfigList[] {
  const seen = new Map<string, NetworkConfigList>();
  for (const p of filesWith(dir, [".conflist"])) {
    try {
      const l = parseConfList(readFileSync(p, "utf8"), p);
      if (!seen.has(l.name)) seen.set(l.name, l);
    } catch {
      /* skip broken files, like libcni */
    }
  }
  for (const p of filesWith(dir, [".conf", ".json"])) {
    try {
      const l = parseSingleConf(readFileSync(p, "utf8"), p);
      if (!seen.has(l.name)) seen.set(l.name, l);
    } catch {
      /* skip */
    }
  }
  return [...seen.values()];
}
