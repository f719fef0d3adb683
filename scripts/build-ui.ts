/**
 * Builds the web UI (ui/, Preact + cytoscape) into a static app: `bun scripts/build-ui.ts [OUTDIR]`
 * (default dist/ui, where berthd --ui finds it). Minified, no source maps, hashed asset names.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";

async function main(): Promise<number> {
  const root = join(import.meta.dir, "..");
  const outdir = process.argv[2] ?? join(root, "dist", "ui");
  rmSync(outdir, { recursive: true, force: true });
  const r = await Bun.build({
    entrypoints: [join(root, "ui", "index.html")],
    outdir,
    minify: true,
    target: "browser",
    naming: { entry: "[name].[ext]", chunk: "[name]-[hash].[ext]", asset: "[name]-[hash].[ext]" },
    define: { "process.env.NODE_ENV": '"production"' },
  });
  if (!r.success) {
    for (const m of r.logs) console.error(m);
    return 1;
  }
  return 0;
}

main().then((code) => process.exit(code));
