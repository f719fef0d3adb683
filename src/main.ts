/**
 * Multi-call entry point: dispatches on the name it was started under
 * (berthd, berth, or a CNI plugin name such as bridge/host-local) or on the
 * first argument (`main.ts berthd ...`, `main.ts cni-plugin bridge`). Modules load
 * lazily so a CNI plugin process does not pay for the CLI or the daemon.
 */
import { basename } from "node:path";
import { PLUGIN_NAMES } from "./cni/registry.ts";

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const name = basename(process.argv0);
  // the portmap plugin's [::1] forwarder (started by the plugin under whatever name it runs)
  if (argv[0] === "portmap-forwarder") {
    longRunning();
    const { forwarderMain } = await import("./cni/plugins/portmap-forwarder.ts");
    return forwarderMain(argv.slice(1));
  }
  if (name === "berthd" || argv[0] === "berthd") {
    longRunning();
    const { berthdMain } = await import("./daemon/main.ts");
    return berthdMain(name === "berthd" ? argv : argv.slice(1));
  }
  const plugin = PLUGIN_NAMES.includes(name) ? name : argv[0] === "cni-plugin" ? argv[1] : undefined;
  if (plugin) {
    const { cniMain } = await import("./cni/main.ts");
    return cniMain(plugin);
  }
  // started as berth, or through the runtime (bun, bun.exe, a differently named copy)
  const { berthMain } = await import("./cli/main.ts");
  return berthMain(argv);
}

/**
 * The compiled binary starts with the JIT's tier-up thresholds raised (build.sh:
 * --compile-jit-policy): a CNI plugin or CLI process ends before compiling its
 * code would pay back (~1 ms per process). A daemon goes back to the normal policy.
 */
function longRunning(): void {
  Bun.unsafe.setJITPolicy(1);
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
