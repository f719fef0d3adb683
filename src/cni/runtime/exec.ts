/**
 * How the runtime runs a plugin: find `type` in CNI_PATH, execute it with the
 * CNI_* environment and the request on stdin, and turn its answer into a result
 * object or a CniError (SPEC.md "Execution protocol"). Injectable so unit tests
 * can swap the transport.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { CNI_ERR, CniError, cniError } from "../errors.ts";

export type RuntimeVerb = "ADD" | "DEL" | "CHECK" | "GC" | "STATUS" | "VERSION";

export interface ExecRequest {
  type: string;
  command: RuntimeVerb;
  /** CNI_* variables besides CNI_COMMAND and CNI_PATH. */
  env: Record<string, string>;
  path: string[];
  stdin: string;
}

export type PluginExec = (req: ExecRequest) => Promise<Record<string, unknown> | undefined>;

export function findPlugin(type: string, path: readonly string[]): string | undefined {
  for (const dir of path) {
    const p = join(dir, type);
    try {
      if (existsSync(p) && statSync(p).isFile()) return p;
    } catch {
      /* unreadable: try the next dir */
    }
  }
  return undefined;
}

/** A plugin's failure as a CniError, from its error JSON when it printed one. */
export function pluginError(type: string, command: RuntimeVerb, stdout: string, stderr: string, exitCode: number): CniError {
  const verb = command.toLowerCase();
  try {
    const j = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (j && typeof j === "object" && (typeof j.msg === "string" || typeof j.code === "number")) {
      const code = typeof j.code === "number" ? j.code : CNI_ERR.internal;
      const msg = typeof j.msg === "string" ? j.msg : "";
      return new CniError(code, `plugin type=${JSON.stringify(type)} failed (${verb}): ${msg}`, typeof j.details === "string" ? j.details : "");
    }
  } catch {
    /* not JSON */
  }
  const text = (stderr.trim() || stdout.trim()).split("\n").slice(-5).join(" | ");
  return new CniError(CNI_ERR.internal, `plugin type=${JSON.stringify(type)} failed (${verb}): exit code ${exitCode}${text ? `: ${text}` : ""}`);
}

/** Executes plugin binaries from CNI_PATH (the real thing). */
export function binaryExec(opts: { timeoutMs?: number; baseEnv?: Record<string, string | undefined> } = {}): PluginExec {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return async (req) => {
    const bin = findPlugin(req.type, req.path);
    if (!bin) throw cniError(CNI_ERR.invalidConfig, `failed to find plugin ${JSON.stringify(req.type)} in path [${req.path.join(" ")}]`);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(opts.baseEnv ?? process.env)) if (v !== undefined && !k.startsWith("CNI_")) env[k] = v;
    Object.assign(env, req.env, { CNI_COMMAND: req.command, CNI_PATH: req.path.join(":") });
    const started = performance.now();
    const p = Bun.spawn([bin], { stdin: new TextEncoder().encode(req.stdin), stdout: "pipe", stderr: "pipe", env });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      p.kill("SIGKILL");
    }, timeoutMs);
    const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    clearTimeout(timer);
    if (process.env.BERTH_CNI_DEBUG === "1") {
      console.error(`[${req.type} ${req.command}] exit ${exitCode} in ${(performance.now() - started).toFixed(1)} ms${stderr.trim() ? `: ${stderr.trim()}` : ""}`);
    }
    if (timedOut) throw cniError(CNI_ERR.tryAgainLater, `plugin type=${JSON.stringify(req.type)} timed out after ${timeoutMs} ms (${req.command.toLowerCase()})`);
    if (exitCode !== 0) throw pluginError(req.type, req.command, stdout, stderr, exitCode);
    // only ADD and VERSION answer with JSON; other verbs' output is ignored on success
    if ((req.command !== "ADD" && req.command !== "VERSION") || stdout.trim() === "") return undefined;
    try {
      const v = JSON.parse(stdout) as unknown;
      if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
      return v as Record<string, unknown>;
    } catch (e) {
      throw cniError(CNI_ERR.decodeFailure, `plugin type=${JSON.stringify(req.type)} printed invalid JSON (${req.command.toLowerCase()}): ${(e as Error).message}`);
    }
  };
}
