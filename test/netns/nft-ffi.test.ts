// nftables in-process (libnftables through bun:ffi, src/dataplane/nft-ffi.ts) against the kernel:
// what it applies is really there (read back with the spawned `nft`), it acts in the namespace it
// is given and nowhere else, its errors are nft's own messages, a failing script changes nothing,
// and every answer equals the spawned nft's (BERTH_NFT=spawn).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { nftInProcess, nftInProcessAvailable, nftInProcessUnavailableReason } from "../../src/dataplane/nft-ffi.ts";
import { listElements } from "../../src/dataplane/nftelem.ts";
import { assertRootUntouched, createSandbox, nftJson, type Sandbox, uniqueName } from "../harness/sandbox.ts";

assertRootUntouched();

const dp = new Dataplane();
const path = (ns: string) => `/run/netns/${ns}`;

function tables(ns: string): string[] {
  return nftJson(ns, "list", "tables").nftables.flatMap((o) => (o.table ? [`${(o.table as { family: string }).family} ${(o.table as { name: string }).name}`] : []));
}

function rootRuleset(): string {
  return Bun.spawnSync(["nft", "list", "ruleset"]).stdout.toString();
}

/** Runs `fn` with nft forced to the spawned binary. */
async function spawned<T>(fn: () => Promise<T>): Promise<T> {
  const prev = process.env.BERTH_NFT;
  process.env.BERTH_NFT = "spawn";
  try {
    return await fn();
  } finally {
    if (prev === undefined) delete process.env.BERTH_NFT;
    else process.env.BERTH_NFT = prev;
  }
}

const TABLE = `table inet zzffi {
  set allowed { type ipv4_addr; flags interval; elements = { 10.9.0.0/24, 10.9.1.7 } }
  set seen { type ipv4_addr; elements = { 10.8.0.1 } }
  chain fw {
    type filter hook forward priority 0; policy accept;
    ip saddr @allowed counter accept comment "from allowed"
    ip daddr 10.9.2.0/24 drop
  }
}
`;

