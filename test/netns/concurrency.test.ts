/**
 * Reliability under concurrency (issue "Reliability", part 2):
 *  (a) 50 parallel `POST /berth/containers/run` on one bridge network through a
 *      real berthd, two rounds (everything removed in between): distinct
 *      addresses, exactly 50 allocations in the IPAM utilisation, a sample of
 *      containers reachable from another one, no busy/lock errors;
 *  (b) 50 parallel CNI ADDs of Berth's `bridge` plugin (+ host-local, its own
 *      dataDir), each a separate plugin process, then 50 parallel DELs; and GC
 *      racing ADDs: GC must never remove an allocation of an attachment it was
 *      told to keep, and must remove the stale ones.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { assertRootUntouched, createSandbox, ipJson, RUN_PREFIX, reachable, type Sandbox } from "../harness/sandbox.ts";
import { type CniCall, type CniOut, cniAsync, leases } from "./cni-util.ts";

assertRootUntouched();

const N = 50;

interface RunReply {
  Id: string;
  NetnsName: string;
  Networks: { Addresses: string[] }[];
}

async function apiRaw(d: TestDaemon, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  const r = await fetch(`http://berthd${path}`, {
    unix: d.socket,
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } }),
  });
  return { status: r.status, text: await r.text() };
}

const BUSY_RE = /busy|locked|SQLITE_BUSY|store-busy/i;

describe(`berthd: ${N} parallel container runs on one bridge network, 2 rounds`, () => {
  let sb: Sandbox;
  let d: TestDaemon;
  beforeAll(async () => {
    sb = createSandbox("cc");
    d = await startDaemon(sb);
    await d.api("POST", "/networks/create", { Name: "n", IPAM: { Config: [{ Subnet: "10.124.50.0/24" }] } });
  }, 60_000);
  afterAll(async () => {
    try {
      for (const c of await d.api<{ Id: string }[]>("GET", "/berth/containers")) await apiRaw(d, "DELETE", `/berth/containers/${c.Id}?force=1`);
      await apiRaw(d, "DELETE", "/networks/n");
      await d.stop();
    } finally {
      await sb.cleanup();
    }
  }, 120_000);

  for (const round of [1, 2]) {
    test(`round ${round}: ${N} parallel runs -> ${N} distinct addresses, ${N} allocations, reachable, no busy errors`, async () => {
      const t0 = performance.now();
      const replies = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          apiRaw(d, "POST", "/berth/containers/run", { Name: `r${round}c${i}`, Command: ["sleep", "60"], Networks: [{ Network: "n" }] }),
        ),
      );
      const ms = performance.now() - t0;
      const failed = replies.filter((r) => r.status !== 201);
      expect(failed.map((r) => `${r.status} ${r.text}`)).toEqual([]);
      for (const r of replies) expect(r.text).not.toMatch(BUSY_RE);
      const cs = replies.map((r) => JSON.parse(r.text) as RunReply);
      const addrs = cs.map((c) => c.Networks[0]?.Addresses.find((a) => !a.includes(":")) ?? "");
      expect(addrs.filter((a) => a === "")).toEqual([]);
      expect(new Set(addrs).size).toBe(N);
      // the kernel agrees with the API: each namespace holds exactly its address
      for (const [i, c] of cs.entries()) {
        const held = ipJson<{ ifname: string; addr_info: { family: string; local: string; prefixlen: number }[] }[]>(c.NetnsName, "addr", "show", "eth0")
          .flatMap((l) => l.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`));
        expect(held).toEqual([addrs[i]!]);
      }
      const net = await d.api<{ IPAMUtilisation: { Allocated: number }[]; Containers: Record<string, unknown> }>("GET", "/networks/n");
      expect(net.IPAMUtilisation.reduce((s, u) => s + u.Allocated, 0)).toBe(N);
      expect(Object.keys(net.Containers).length).toBe(N);
      // a sample of 5, pinged from another container
      const from = cs[0]!.NetnsName;
      for (const i of [1, 13, 25, 37, 49]) expect(reachable(from, addrs[i]!.split("/")[0]!)).toBe(true);
      expect(d.logs()).not.toMatch(BUSY_RE);
      console.log(`round ${round}: ${N} parallel runs in ${Math.round(ms)} ms`);

      // remove all (in parallel too) before the next round
      const removed = await Promise.all(cs.map((c) => apiRaw(d, "DELETE", `/berth/containers/${c.Id}?force=1`)));
      expect(removed.filter((r) => r.status !== 204).map((r) => `${r.status} ${r.text}`)).toEqual([]);
      const after = await d.api<{ IPAMUtilisation: { Allocated: number }[]; Containers: Record<string, unknown> }>("GET", "/networks/n");
      expect(after.IPAMUtilisation.reduce((s, u) => s + u.Allocated, 0)).toBe(0);
      expect(Object.keys(after.Containers)).toEqual([]);
      expect(await d.api<unknown[]>("GET", "/berth/containers")).toEqual([]);
    }, 180_000);
  }
});

describe(`CNI bridge + host-local: ${N} parallel ADDs, ${N} parallel DELs, GC racing ADDs`, () => {
  let sb: Sandbox;
  let dataDir: string;
  const nss: string[] = [];
  beforeAll(() => {
    sb = createSandbox("cn");
    dataDir = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}cc-cni-`));
    for (let i = 0; i < N; i++) nss.push(sb.netns(`k${i}`));
  }, 60_000);
  afterAll(async () => {
    await sb.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  const conf = (name: string, bridge: string, subnet: string, extra: Record<string, unknown> = {}) => ({
    cniVersion: "1.1.0",
    name,
    type: "bridge",
    bridge,
    isGateway: true,
    ipam: { type: "host-local", dataDir, subnet },
    ...extra,
  });
  const call = (c: Omit<CniCall, "host" | "plugin">): Promise<CniOut> => cniAsync({ host: sb.host, plugin: "bridge", ifname: "eth0", ...c });
  const fail = (o: CniOut[]) => o.filter((x) => x.code !== 0).map((x) => `${x.code} ${x.stdout.trim()} ${x.stderr.trim()}`);

  test(`${N} parallel ADDs then ${N} parallel DELs: all succeed, distinct addresses, no lost allocation`, async () => {
    const c = conf("cc1", "brc1", "10.88.1.0/24");
    let t0 = performance.now();
    const adds = await Promise.all(nss.map((ns, i) => call({ command: "ADD", conf: c, containerId: `ctr${i}`, netns: ns })));
    const addMs = performance.now() - t0;
    let delMs = 0;
    let dels: CniOut[] = [];
    try {
      expect(fail(adds)).toEqual([]);
      const addrs = adds.map((a) => String(a.json?.ips?.[0]?.address ?? ""));
      expect(addrs.filter((a) => a === "")).toEqual([]);
      expect(new Set(addrs).size).toBe(N);
      const held = await leases(dataDir, "cc1");
      expect(held.length).toBe(N);
      expect(held.map((l) => l.split("=")[1]).sort()).toEqual(addrs.map((a) => a.split("/")[0]!).sort());
      // every namespace holds the address its ADD reported
      for (const [i, ns] of nss.entries()) {
        const got = ipJson<{ addr_info: { family: string; local: string; prefixlen: number }[] }[]>(ns, "addr", "show", "eth0")
          .flatMap((l) => l.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`));
        expect(got).toEqual([addrs[i]!]);
      }
      expect(reachable(nss[0]!, addrs[N - 1]!.split("/")[0]!)).toBe(true);
    } finally {
      // the DELs run whatever failed above, so the next test starts from empty namespaces
      t0 = performance.now();
      dels = await Promise.all(nss.map((ns, i) => call({ command: "DEL", conf: c, containerId: `ctr${i}`, netns: ns })));
      delMs = performance.now() - t0;
    }
    expect(fail(dels)).toEqual([]);
    expect(await leases(dataDir, "cc1")).toEqual([]);
    for (const ns of nss) expect(ipJson<{ ifname: string }[]>(ns, "link", "show").map((l) => l.ifname)).toEqual(["lo"]);
    console.log(`CNI: ${N} parallel ADDs in ${Math.round(addMs)} ms, ${N} parallel DELs in ${Math.round(delMs)} ms`);
  }, 180_000);

  test(`GC racing ${N} ADDs: stale leases removed, no kept ADD allocation removed`, async () => {
    const base = conf("cc2", "brc2", "10.88.2.0/24");
    // stale leases: attachments the runtime no longer knows (IPAM-only ADDs, no kernel objects)
    const stale = Array.from({ length: 10 }, (_, i) => `stale${i}`);
    const staleAdds = await Promise.all(
      stale.map((id) =>
        cniAsync({ host: sb.host, plugin: "host-local", command: "ADD", containerId: id, ifname: "eth0", netns: nss[0]!, conf: { ...base, type: "host-local" } }),
      ),
    );
    expect(fail(staleAdds)).toEqual([]);
    expect((await leases(dataDir, "cc2")).length).toBe(stale.length);
    // the runtime's GC list: every attachment it is creating right now (not the stale ones)
    const keep = nss.map((_, i) => ({ containerID: `gc${i}`, ifname: "eth0" }));
    const gcConf = { ...base, "cni.dev/valid-attachments": keep };
    const t0 = performance.now();
    const [adds, gcs] = await Promise.all([
      Promise.all(nss.map((ns, i) => call({ command: "ADD", conf: base, containerId: `gc${i}`, netns: ns }))),
      // several GCs spread over the ADD window
      Promise.all(
        [0, 150, 400, 800, 1500].map(async (delay) => {
          await Bun.sleep(delay);
          return call({ command: "GC", conf: gcConf });
        }),
      ),
    ]);
    const ms = performance.now() - t0;
    expect(fail(adds)).toEqual([]);
    expect(fail(gcs)).toEqual([]);
    const addrs = adds.map((a) => String(a.json?.ips?.[0]?.address ?? "").split("/")[0]!);
    expect(new Set(addrs).size).toBe(N);
    // the racing GCs did their job while ADDs were writing: no stale lease left, every kept one there
    const raced = await leases(dataDir, "cc2");
    expect(raced.filter((l) => l.startsWith("stale"))).toEqual([]);
    expect(raced.length).toBe(N);
    // and one more GC once all ADDs are done changes nothing
    expect(fail([await call({ command: "GC", conf: gcConf })])).toEqual([]);
    const held = await leases(dataDir, "cc2");
    expect(held.filter((l) => l.startsWith("stale"))).toEqual([]);
    expect(held.length).toBe(N);
    expect(held.map((l) => l.split("=")[1]).sort()).toEqual([...addrs].sort());
    const dels = await Promise.all(nss.map((ns, i) => call({ command: "DEL", conf: base, containerId: `gc${i}`, netns: ns })));
    expect(fail(dels)).toEqual([]);
    expect(await leases(dataDir, "cc2")).toEqual([]);
    console.log(`CNI: ${N} ADDs + 6 GCs in ${Math.round(ms)} ms`);
  }, 180_000);
});
