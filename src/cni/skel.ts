/**
 * The plugin skeleton: reads CNI_* environment and the config from stdin,
 * validates them per verb (SPEC.md "Parameters"), dispatches to the plugin and
 * turns the outcome into the result JSON or the error JSON. It returns what to
 * print instead of printing, so plugins can run in-process (tests, delegation
 * between Berth's own plugins) as well as from the multi-call binary.
 */
import { existsSync, statSync } from "node:fs";
import { validateIfName } from "../net/index.ts";
import { CNI_ERR, type CniError, cniError, errorJson, toCniError } from "./errors.ts";
import { type CniResult, type NetConf, parseResult, resultToJson } from "./types.ts";
import { LATEST, requireSupported, SUPPORTED_VERSIONS } from "./version.ts";

export type Verb = "ADD" | "DEL" | "CHECK" | "STATUS" | "GC" | "VERSION";
const VERBS: readonly Verb[] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"];

export interface CniEnv {
  command: Verb;
  containerId: string;
  netns: string;
  ifname: string;
  /** Raw CNI_ARGS ("K=V;K2=V2"). */
  args: string;
  path: string[];
}

export interface CniPlugin {
  add(conf: NetConf, env: CniEnv): Promise<CniResult>;
  del(conf: NetConf, env: CniEnv): Promise<void>;
  check(conf: NetConf, env: CniEnv): Promise<void>;
  status?(conf: NetConf, env: CniEnv): Promise<void>;
  gc?(conf: NetConf, env: CniEnv): Promise<void>;
}

export interface PluginOutput {
  stdout: string;
  exitCode: number;
}

const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const REQUIRED: Record<Verb, (keyof CniEnv)[]> = {
  ADD: ["containerId", "netns", "ifname"],
  CHECK: ["containerId", "netns", "ifname"],
  DEL: ["containerId", "ifname"],
  GC: [],
  STATUS: [],
  VERSION: [],
};
const ENV_NAME: Record<string, string> = { containerId: "CNI_CONTAINERID", netns: "CNI_NETNS", ifname: "CNI_IFNAME" };

export function readEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env.CNI_COMMAND;
  if (!command) throw cniError(CNI_ERR.invalidEnv, "required env variables [CNI_COMMAND] missing");
  if (!(VERBS as readonly string[]).includes(command)) {
    throw cniError(CNI_ERR.invalidEnv, `unknown CNI_COMMAND: ${command}`);
  }
  const e: CniEnv = {
    command: command as Verb,
    containerId: env.CNI_CONTAINERID ?? "",
    netns: env.CNI_NETNS_OVERRIDE || env.CNI_NETNS || "",
    ifname: env.CNI_IFNAME ?? "",
    args: env.CNI_ARGS ?? "",
    path: (env.CNI_PATH ?? "").split(":").filter(Boolean),
  };
  const missing = REQUIRED[e.command].filter((k) => e[k] === "").map((k) => ENV_NAME[k]);
  if (missing.length > 0) throw cniError(CNI_ERR.invalidEnv, `required env variables [${missing.join(",")}] missing`);
  if (e.containerId && !ID_RE.test(e.containerId)) {
    throw cniError(CNI_ERR.invalidEnv, `invalid characters in CNI_CONTAINERID ${JSON.stringify(e.containerId)}`);
  }
  if (e.ifname) {
    try {
      validateIfName(e.ifname, "CNI_IFNAME");
    } catch (x) {
      throw cniError(CNI_ERR.invalidEnv, `CNI_IFNAME: ${(x as Error).message}`);
    }
  }
  if ((e.command === "ADD" || e.command === "CHECK") && !existsSync(e.netns)) {
    throw cniError(CNI_ERR.invalidNetns, `failed to open netns ${JSON.stringify(e.netns)}: no such file or directory`);
  }
  if (e.command === "ADD" || e.command === "CHECK") requireNetns(e.netns);
  return e;
}

/** True when `path` is a namespace file (nsfs: a bind mount under /run/netns or /proc/PID/ns/net). */
export function isNetnsPath(path: string): boolean {
  if (!path.startsWith("/") || /\s/.test(path)) return false;
  try {
    return statSync(path).dev === statSync("/proc/self/ns/net").dev;
  } catch {
    return false;
  }
}