describe("nft in-process (libnftables)", () => {
  let sb: Sandbox;
  let a: string;
  let b: string;
  let rootBefore = "";
  beforeAll(() => {
    sb = createSandbox("nffi");
    a = sb.host;
    b = sb.netns("nffib");
    rootBefore = rootRuleset();
  });
  afterAll(async () => {
    await sb.cleanup();
  });
  afterEach(() => {
    expect(rootRuleset()).toBe(rootBefore);
  });

  test("the library is usable on this machine (the test machine has libnftables1)", () => {
    expect(nftInProcessUnavailableReason()).toBe("");
    expect(nftInProcessAvailable()).toBe(true);
  });

  test("a script applied in-process is in the kernel, in that namespace only", () => {
    const r = nftInProcess(path(a), ["-f", "-"], TABLE);
    expect(r).toEqual({ exitCode: 0, stdout: "", stderr: "" });
    expect(tables(a)).toContain("inet zzffi");
    const j = nftJson(a, "list", "table", "inet", "zzffi");
    const set = j.nftables.find((o) => o.set)?.set as { elem: unknown[] };
    expect(set.elem).toHaveLength(2);
    const rules = j.nftables.filter((o) => o.rule);
    expect(rules).toHaveLength(2);
    expect(JSON.stringify(rules)).toContain("from allowed");
    // B and the root namespace do not have it
    expect(tables(b)).not.toContain("inet zzffi");
    expect(rootRuleset()).not.toContain("zzffi");
  });

  test("Dataplane.nftApply / nftListTable / nftDeleteTable act on the named namespace", async () => {
    await dp.nftApply(b, "add table ip zzb\nadd chain ip zzb c\nadd rule ip zzb c ip saddr 10.1.2.3 accept\n");
    expect(tables(b)).toContain("ip zzb");
    expect(tables(a)).not.toContain("ip zzb");
    const j = await dp.nftListTable(b, "ip", "zzb");
    expect(j?.nftables.filter((o) => o.rule)).toHaveLength(1);
    expect(await dp.nftListTable(a, "ip", "zzb")).toBeUndefined();
    // the same answer as the spawned nft
    expect(await spawned(() => dp.nftListTable(b, "ip", "zzb"))).toEqual(j);
    await dp.nftDeleteTable(b, "ip", "zzb");
    expect(tables(b)).not.toContain("ip zzb");
    // deleting a missing table is fine, as before
    await dp.nftDeleteTable(b, "ip", "zzb");
  });

  test("an absolute namespace path works (CNI_NETNS style)", async () => {
    await dp.nftApply(path(b), "add table inet zzpath\n");
    expect(tables(b)).toContain("inet zzpath");
    await dp.nftDeleteTable(path(b), "inet", "zzpath");
    expect(tables(b)).not.toContain("inet zzpath");
  });

  test("interface names resolve in the target namespace", async () => {
    // zzd0 exists only in A: `iif` needs its index at apply time, so this fails unless the
    // command runs with the thread inside A
    const made = Bun.spawnSync(["ip", "-n", a, "link", "add", "zzd0", "type", "veth", "peer", "name", "zzd1"]);
    expect(made.exitCode).toBe(0);
    await dp.nftApply(a, "add table inet zziif\nadd chain inet zziif c\nadd rule inet zziif c iif \"zzd0\" accept\n");
    expect(JSON.stringify(nftJson(a, "list", "table", "inet", "zziif"))).toContain("zzd0");
    const inB = dp.nftApply(b, "add table inet zziif\nadd chain inet zziif c\nadd rule inet zziif c iif \"zzd0\" accept\n");
    await expect(inB).rejects.toThrow(/Interface does not exist|zzd0/);
    expect(tables(b)).not.toContain("inet zziif");
  });

  test("errors carry nft's own message, the same text as the spawned nft", async () => {
    const bad = [
      "add table inet e1\nadd chain inet e1 c\nadd rule inet e1 c ip saddr 1.2.3.4 acept\n",
      "add element inet nosuch s { 1.2.3.4 }\n",
      "add table inet e2\nadd element inet e2 nosuch { 1.2.3.4 }\n",
      "delete table inet nosuch\n",
    ];
    for (const script of bad) {
      const inproc = await dp.nftApply(a, script).then(
        () => "ok",
        (e: Error) => e.message,
      );
      const spawn = await spawned(() =>
        dp.nftApply(a, script).then(
          () => "ok",
          (e: Error) => e.message,
        ),
      );
      expect(inproc).toMatch(/^nft transaction failed \(netns .*\): \/dev\/stdin:\d+:\d+-\d+: Error: /);
      expect(inproc).toBe(spawn);
    }
    await expect(dp.nftApply(a, "add rule inet nosuch c accept\n")).rejects.toThrow(/\/dev\/stdin:1:\d+-\d+: Error: No such file or directory; did you mean table .zzffi. in family inet\?/);
    await expect(dp.nftApply(a, "add element inet zzffi allowed { 10.9.0.5 }\n")).rejects.toThrow(/File exists|overlap/);
    // single commands (buffer form, like `nft list table ...`): the message too
    const r = await dp.nft(a, ["list", "table", "inet", "nosuch"]);
    const s = await spawned(() => dp.nft(a, ["list", "table", "inet", "nosuch"]));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^Error: No such file or directory/);
    expect(r).toEqual(s);
  });

  test("a failing script changes nothing (one transaction)", async () => {
    const before = nftJson(a, "list", "ruleset");
    const script = `flush table inet zzffi
delete set inet zzffi allowed
add table inet zznew
add chain inet zznew c
add rule inet zzffi fw ip saddr 10.200.0.1 drop
add rule inet nosuch c accept
`;
    await expect(dp.nftApply(a, script)).rejects.toThrow(/No such file or directory/);
    expect(nftJson(a, "list", "ruleset")).toEqual(before);
    expect(tables(a)).not.toContain("inet zznew");
    // the kernel refuses a later line (element overlap in an interval set): still nothing
    const script2 = "add table inet zznew\nadd element inet zzffi allowed { 10.9.0.0/25 }\n";
    await expect(dp.nftApply(a, script2)).rejects.toThrow(/File exists|overlap/);
    expect(nftJson(a, "list", "ruleset")).toEqual(before);
  });

  test("nftTry: commits the script and returns the JSON of its list commands, like `nft -j -f -`", async () => {
    const r = await dp.nftTry(a, "add element inet zzffi seen { 10.8.0.2 }\nlist set inet zzffi seen\n");
    expect(r.ok).toBe(true);
    expect(r.stderr).toBe("");
    // nft runs a list while it builds the transaction: it shows the set as it was before this commit
    const set = (j: typeof r.json) => j?.nftables.find((o) => o.set)?.set as { name: string; elem: unknown[] };
    expect(set(r.json).name).toBe("seen");
    expect(set(r.json).elem).toEqual(["10.8.0.1"]);
    expect(set(nftJson(a, "list", "set", "inet", "zzffi", "seen")).elem).toEqual(["10.8.0.1", "10.8.0.2"]);
    // the spawned path gives the same answer (and really applies its script too)
    const again = "add element inet zzffi seen { 10.8.0.3 }\nlist set inet zzffi seen\n";
    const sp = await spawned(() => dp.nftTry(a, again));
    expect(set(sp.json).elem).toEqual(["10.8.0.1", "10.8.0.2"]);
    const inproc = await dp.nftTry(a, again);
    expect(set(inproc.json).elem).toEqual(["10.8.0.1", "10.8.0.2", "10.8.0.3"]);
    expect(inproc.ok && sp.ok).toBe(true);
    const failed = await dp.nftTry(a, "create element inet zzffi seen { 10.8.0.2 }\nlist set inet zzffi seen\n");
    expect(failed.ok).toBe(false);
    // the list still ran (before the kernel refused the commit), as with nft itself
    expect(set(failed.json).elem).toEqual(["10.8.0.1", "10.8.0.2", "10.8.0.3"]);
    expect(failed.stderr).toMatch(/^\/dev\/stdin:1:\d+-\d+: Error: Could not process rule: File exists/);
    expect(await spawned(() => dp.nftTry(a, "create element inet zzffi seen { 10.8.0.2 }\nlist set inet zzffi seen\n"))).toEqual(failed);
  });

  test("element listing and chain deletion go through it too", async () => {
    const els = await listElements(dp, a, "inet", "zzffi", "set", "allowed");
    expect(els?.map((e) => e.key).sort()).toEqual(["10.9.0.0/24", "10.9.1.7"]);
    expect(await listElements(dp, a, "inet", "nosuch", "set", "allowed")).toBeUndefined();
    await dp.nftApply(a, "add chain inet zzffi spare\n");
    const del = await dp.nft(a, ["delete", "chain", "inet", "zzffi", "spare"]);
    expect(del.exitCode).toBe(0);
    expect(JSON.stringify(nftJson(a, "list", "table", "inet", "zzffi"))).not.toContain("spare");
  });

  test("large answers come back whole", async () => {
    const n = 5000;
    const els: string[] = [];
    for (let i = 0; i < n; i++) els.push(`10.${20 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`);
    await dp.nftApply(a, `add table inet zzbig\nadd set inet zzbig s { type ipv4_addr; }\nadd element inet zzbig s { ${els.join(", ")} }\n`);
    const got = await listElements(dp, a, "inet", "zzbig", "set", "s");
    expect(got).toHaveLength(n);
    await dp.nftDeleteTable(a, "inet", "zzbig");
  });

  test("a namespace that does not exist answers as before (nsenter's message)", async () => {
    const gone = uniqueName("gone");
    expect(await dp.nftListTable(gone, "inet", "x")).toBeUndefined();
    await dp.nftDeleteTable(gone, "inet", "x");
    await expect(dp.nftApply(gone, "add table inet x\n")).rejects.toThrow(/nft transaction failed .*No such file or directory/);
  });

  test("argv it does not handle goes to the spawned nft", async () => {
    expect(nftInProcess(path(a), ["-a", "list", "table", "inet", "zzffi"])).toBeUndefined();
    const r = await dp.nft(a, ["-a", "list", "table", "inet", "zzffi"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/# handle \d+/);
  });

  test("nothing reaches the process's stdout (a CNI plugin's result goes there)", () => {
    const mod = new URL("../../src/dataplane/dataplane.ts", import.meta.url).pathname;
    const code = `import { Dataplane } from ${JSON.stringify(mod)};
const dp = new Dataplane();
await dp.nftApply(${JSON.stringify(b)}, "add table inet zzout\\nlist table inet zzout\\n");
await dp.nftTry(${JSON.stringify(b)}, "list tables\\n");
await dp.nft(${JSON.stringify(b)}, ["list", "table", "inet", "nosuch"]);
await dp.nftApply(${JSON.stringify(b)}, "add rule inet nosuch c accept\\n").catch(() => {});
await dp.nftDeleteTable(${JSON.stringify(b)}, "inet", "zzout");
process.stdout.write("END");`;
    const r = Bun.spawnSync([process.execPath, "-e", code], { stdout: "pipe", stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    expect(r.stdout.toString()).toBe("END");
    expect(r.exitCode).toBe(0);
  });

  test("many calls in one process keep working", async () => {
    for (let i = 0; i < 300; i++) {
      const r = await dp.nft(b, ["-j", "list", "tables"]);
      expect(r.exitCode).toBe(0);
    }
    expect(await dp.nftAvailable()).toBe(true);
  });

  test("a process holding more than 1024 descriptors (berthd with hundreds of containers) keeps working", () => {
    // libnftables select()s on its socket: a descriptor above 1023 made glibc abort berthd
    const r = Bun.spawnSync([process.execPath, join(import.meta.dir, "..", "fixtures", "nft-many-fds.ts"), b], { stdout: "pipe", stderr: "pipe" });
    expect(r.stderr.toString()).not.toContain("FD_SETSIZE");
    expect(r.exitCode).toBe(0);
    const [top, ok] = r.stdout.toString().trim().split(" ");
    expect(ok).toBe("ok");
    expect(Number(top)).toBeGreaterThan(1024);
    const tables = JSON.stringify(nftJson(b, "list", "tables"));
    expect(tables).toContain("manyfds_a");
    expect(tables).toContain("manyfds_b");
  });
});
