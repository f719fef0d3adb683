/**
 * Process spawning for the dataplane: every kernel tool Berth runs goes through here,
 * so errors are uniform (a BerthError naming the command and its stderr).
 */
import { systemError } from "../errors.ts";

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface RunOptions {
  stdin?: string;
  /** Do not throw on a non-zero exit; return the result instead. */
  allowFailure?: boolean;
  env?: Record<string, string>;
}

export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const proc = Bun.spawn([...argv], {
    stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
    ...(opts.env ? { env: opts.env } : {}),
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (exitCode !== 0 && !opts.allowFailure) {
    throw systemError(
      "command-failed",
      `${argv.join(" ")}${opts.stdin !== undefined ? " <<script>>" : ""} failed (exit ${exitCode}): ${stderr.trim() || stdout.trim()}`,
    );
  }
  return { stdout, stderr, exitCode };
}

export function runSync(argv: readonly string[], opts: RunOptions = {}): RunResult {
  const r = Bun.spawnSync([...argv], {
    stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
    ...(opts.env ? { env: opts.env } : {}),
  });
  const res = { stdout: r.stdout.toString(), stderr: r.stderr.toString(), exitCode: r.exitCode ?? -1 };
  if (res.exitCode !== 0 && !opts.allowFailure) {
    throw systemError("command-failed", `${argv.join(" ")} failed (exit ${res.exitCode}): ${res.stderr.trim()}`);
  }
  return res;
}
