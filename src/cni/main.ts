/** Entry of a CNI plugin process: the multi-call binary started under a plugin's name. */
import { cniError, CNI_ERR, errorJson } from "./errors.ts";
import { loadPlugin } from "./registry.ts";
import { runPlugin } from "./skel.ts";
import { LATEST } from "./version.ts";

export async function cniMain(name: string): Promise<number> {
  const plugin = await loadPlugin(name);
  if (!plugin) {
    console.log(JSON.stringify(errorJson(cniError(CNI_ERR.invalidConfig, `unknown plugin ${name}`), LATEST)));
    return 1;
  }
  const stdin = process.env.CNI_COMMAND === "VERSION" && process.stdin.isTTY ? "{}" : await Bun.stdin.text();
  const out = await runPlugin(plugin, process.env, stdin);
  // console.log, not process.stdout: the latter costs ~15 ms of start-up in Bun
  if (out.stdout) console.log(out.stdout.trimEnd());
  return out.exitCode;
}
