// Incremental firewall changes (src/firewall/applied.ts, desired.ts, firewall.ts): the elements kept
// per contributor, the element changes a change of some contributors makes, and the Firewall that
// sends them: after any sequence of changes, applied one endpoint at a time, the tables hold exactly
// what a whole rendering of the final state gives.
import { describe, expect, test } from "bun:test";
import type { Dataplane } from "../../src/dataplane/dataplane.ts";
import { AppliedElements, isEmptyPlan, planScript, touchesAutoMerge } from "../../src/firewall/applied.ts";
import { contributions, type DesiredFirewall, type EndpointFirewall, endpointElements, flattenState, type KeyedFirewallState } from "../../src/firewall/desired.ts";
import { SETS, stateElements } from "../../src/firewall/elements.ts";
import { Firewall } from "../../src/firewall/firewall.ts";
import { type FirewallNetwork, renderBridgeTable, renderTable } from "../../src/firewall/ruleset.ts";
import { IP, MAC, Prefix } from "../../src/net/index.ts";

const net: FirewallNetwork = { bridge: "br-a", internal: false, masquerade: [Prefix.parse("10.1.0.0/24")] };
const id = (i: number) => i.toString(16).padStart(64, "0");
const src = (i: number) => ({ port: `vb${i}`, mac: MAC.parse(`02:42:0a:01:00:0${i}`), addresses: [IP.parse(`10.1.0.${i}`)] });
const port = (hostPort: number, target = "10.1.0.2") => ({ hostIP: undefined, protocol: "tcp" as const, hostPort, target: IP.parse(target), targetPort: 80 });
const ep = (o: Partial<EndpointFirewall> = {}): EndpointFirewall => ({ sources: [], ports: [], open: [], ...o });
const keyed = (eps: [number, EndpointFirewall][], networks = [net]): KeyedFirewallState => ({ networks, endpoints: new Map(eps.map(([i, e]) => [id(i), e])) });
const lines = (script: string) => script.split("\n").filter(Boolean);

describe("element plans", () => {
  test("the same state needs nothing", () => {
    const s = keyed([[2, ep({ sources: [src(2)], ports: [port(8080)] })]]);
    expect(isEmptyPlan(AppliedElements.of(contributions(s)).planWhole(contributions(s)))).toBe(true);
  });

  test("a new endpoint adds its anti-spoofing elements only; removing it deletes exactly those", () => {
    const a = AppliedElements.of(contributions(keyed([[2, ep({ sources: [src(2)] })]])));
    const add = a.plan(new Map([[id(3), endpointElements(ep({ sources: [src(3)] }))]]));
    expect(lines(planScript(add)).sort()).toEqual([
      'add element bridge berth macs { "vb3" . 02:42:0a:01:00:03 }',
      'add element bridge berth ports { "vb3" }',
      'add element bridge berth src4 { "vb3" . 02:42:0a:01:00:03 . 10.1.0.3 }',
    ]);
    a.commit(add);
    expect(lines(planScript(a.plan(new Map([[id(3), []]])))).sort()).toEqual([
      'delete element bridge berth macs { "vb3" . 02:42:0a:01:00:03 }',
      'delete element bridge berth ports { "vb3" }',
      'delete element bridge berth src4 { "vb3" . 02:42:0a:01:00:03 . 10.1.0.3 }',
    ]);
  });

  test("a map element is deleted by its key; a changed value is delete, then add", () => {
    const a = AppliedElements.of(contributions(keyed([[2, ep({ ports: [port(8080), port(9090)] })]])));
    const l = lines(planScript(a.plan(new Map([[id(2), endpointElements(ep({ ports: [port(8080, "10.1.0.5")] }))]]))));
    const del = "delete element inet berth ports4 { 0.0.0.0/0 . tcp . 8080, 0.0.0.0/0 . tcp . 9090 }";
    const add = "add element inet berth ports4 { 0.0.0.0/0 . tcp . 8080 : 10.1.0.5 . 80 }";
    expect(l).toContain(del);
    expect(l).toContain(add);
    expect(l).toContain("delete element inet berth hairpin4 { 10.1.0.2 . 10.1.0.2 }");
    expect(l.indexOf(del)).toBeLessThan(l.indexOf(add));
    expect(l.findLastIndex((x) => x.startsWith("delete"))).toBeLessThan(l.findIndex((x) => x.startsWith("add")));
  });

  test("an element two contributors give stays until the last one goes", () => {
    // two published ports of one container and one of another, all to the same target: one hairpin element
    const s = keyed([
      [2, ep({ ports: [port(8080), port(8081)] })],
      [3, ep({ ports: [port(9090)] })],
    ]);
    const a = AppliedElements.of(contributions(s));
    expect(a.elements("inet hairpin4")).toEqual(["10.1.0.2 . 10.1.0.2"]);
    const gone2 = a.plan(new Map([[id(2), []]]));
    expect(planScript(gone2)).not.toContain("hairpin4");
    a.commit(gone2);
    expect(planScript(a.plan(new Map([[id(3), []]])))).toContain("delete element inet berth hairpin4 { 10.1.0.2 . 10.1.0.2 }");
  });

  test("a new network changes an auto-merge set (nat4): the plan says so", () => {
    const other = { bridge: "br-b", internal: false, masquerade: [Prefix.parse("10.2.0.0/24")] };
    const a = AppliedElements.of(contributions(keyed([])));
    const p = a.planWhole(contributions(keyed([], [net, other])));
    expect(touchesAutoMerge(p)).toBe(true);
    expect(touchesAutoMerge(a.planWhole(contributions(keyed([[2, ep({ sources: [src(2)] })]]))))).toBe(false);
  });

  test("a whole plan takes the elements of endpoints missing from the new state away", () => {
    const a = AppliedElements.of(contributions(keyed([[2, ep({ sources: [src(2)] })], [3, ep({ sources: [src(3)] })]])));
    const p = a.planWhole(contributions(keyed([[3, ep({ sources: [src(3)] })]])));
    expect(lines(planScript(p)).sort()).toEqual([
      'delete element bridge berth macs { "vb2" . 02:42:0a:01:00:02 }',
      'delete element bridge berth ports { "vb2" }',
      'delete element bridge berth src4 { "vb2" . 02:42:0a:01:00:02 . 10.1.0.2 }',
    ]);
  });
});

