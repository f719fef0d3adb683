/**
 * The reconciler: makes the kernel match the store. It runs at daemon start and
 * then every `intervalMs` (1 s by default, so drift such as `nft flush ruleset`
 * or a deleted bridge/veth is repaired within 2 s). One pass looks at the host
 * namespace's links once (deleting either end of a veth deletes both, so the host
 * side shows every broken endpoint) and at Berth's nft tables once, whatever the
 * number of containers. It only recreates objects recorded in the store, so it
 * never touches links or tables Berth did not create.
 *
 * Both looks are kept cheap at scale, since a pass blocks berthd's event loop:
 * while it runs on its interval, the links come from a LinkMonitor (the kernel's
 * link notifications applied to a first dump) rather than a dump of every link per
 * pass, and the tables are listed only when something other than Berth's own
 * transactions changed nftables since the firewall applied them (Firewall.untouched).
 */
import type { LinkMonitor } from "../dataplane/link-monitor.ts";
import type { LinkSnapshot } from "../drivers/driver.ts";
import { isReconcilable } from "../drivers/driver.ts";
import { BRIDGE_TABLE_FAMILY, type FirewallState, renderBridgeTable, ruleCount, TABLE_FAMILY, TABLE_NAME } from "../firewall/ruleset.ts";
import { scanNetworkEndpoints } from "../store/endpoint-index.ts";
import type { Controller } from "./controller.ts";

export interface Repair {
  at: string;
  object: string;
  problem: string;
  result: "repaired" | "failed";
  error?: string;
}

export type RepairLog = (r: Repair) => void;

export class Reconciler {
  private readonly ctl: Controller;
  private readonly log: RepairLog;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** The host namespace's links while the interval runs (undefined: dumped by each pass). */
  private monitor: LinkMonitor | undefined;
  private running: Promise<Repair[]> | undefined;
  readonly history: Repair[] = [];

  constructor(ctl: Controller, log: RepairLog = () => {}) {
    this.ctl = ctl;
    this.log = log;
  }

