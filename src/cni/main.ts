/** Entry of a CNI plugin process: the multi-call binary started under a plugin's name. */
import { fstatSync, readFileSync } from "node:fs";
import { cniError, CNI_ERR, errorJson } from "./errors.ts";
import { errorCodeOf, oplogPath, recordOp } from "./oplog.ts";
import { loadPlugin } from "./registry.ts";
import { runPlugin } from "./skel.ts";
import { LATEST } from "./version.ts";

export async function cniMain(name: string): Promise<number> {
  const plugin = await loadPlugin(name);
  if (!plugin) {
    console.log(JSON.stringify(errorJson(cniError(CNI_ERR.invalidConfig, `unknown plugin ${name}`), LATEST)));
    return 1;
  }
  const stdin = process.env.CNI_COMMAND === "VERSION" && stdinIsTerminal() ? "{}" : readStdin();
  const t0 = performance.now();
  const out = await runPlugin(plugin, process.env, stdin);
  recordOp(oplogPath(process.env), {
    plugin: name,
    verb: process.env.CNI_COMMAND || "unknown",
    seconds: (performance.now() - t0) / 1000,
    code: out.exitCode === 0 ? 0 : errorCodeOf(out.stdout),
  });
  if (out.exitCode !== 0 || process.env.BERTH_LOG_LEVEL === "debug") {
    // structured log line on stderr (runtimes pass it through): operation and container in every line
    console.error(
      JSON.stringify({
        time: new Date().toISOString(),
        level: out.exitCode === 0 ? "debug" : "error",
        msg: out.exitCode === 0 ? "cni ok" : "cni failed",
        component: `cni/${name}`,
        op: process.env.CNI_COMMAND ?? "",
        containerId: process.env.CNI_CONTAINERID ?? "",
        ifname: process.env.CNI_IFNAME ?? "",
        ms: Math.round(performance.now() - t0),
        ...(out.exitCode === 0 ? {} : { error: out.stdout.trim() }),
      }),
    );
  }
  // console.log, not process.stdout: the latter costs ~15 ms of start-up in Bun
  if (out.stdout) console.log(out.stdout.trimEnd());
  return out.exitCode;
}

/**
 * The configuration, read synchronously: Bun.stdin.text() starts Bun's thread pool
 * (~0.4 ms, and the exit then waits for its threads), and process.stdin costs ~2.5 ms
 * to set up. No standard input at all reads as empty.
 */
function readStdin(): string {
  try {
    return readFileSync(0, "utf8");
  } catch {
    return "";
  }
}

function stdinIsTerminal(): boolean {
  try {
    return fstatSync(0).isCharacterDevice();
  } catch {
    return false;
  }
}
