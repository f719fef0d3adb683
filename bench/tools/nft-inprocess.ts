/**
 * One nft call in-process (libnftables through bun:ffi, src/dataplane/nft-ffi.ts)
 * against the spawned `nsenter … nft` (BERTH_NFT=spawn), through the same
 * Dataplane methods, inside a throwaway sandbox namespace (never the host's).
 *
 *   bun bench/tools/nft-inprocess.ts [N=200]
 *
 * Prints p50 / p90 / mean in ms per operation and path.
 */
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { nftInProcessAvailable } from "../../src/dataplane/nft-ffi.ts";
import { createSandbox } from "../../test/harness/sandbox.ts";

const N = Number(process.argv[2] ?? 200);

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return `p50 ${q(0.5).toFixed(2)}  p90 ${q(0.9).toFixed(2)}  mean ${mean.toFixed(2)}`;
}

async function main(): Promise<void> {
  if (!nftInProcessAvailable()) throw new Error("libnftables is not usable here");
  const sb = createSandbox("nftb");
  const dp = new Dataplane();
  const ns = sb.host;
  try {
    await dp.nftApply(
      ns,
      `table inet bench {
  set users { type ipv4_addr; }
  chain post { type nat hook postrouting priority srcnat; policy accept; ip saddr @users masquerade; }
}
`,
    );
    const ops: [string, (i: number) => Promise<unknown>][] = [
      ["nftApply: add one set element", (i) => dp.nftApply(ns, `add element inet bench users { 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255} }\n`)],
      [
        "nftApply: replace a small table (flush + 3 rules)",
        (i) =>
          dp.nftApply(
            ns,
            `table inet small {}\nflush table inet small\ntable inet small {\n  chain fw { type filter hook forward priority 0; policy accept;\n    ip saddr 10.1.0.${i & 255} accept\n    ip daddr 10.2.0.0/16 drop\n    ct state established,related accept\n  }\n}\n`,
          ),
      ],
      ["nftListTable (JSON)", () => dp.nftListTable(ns, "inet", "bench")],
      ["nftTry: add element + list chain (JSON)", (i) => dp.nftTry(ns, `add element inet bench users { 10.200.${(i >> 8) & 255}.${i & 255} }\nlist chain inet bench post\n`)],
    ];
    let k = 1;
    for (const [name, op] of ops) {
      const res: Record<string, number[]> = { "in-process": [], spawned: [] };
      for (let i = 0; i < N; i++) {
        // alternate the two paths so drift in machine load hits both alike
        for (const mode of ["in-process", "spawned"] as const) {
          if (mode === "spawned") process.env.BERTH_NFT = "spawn";
          else delete process.env.BERTH_NFT;
          const t0 = performance.now();
          await op(k++);
          res[mode]!.push(performance.now() - t0);
        }
      }
      delete process.env.BERTH_NFT;
      console.log(`${name}\n  in-process: ${stats(res["in-process"]!)}\n  spawned:    ${stats(res.spawned!)}`);
    }
  } finally {
    await sb.cleanup();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
