// The firewall's incremental path against the kernel: after a series of element-only changes
// the tables hold exactly what a whole replace of the final state gives, a change to the
// kernel's tables behind Berth's back makes the delta fail and the sync replace them whole,
// and an unchanged state spawns no nft at all.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { Firewall } from "../../src/firewall/firewall.ts";
import type { FirewallState } from "../../src/firewall/ruleset.ts";
import { IP, MAC, Prefix } from "../../src/net/index.ts";
import { assertRootUntouched, createSandbox, nftJson, type Sandbox } from "../harness/sandbox.ts";

assertRootUntouched();

const net = { bridge: "br-d", internal: false, masquerade: [Prefix.parse("10.77.0.0/24")] };
const src = (i: number) => ({ port: `vbd${i}`, mac: MAC.parse(`02:42:0a:4d:00:${(i + 16).toString(16)}`), addresses: [IP.parse(`10.77.0.${i}`)] });
const port = (hostPort: number, i: number) => ({ hostIP: undefined, protocol: "tcp" as const, hostPort, target: IP.parse(`10.77.0.${i}`), targetPort: 80 });
const state = (eps: number[], ports: number[]): FirewallState => ({ networks: [net], ports: ports.map((p, k) => port(p, eps[k % eps.length]!)), sources: eps.map(src) });

/** Every set/map of both tables with its elements, order-free. */
function elements(ns: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const fam of ["inet", "bridge"]) {
    for (const o of nftJson(ns, "list", "table", fam, "berth").nftables) {
      const s = (o.set ?? o.map) as { name: string; elem?: unknown[] } | undefined;
      if (s) out[`${fam} ${s.name}`] = (s.elem ?? []).map((e) => JSON.stringify(e)).sort();
    }
  }
  return out;
}

describe("firewall element deltas in the kernel", () => {
  let a: Sandbox;
  let b: Sandbox;
  beforeAll(() => {
    a = createSandbox("fda");
    b = createSandbox("fdb");
  });
  afterAll(async () => {
    await a.cleanup();
    await b.cleanup();
  });

  test("deltas end where a whole replace of the final state ends", async () => {
    const dp = new Dataplane({ hostNs: a.host });
    const fw = new Firewall(dp, a.host);
    const steps = [state([2], []), state([2, 3], [8080]), state([2, 3, 4], [8080, 8081]), state([3, 4], [8081, 9000]), state([4], [])];
    let nftCalls = 0;
    const real = dp.nftApply.bind(dp);
    dp.nftApply = (ns, script) => {
      nftCalls++;
      return real(ns, script);
    };
    for (const s of steps) await fw.sync(async () => s);
    expect(nftCalls).toBe(steps.length);
    // the same state again: nothing to send
    await fw.sync(async () => steps.at(-1)!);
    expect(nftCalls).toBe(steps.length);

    const fresh = new Firewall(new Dataplane({ hostNs: b.host }), b.host);
    await fresh.sync(async () => steps.at(-1)!);
    expect(elements(a.host)).toEqual(elements(b.host));
    expect(elements(a.host)["bridge src4"]!.length).toBe(1);
  });

  test("a table deleted behind Berth's back: the delta fails and the tables are replaced whole", async () => {
    const dp = new Dataplane({ hostNs: a.host });
    const fw = new Firewall(dp, a.host);
    await fw.sync(async () => state([2], [8080]));
    await dp.nftDeleteTable(a.host, "bridge", "berth");
    await fw.sync(async () => state([2, 3], [8080]));
    const fresh = new Firewall(new Dataplane({ hostNs: b.host }), b.host);
    await fresh.sync(async () => state([2, 3], [8080]));
    expect(elements(a.host)).toEqual(elements(b.host));
    expect(elements(a.host)["bridge ports"]!.length).toBe(2);
  });
});