  start(intervalMs = 1000): void {
    this.stop();
    try {
      this.monitor = this.ctl.dp.linkMonitor(this.ctl.dp.hostNs);
    } catch {
      this.monitor = undefined; // each pass dumps the links
    }
    this.timer = setInterval(() => void this.runOnce().catch(() => undefined), intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.monitor?.close();
    this.monitor = undefined;
  }

  /** One pass; concurrent calls share the pass in flight. */
  runOnce(): Promise<Repair[]> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<Repair[]> {
    const { dp, store } = this.ctl;
    const repairs: Repair[] = [];
    const note = async (object: string, problem: string, fix: () => Promise<unknown>) => {
      const r: Repair = { at: new Date().toISOString(), object, problem, result: "repaired" };
      try {
        await fix();
      } catch (e) {
        r.result = "failed";
        r.error = (e as Error).message;
      }
      repairs.push(r);
      this.history.push(r);
      if (this.history.length > 1000) this.history.shift();
      this.log(r);
    };

    const snapshot = async () =>
      new Map<string, LinkSnapshot>((this.monitor ? this.monitor.links() : await dp.links(dp.hostNs)).map((l) => [l.name, { kind: l.kind, up: l.up, master: l.master }]));
    let links = await snapshot();
    const nets = await store.networks.list();
    for (const net of nets) {
      const d = this.ctl.driver(net.driver);
      // a network being created or deleted right now is that operation's (or crash recovery's) business
      if (!isReconcilable(d) || net.pending) continue;
      const problems = d.checkNetwork(net, links);
      if (problems.length > 0) {
        // inside the controller's teardown lock, and only while the network still exists
        await note(`network ${net.name}`, problems.join("; "), () =>
          this.ctl.exclusive(async () => {
            if (await store.networks.get(net.id)) await d.repairNetwork(net);
          }),
        );
      }
    }
    if (repairs.length > 0) links = await snapshot();
    for (const net of nets) {
      const d = this.ctl.driver(net.driver);
      if (!isReconcilable(d)) continue;
      for (const ep of await scanNetworkEndpoints(store, net.id)) {
        if (ep.pending) continue; // being connected or disconnected right now
        const problems = d.checkEndpoint(net, ep, links);
        if (problems.length === 0) continue;
        const c = await store.containers.get(ep.containerId);
        if (!c || c.netns === "" || !dp.netnsExists(c.netns)) continue; // sandbox gone: GC's business, not repair
        await note(`endpoint ${ep.ifname} of ${c.name} on ${net.name}`, problems.join("; "), () =>
          this.ctl.exclusive(async () => {
            // the record as it is now (and a copy of its own: `ep` may be the index's)
            const now = await store.endpoints.get(ep.id);
            if (now) await d.repairEndpoint(net, now, { containerId: c.id, netns: c.netns });
          }),
        );
      }
    }
    const fwProblem = await this.firewallDrift(expectedSizes(await this.ctl.firewallState()));
    if (fwProblem) {
      await note(`nftables table ${TABLE_FAMILY} ${TABLE_NAME}`, fwProblem, () => {
        // the kernel's tables are not what was last applied: a delta cannot repair them
        this.ctl.firewall.invalidate();
        return this.ctl.syncFirewall();
      });
    }
    return repairs;
  }

  /**
   * Compares Berth's tables with the desired state by their sets' sizes and rule counts.
   * When nothing but Berth changed nftables since it applied tables of exactly these
   * sizes, they are still those: no listing (which costs O(elements) and blocks).
   */
  private async firewallDrift(want: ReadonlyMap<string, number>): Promise<string | undefined> {
    const fw = this.ctl.firewall;
    const untouched = await fw.untouched();
    if (untouched && [...want].every(([set, n]) => untouched.get(set) === n)) return undefined;
    const generation = await fw.currentGeneration();
    const problem = (await this.tableDrift(want)) ?? (await this.antiSpoofingDrift(want));
    if (!problem && generation !== undefined) await fw.confirm(generation, want);
    return problem;
  }

  /** Berth's table (inet family): present, the expected number of elements per set, every rule. */
  private async tableDrift(want: ReadonlyMap<string, number>): Promise<string | undefined> {
    const t = await this.ctl.dp.nftListTable(this.ctl.dp.hostNs, TABLE_FAMILY, TABLE_NAME);
    if (!t) return "table is missing";
    const count = new Map<string, number>();
    let rules = 0;
    for (const o of t.nftables) {
      const s = (o.set ?? o.map) as { name: string; elem?: unknown[] } | undefined;
      if (s) count.set(s.name, s.elem?.length ?? 0);
      if (o.rule) rules++;
    }
    for (const [key, n] of want) {
      const [family, name] = key.split(" ") as [string, string];
      if (family !== TABLE_FAMILY) continue;
      if (!count.has(name)) return `set ${name} is missing`;
      if (count.get(name) !== n) return `set ${name} has ${count.get(name)} elements, expected ${n}`;
    }
    if (rules !== EXPECTED_RULES) return `${rules} rules, expected ${EXPECTED_RULES}`;
    return undefined;
  }

  /** The anti-spoofing table (bridge family): present, one element per container port and source address. */
  private async antiSpoofingDrift(want: ReadonlyMap<string, number>): Promise<string | undefined> {
    const t = await this.ctl.dp.nftListTable(this.ctl.dp.hostNs, BRIDGE_TABLE_FAMILY, TABLE_NAME);
    if (!t) return `table ${BRIDGE_TABLE_FAMILY} ${TABLE_NAME} is missing`;
    const count = new Map<string, number>();
    let rules = 0;
    for (const o of t.nftables) {
      const s = o.set as { name: string; elem?: unknown[] } | undefined;
      if (s) count.set(s.name, s.elem?.length ?? 0);
      if (o.rule) rules++;
    }
    for (const [key, n] of want) {
      const [family, name] = key.split(" ") as [string, string];
      if (family !== BRIDGE_TABLE_FAMILY) continue;
      if (count.get(name) !== n) return `anti-spoofing set ${name} has ${count.get(name) ?? "no"} elements, expected ${n}`;
    }
    return rules === EXPECTED_BRIDGE_RULES ? undefined : `anti-spoofing table: ${rules} rules, expected ${EXPECTED_BRIDGE_RULES}`;
  }
}

/**
 * The number of elements the drift check expects in the sets it checks (`FAMILY NAME`):
 * the ones every network and container has elements in.
 */
export function expectedSizes(want: FirewallState): Map<string, number> {
  const v4 = want.ports.filter((p) => p.target.family === 4).length;
  const src = want.sources ?? [];
  const addrs = (fam: 4 | 6) => src.reduce((n, x) => n + x.addresses.filter((a) => a.family === fam).length, 0);
  return new Map([
    [`${TABLE_FAMILY} bridges`, want.networks.length],
    [`${TABLE_FAMILY} bridge_pairs`, want.networks.length],
    [`${TABLE_FAMILY} internal`, want.networks.filter((n) => n.internal).length],
    [`${TABLE_FAMILY} ports4`, v4],
    [`${TABLE_FAMILY} ports6`, want.ports.length - v4],
    [`${TABLE_FAMILY} anyports4`, want.ports.filter((p) => p.target.family === 4 && !p.hostIP).length],
    [`${TABLE_FAMILY} anyports6`, want.ports.filter((p) => p.target.family === 6 && !p.hostIP).length],
    [`${BRIDGE_TABLE_FAMILY} ports`, new Set(src.map((x) => x.port)).size],
    [`${BRIDGE_TABLE_FAMILY} src4`, addrs(4)],
    [`${BRIDGE_TABLE_FAMILY} src6`, addrs(6)],
  ]);
}

const EXPECTED_RULES = ruleCount();
const EXPECTED_BRIDGE_RULES = renderBridgeTable({ networks: [], ports: [] })
  .split("\n")
  .filter((l) => /^\s+(iifname|ether|counter|meta|ip6?|arp) /.test(l)).length;
