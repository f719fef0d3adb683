// The firewall's incremental path against the kernel: after a series of endpoint changes, each
// sent as element changes, the tables hold exactly what a whole replace of the final state gives;
// a change to the kernel's tables behind Berth's back makes the delta fail and the sync replace
// them whole; an unchanged state sends nothing; and the firewall knows when nobody else touched
// nftables since its own transactions (the reconciler's reason not to list the tables).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import type { DesiredFirewall, EndpointFirewall, KeyedFirewallState } from "../../src/firewall/desired.ts";
import { Firewall } from "../../src/firewall/firewall.ts";
import { IP, MAC, Prefix } from "../../src/net/index.ts";
import { assertRootUntouched, createSandbox, nftJson, type Sandbox } from "../harness/sandbox.ts";

assertRootUntouched();

const net = { bridge: "br-d", internal: false, masquerade: [Prefix.parse("10.77.0.0/24")] };
const id = (i: number) => i.toString(16).padStart(64, "0");
const endpoint = (i: number, ports: number[] = []): EndpointFirewall => ({
  sources: [{ port: `vbd${i}`, mac: MAC.parse(`02:42:0a:4d:00:${(i + 16).toString(16)}`), addresses: [IP.parse(`10.77.0.${i}`), IP.parse(`fd77::${i}`)] }],
  ports: ports.map((hostPort) => ({ hostIP: undefined, protocol: "tcp" as const, hostPort, target: IP.parse(`10.77.0.${i}`), targetPort: 80 })),
  open: [],
});

/** A desired state the test changes endpoint by endpoint. */
class TestState implements DesiredFirewall {
  readonly eps = new Map<string, EndpointFirewall>();
  async whole(): Promise<KeyedFirewallState> {
    return { networks: [net], endpoints: new Map(this.eps) };
  }
  async endpoints(ids: ReadonlySet<string>): Promise<ReadonlyMap<string, EndpointFirewall>> {
    return new Map([...ids].filter((i) => this.eps.has(i)).map((i) => [i, this.eps.get(i)!]));
  }
}

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

  test("endpoint deltas end where a whole replace of the final state ends", async () => {
    const dp = new Dataplane({ hostNs: a.host });
    const state = new TestState();
    const fw = new Firewall(dp, a.host, state);
    let nftCalls = 0;
    const real = dp.nftApply.bind(dp);
    dp.nftApply = (ns, script) => {
      nftCalls++;
      return real(ns, script);
    };
    state.eps.set(id(2), endpoint(2));
    await fw.sync();
    const steps: [number, EndpointFirewall | undefined][] = [
      [3, endpoint(3, [8080])],
      [4, endpoint(4, [8081])],
      [2, undefined],
      [3, endpoint(3, [9000])], // a published port replaced: map element deleted by key, then added
      [4, undefined],
    ];
    for (const [i, e] of steps) {
      if (e) state.eps.set(id(i), e);
      else state.eps.delete(id(i));
      await fw.sync({ endpoint: id(i) });
    }
    expect(nftCalls).toBe(1 + steps.length);
    // the same state again, by endpoint or whole: nothing to send
    await fw.sync({ endpoint: id(3) });
    await fw.sync();
    expect(nftCalls).toBe(1 + steps.length);

    const fresh = new Firewall(new Dataplane({ hostNs: b.host }), b.host, state);
    await fresh.sync();
    expect(elements(a.host)).toEqual(elements(b.host));
    expect(elements(a.host)["bridge src4"]!.length).toBe(1);
    expect(elements(a.host)["inet ports4"]!.length).toBe(1);
  });

  test("a table deleted behind Berth's back: the delta fails and the tables are replaced whole", async () => {
    const dp = new Dataplane({ hostNs: a.host });
    const state = new TestState();
    state.eps.set(id(2), endpoint(2, [8080]));
    const fw = new Firewall(dp, a.host, state);
    await fw.sync();
    await dp.nftDeleteTable(a.host, "bridge", "berth");
    state.eps.set(id(3), endpoint(3));
    await fw.sync({ endpoint: id(3) });
    const fresh = new Firewall(new Dataplane({ hostNs: b.host }), b.host, state);
    await fresh.sync();
    expect(elements(a.host)).toEqual(elements(b.host));
    expect(elements(a.host)["bridge ports"]!.length).toBe(2);
  });

  test("untouched while only Berth changed nftables; unknown after anyone else's transaction", async () => {
    const dp = new Dataplane({ hostNs: a.host });
    const state = new TestState();
    state.eps.set(id(2), endpoint(2, [8080]));
    const fw = new Firewall(dp, a.host, state);
    await fw.sync();
    expect((await fw.untouched())?.get("bridge src4")).toBe(1);
    state.eps.set(id(3), endpoint(3));
    await fw.sync({ endpoint: id(3) });
    expect((await fw.untouched())?.get("bridge src4")).toBe(2);
    // a foreign table in the same namespace is a transaction too: Berth cannot tell what it changed
    await dp.nftApply(a.host, "add table inet foreign\n");
    expect(await fw.untouched()).toBeUndefined();
    const gen = await fw.currentGeneration();
    await fw.confirm(gen!, new Map([["bridge src4", 2]]));
    expect((await fw.untouched())?.get("bridge src4")).toBe(2);
    await dp.nftDeleteTable(a.host, "inet", "foreign");
  });
});