function requireNetns(path: string): void {
  if (!path.startsWith("/")) throw cniError(CNI_ERR.invalidNetns, `CNI_NETNS ${JSON.stringify(path)} is not an absolute path`);
  if (/\s/.test(path)) throw cniError(CNI_ERR.invalidNetns, `CNI_NETNS ${JSON.stringify(path)} contains whitespace`);
  if (!isNetnsPath(path)) throw cniError(CNI_ERR.invalidNetns, `CNI_NETNS ${JSON.stringify(path)} is not a network namespace`);
}

export function parseConf(stdin: string): NetConf {
  let v: unknown;
  try {
    v = JSON.parse(stdin);
  } catch (e) {
    throw cniError(CNI_ERR.decodeFailure, `error parsing configuration: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw cniError(CNI_ERR.decodeFailure, "network configuration must be a JSON object");
  const c = v as NetConf;
  if (typeof c.cniVersion !== "string" && c.cniVersion !== undefined) throw cniError(CNI_ERR.decodeFailure, "cniVersion must be a string");
  return c;
}

function validateConf(c: NetConf, verb: Verb): void {
  requireSupported(c.cniVersion);
  if (verb === "VERSION") return;
  if (typeof c.name !== "string" || !ID_RE.test(c.name)) {
    throw cniError(CNI_ERR.invalidConfig, `invalid network name ${JSON.stringify(c.name)}: must match ${ID_RE}`);
  }
  if (typeof c.type !== "string" || c.type === "" || /[/\\]/.test(c.type)) {
    throw cniError(CNI_ERR.invalidConfig, `invalid plugin type ${JSON.stringify(c.type)}`);
  }
}

/** The previous result of a chain, typed, or undefined for the first plugin. */
export function prevResultOf(c: NetConf): CniResult | undefined {
  return c.prevResult === undefined || c.prevResult === null ? undefined : parseResult(c.prevResult, c.cniVersion);
}

export async function runPlugin(plugin: CniPlugin, rawEnv: Record<string, string | undefined>, stdin: string): Promise<PluginOutput> {
  let version = LATEST;
  try {
    const env = readEnv(rawEnv);
    const conf = parseConf(stdin);
    if (typeof conf.cniVersion === "string") version = conf.cniVersion;
    if (env.command === "VERSION") {
      // answer whatever version was asked: runtimes probe with several
      return ok({ cniVersion: LATEST, supportedVersions: SUPPORTED_VERSIONS });
    }
    validateConf(conf, env.command);
    switch (env.command) {
      case "ADD": {
        const r = await plugin.add(conf, env);
        return ok(resultToJson(r, conf.cniVersion));
      }
      case "DEL":
        await plugin.del(conf, env);
        return { stdout: "", exitCode: 0 };
      case "CHECK":
        if (!conf.cniVersion.startsWith("0.3")) await plugin.check(conf, env);
        else throw cniError(CNI_ERR.incompatibleVersion, `config version ${conf.cniVersion} does not allow CHECK`);
        return { stdout: "", exitCode: 0 };
      case "STATUS":
        await plugin.status?.(conf, env);
        return { stdout: "", exitCode: 0 };
      case "GC":
        await plugin.gc?.(conf, env);
        return { stdout: "", exitCode: 0 };
    }
  } catch (e) {
    const ce: CniError = toCniError(e);
    if (!(SUPPORTED_VERSIONS as readonly string[]).includes(version)) version = LATEST;
    return { stdout: `${JSON.stringify(errorJson(ce, version))}\n`, exitCode: 1 };
  }
  throw new Error("unreachable");
}

function ok(v: unknown): PluginOutput {
  return { stdout: `${JSON.stringify(v)}\n`, exitCode: 0 };
}

/** Parses CNI_ARGS "K=V;K2=V2"; unknown keys are an error unless IgnoreUnknown is set (CONVENTIONS.md). */
export function parseCniArgs(raw: string, known: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw.trim() === "") return out;
  const pairs = raw.split(";").filter((p) => p !== "");
  const kv: [string, string][] = pairs.map((p) => {
    const i = p.indexOf("=");
    if (i <= 0) throw cniError(CNI_ERR.invalidEnv, `ARGS: invalid pair ${JSON.stringify(p)}`);
    return [p.slice(0, i), p.slice(i + 1)];
  });
  const ignore = kv.some(([k, v]) => k === "IgnoreUnknown" && /^(1|true)$/i.test(v));
  for (const [k, v] of kv) {
    if (k === "IgnoreUnknown") continue;
    if (!known.includes(k)) {
      if (ignore) continue;
      throw cniError(CNI_ERR.invalidEnv, `ARGS: unknown args ${JSON.stringify(k)}`);
    }
    out[k] = v;
  }
  return out;
}
