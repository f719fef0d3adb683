/**
 * Multi-call entry point: dispatches on the name it was started under
 * (berthd, berth, or a CNI plugin name such as bridge/host-local) or on the
 * first argument (`main.ts berthd ...`, `main.ts cni-plugin bridge`). Modules load
 * lazily so a CNI plugin process does not pay for the CLI or the daemon.
 */
import { basename } from "node:path";

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const name = basename(process.argv0);
  if (name === "berthd" || argv[0] === "berthd") {
    const { berthdMain } = await import("./daemon/main.ts");
    return berthdMain(name === "berthd" ? argv : argv.slice(1));
  }
  if (name === "berth" || name === "bun" || name === "main.ts") {
    if (argv[0] === "cni-plugin" && argv[1]) {
      const { cniMain } = await import("./cni/main.ts");
      return cniMain(argv[1]);
    }
    const { berthMain } = await import("./cli/main.ts");
    return berthMain(argv);
  }
  const { cniMain } = await import("./cni/main.ts");
  return cniMain(name);
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
