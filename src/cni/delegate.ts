/**
 * Delegation (SPEC.md "Delegated plugins"): an upper plugin runs its IPAM
 * plugin with the same environment and the full config. Berth's own plugins run
 * in-process (no exec, no second start-up); others are executed from CNI_PATH.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CNI_ERR, CniError, cniError } from "./errors.ts";
import { loadPlugin } from "./registry.ts";
import { type CniEnv, runPlugin, type Verb } from "./skel.ts";
import { type CniResult, type NetConf, parseResult } from "./types.ts";

export function envFor(env: CniEnv, command: Verb): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: env.containerId,
    CNI_NETNS: env.netns,
    CNI_IFNAME: env.ifname,
    CNI_ARGS: env.args,
    CNI_PATH: env.path.join(":"),
  };
}

export function findInPath(type: string, path: readonly string[]): string | undefined {
  for (const dir of path) {
    const p = join(dir, type);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Runs plugin `type` for `command` with `conf` on stdin; returns its stdout. */
export async function execPlugin(type: string, command: Verb, conf: unknown, env: CniEnv): Promise<string> {
  const stdin = JSON.stringify(conf);
  const e = envFor(env, command);
  const own = await loadPlugin(type);
  let out: { stdout: string; exitCode: number };
  if (own && process.env.BERTH_CNI_NO_INPROCESS !== "1") {
    out = await runPlugin(own, e, stdin);
  } else {
    const bin = findInPath(type, env.path);
    if (!bin) throw cniError(CNI_ERR.invalidConfig, `failed to find plugin ${JSON.stringify(type)} in path [${env.path.join(" ")}]`);
    const p = Bun.spawn([bin], { stdin: new TextEncoder().encode(stdin), stdout: "pipe", stderr: "inherit", env: { ...process.env, ...e } });
    const [stdout, exitCode] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    out = { stdout, exitCode };
  }
  if (out.exitCode !== 0) {
    let code: number = CNI_ERR.internal;
    let msg = out.stdout.trim() || `plugin ${type} failed with exit code ${out.exitCode}`;
    let details = "";
    try {
      const j = JSON.parse(out.stdout) as { code?: number; msg?: string; details?: string };
      code = j.code ?? code;
      msg = j.msg ?? msg;
      details = j.details ?? "";
    } catch {
      /* not JSON */
    }
    throw new CniError(code, msg, details);
  }
  return out.stdout;
}

/** Delegates to the IPAM plugin named in conf.ipam.type. */
export async function delegateIpam(command: Verb, conf: NetConf, env: CniEnv): Promise<CniResult | undefined> {
  const type = conf.ipam?.type;
  if (!type) throw cniError(CNI_ERR.invalidConfig, "missing ipam.type in network configuration");
  const out = await execPlugin(type, command, conf, env);
  return command === "ADD" ? parseResult(JSON.parse(out), conf.cniVersion) : undefined;
}