// ---- random sequences against a model of the kernel's sets ----

/** A minimal kernel: the sets' elements, changed by the `add element` / `delete element` lines of a script. */
class KernelModel {
  readonly sets = new Map<string, Map<string, string>>(); // set -> key -> element
  replace(state: KeyedFirewallState): void {
    this.sets.clear();
    for (const [set, els] of stateElements(flattenState(state))) for (const e of els) this.put(set, e);
  }
  private key(set: string, e: string): string {
    return SETS.get(set)!.map ? e.split(" : ")[0]! : e;
  }
  private put(set: string, e: string): void {
    let m = this.sets.get(set);
    if (!m) {
      m = new Map();
      this.sets.set(set, m);
    }
    if (m.has(this.key(set, e))) throw new Error(`element ${e} of ${set} exists`);
    m.set(this.key(set, e), e);
  }
  apply(script: string): void {
    for (const l of lines(script)) {
      const m = /^(add|delete) element (\S+) berth (\S+) \{ (.*) \}$/.exec(l);
      if (!m) throw new Error(`not an element change: ${l}`);
      const set = `${m[2]} ${m[3]}`;
      for (const e of m[4]!.split(", ")) {
        if (m[1] === "add") this.put(set, e);
        else if (!this.sets.get(set)?.delete(e)) throw new Error(`no element ${e} in ${set}`);
      }
    }
  }
  elements(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const set of SETS.keys()) out[set] = [...(this.sets.get(set)?.values() ?? [])].sort();
    return out;
  }
}

function rendered(state: KeyedFirewallState): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [set, els] of stateElements(flattenState(state))) out[set] = [...els].sort();
  return out;
}

