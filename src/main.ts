/**
 * Multi-call entry point: dispatches on the name it was started under
 * (berthd, berth) or on the first argument (`main.ts berthd ...`).
 */
import { basename } from "node:path";
import { berthMain } from "./cli/main.ts";
import { berthdMain } from "./daemon/main.ts";

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const name = basename(process.argv0);
  if (name === "berthd") return berthdMain(argv);
  if (argv[0] === "berthd") return berthdMain(argv.slice(1));
  return berthMain(argv);
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