/** A seeded generator, so a failure can be replayed. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

function randomEndpoint(r: (n: number) => number, i: number): EndpointFirewall {
  const v4 = IP.parse(`10.1.${i >> 8}.${i & 0xff}`);
  const v6 = IP.parse(`fd00::${i.toString(16)}`);
  const addrs = r(3) === 0 ? [v4, v6] : [v4];
  const targets = [...addrs, IP.parse(`10.1.0.${r(4)}`)]; // a shared target now and then: shared hairpin elements
  return {
    sources: r(5) === 0 ? [] : [{ port: `vb${i}`, mac: MAC.parse(`02:42:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 0xff).toString(16).padStart(2, "0")}`), addresses: addrs }],
    // host ports of their own (as the controller's port allocation makes them), values that change
    ports: Array.from({ length: r(3) }, (_, k) => {
      const target = targets[r(targets.length)]!;
      const hostIP = r(2) ? undefined : target.family === 4 ? IP.parse("127.0.0.1") : IP.parse("::2");
      return { hostIP, protocol: (["tcp", "udp"] as const)[r(2)]!, hostPort: 1000 + i * 4 + k, target, targetPort: 80 + r(2) };
    }),
    open: r(4) === 0 ? [{ target: v4, protocol: "tcp" as const, port: 443 }] : [],
  };
}

describe("incremental changes match the whole rendering", () => {
  for (const seed of [1, 2, 3, 42, 1234]) {
    test(`random connects, disconnects and port changes (seed ${seed})`, () => {
      const r = rng(seed);
      const eps = new Map<string, EndpointFirewall>();
      const state = (): KeyedFirewallState => ({ networks: [net], endpoints: new Map(eps) });
      const kernel = new KernelModel();
      kernel.replace(state());
      const applied = AppliedElements.of(contributions(state()));
      for (let step = 0; step < 300; step++) {
        const i = r(40);
        const changed = new Set<string>([id(i)]);
        if (eps.has(id(i)) && r(2) === 0) eps.delete(id(i));
        else eps.set(id(i), randomEndpoint(r, i));
        if (r(10) === 0) {
          // two endpoints in one transaction (coalesced syncs)
          const j = r(40);
          changed.add(id(j));
          if (eps.has(id(j))) eps.delete(id(j));
          else eps.set(id(j), randomEndpoint(r, j));
        }
        const plan = applied.plan(new Map([...changed].map((k) => [k, endpointElements(eps.get(k))])));
        expect(touchesAutoMerge(plan)).toBe(false);
        kernel.apply(planScript(plan));
        applied.commit(plan);
        const want = rendered(state());
        expect(kernel.elements()).toEqual(want);
        for (const set of SETS.keys()) expect(applied.elements(set).sort()).toEqual(want[set]!);
      }
      // and a whole plan from there is empty
      expect(isEmptyPlan(applied.planWhole(contributions(state())))).toBe(true);
    });
  }
});

// ---- the Firewall, with a dataplane that records what it is asked ----

interface FakeDp {
  scripts: string[];
  generation: number;
  fail: (script: string) => boolean;
}

function fakeDataplane(): { dp: Dataplane; rec: FakeDp } {
  const rec: FakeDp = { scripts: [], generation: 1, fail: () => false };
  const dp = {
    nftApply: async (_ns: string | null, script: string) => {
      if (rec.fail(script)) throw new Error("nft transaction failed");
      rec.scripts.push(script);
      rec.generation++;
    },
    nftGeneration: async () => rec.generation,
  } as unknown as Dataplane;
  return { dp, rec };
}

class FakeDesired implements DesiredFirewall {
  readonly eps = new Map<string, EndpointFirewall>();
  networks = [net];
  wholeReads = 0;
  endpointReads: string[][] = [];
  async whole(): Promise<KeyedFirewallState> {
    this.wholeReads++;
    return { networks: this.networks, endpoints: new Map(this.eps) };
  }
  async endpoints(ids: ReadonlySet<string>): Promise<ReadonlyMap<string, EndpointFirewall>> {
    this.endpointReads.push([...ids]);
    return new Map([...ids].filter((i) => this.eps.has(i)).map((i) => [i, this.eps.get(i)!]));
  }
}

describe("Firewall", () => {
  test("the first sync replaces the tables; an endpoint's change then sends its elements only, reading only it", async () => {
    const { dp, rec } = fakeDataplane();
    const d = new FakeDesired();
    d.eps.set(id(2), ep({ sources: [src(2)] }));
    const fw = new Firewall(dp, "ns", d);
    await fw.sync();
    expect(rec.scripts.length).toBe(1);
    expect(rec.scripts[0]).toContain("delete table inet berth");
    expect(rec.scripts[0]).toContain(renderBridgeTable(flattenState(await d.whole())));
    d.wholeReads = 0;
    d.eps.set(id(3), ep({ sources: [src(3)] }));
    await fw.sync({ endpoint: id(3) });
    expect(d.wholeReads).toBe(0);
    expect(d.endpointReads).toEqual([[id(3)]]);
    expect(lines(rec.scripts[1]!).every((l) => l.startsWith("add element bridge berth "))).toBe(true);
    // nothing changed: no transaction at all
    await fw.sync({ endpoint: id(3) });
    await fw.sync();
    expect(rec.scripts.length).toBe(2);
  });

  test("changes arriving while a sync runs share the next one: one transaction", async () => {
    const { dp, rec } = fakeDataplane();
    const d = new FakeDesired();
    const fw = new Firewall(dp, "ns", d);
    await fw.sync();
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const read = d.endpoints.bind(d);
    let started = false;
    d.endpoints = async (ids) => {
      started = true;
      await gate;
      return read(ids);
    };
    const first = fw.sync({ endpoint: id(9) });
    while (!started) await Bun.sleep(0); // the first one is running (reading)
    for (const i of [2, 3, 4]) d.eps.set(id(i), ep({ sources: [src(i)] }));
    const joined = [2, 3, 4].map((i) => fw.sync({ endpoint: id(i) }));
    expect(joined[0]).toBe(joined[2]!);
    expect(joined[0]).not.toBe(first);
    release();
    await Promise.all([first, ...joined]);
    expect(d.endpointReads.map((r) => r.sort())).toEqual([[id(9)], [id(2), id(3), id(4)]]);
    expect(rec.scripts.length).toBe(2); // the replace, then one transaction for the three
    expect(lines(rec.scripts[1]!).find((l) => l.includes(" src4 "))).toBe(
      'add element bridge berth src4 { "vb2" . 02:42:0a:01:00:02 . 10.1.0.2, "vb3" . 02:42:0a:01:00:03 . 10.1.0.3, "vb4" . 02:42:0a:01:00:04 . 10.1.0.4 }',
    );
  });

  test("a delta the kernel refuses: the tables are replaced whole with the state", async () => {
    const { dp, rec } = fakeDataplane();
    const d = new FakeDesired();
    const fw = new Firewall(dp, "ns", d);
    await fw.sync();
    d.eps.set(id(2), ep({ sources: [src(2)] }));
    rec.fail = (s) => s.startsWith("add element");
    await fw.sync({ endpoint: id(2) });
    expect(rec.scripts.at(-1)).toContain(renderTable(flattenState(await d.whole())));
    // and from there on deltas again
    rec.fail = () => false;
    d.eps.delete(id(2));
    await fw.sync({ endpoint: id(2) });
    expect(rec.scripts.at(-1)!.startsWith("delete element")).toBe(true);
  });

  test("a network change (auto-merge set) replaces the tables; a failed replace leaves nothing known as applied", async () => {
    const { dp, rec } = fakeDataplane();
    const d = new FakeDesired();
    const fw = new Firewall(dp, "ns", d);
    await fw.sync();
    d.networks = [net, { bridge: "br-b", internal: false, masquerade: [Prefix.parse("10.2.0.0/24")] }];
    await fw.sync();
    expect(rec.scripts.at(-1)).toContain("delete table inet berth");
    rec.fail = () => true;
    d.eps.set(id(2), ep({ sources: [src(2)] }));
    await expect(fw.sync({ endpoint: id(2) })).rejects.toThrow();
    rec.fail = () => false;
    await fw.sync({ endpoint: id(2) }); // nothing known as applied: the whole state, replaced
    expect(rec.scripts.at(-1)).toContain("delete table bridge berth");
    expect(rec.scripts.at(-1)).toContain('"vb2"');
  });

  test("untouched: known while only its own transactions moved the generation", async () => {
    const { dp, rec } = fakeDataplane();
    const d = new FakeDesired();
    d.eps.set(id(2), ep({ sources: [src(2)], ports: [port(8080)] }));
    const fw = new Firewall(dp, "ns", d);
    await fw.sync();
    const sizes = await fw.untouched();
    expect(sizes?.get("bridge src4")).toBe(1);
    expect(sizes?.get("inet ports4")).toBe(1);
    d.eps.set(id(3), ep({ sources: [src(3)] }));
    await fw.sync({ endpoint: id(3) });
    expect((await fw.untouched())?.get("bridge src4")).toBe(2);
    // someone else's transaction: unknown until a listing confirms the sizes
    rec.generation++;
    expect(await fw.untouched()).toBeUndefined();
    await fw.sync({ endpoint: id(3) }); // nothing to send: still unknown
    expect(await fw.untouched()).toBeUndefined();
    d.eps.delete(id(3));
    await fw.sync({ endpoint: id(3) }); // a delta over an unknown generation stays unknown
    expect(await fw.untouched()).toBeUndefined();
    const gen = rec.generation;
    await fw.confirm(gen, new Map([["bridge src4", 2]])); // wrong sizes: not confirmed
    expect(await fw.untouched()).toBeUndefined();
    await fw.confirm(gen - 1, new Map([["bridge src4", 1]])); // the generation moved since: not confirmed
    expect(await fw.untouched()).toBeUndefined();
    await fw.confirm(gen, new Map([["bridge src4", 1]]));
    expect((await fw.untouched())?.get("bridge src4")).toBe(1);
    fw.invalidate();
    expect(await fw.untouched()).toBeUndefined();
  });
});
