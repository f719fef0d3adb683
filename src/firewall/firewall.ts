/**
 * Owns Berth's nftables tables (inet berth, and bridge berth for anti-spoofing) in
 * one namespace. Every change is one atomic nft transaction, serialised by a
 * mutex so concurrent changes cannot interleave.
 *
 * The tables as last applied are kept as data (applied.ts: each element with the
 * contributions giving it). A change of some endpoints reads just those endpoints'
 * parts and sends just the elements that appear or disappear; a whole sync (start,
 * network changes, repairs) reads the whole state and still sends only the element
 * changes when nothing but elements changed, else (an auto-merge set, nothing known
 * as applied, a delta the kernel refused) replaces both tables whole. It never
 * touches any table it did not create.
 *
 * It also knows when the kernel's tables are still exactly what it applied: the
 * namespace's nftables generation moves by one with each committed transaction, so
 * when it moved by exactly one over Berth's own, nobody else changed anything
 * (`untouched`), and the reconciler need not list the tables to find drift.
 */
import type { Dataplane } from "../dataplane/dataplane.ts";
import { AppliedElements, type ElementPlan, isEmptyPlan, planScript, touchesAutoMerge } from "./applied.ts";
import { contributions, type DesiredFirewall, endpointElements, flattenState, type KeyedFirewallState } from "./desired.ts";
import { BRIDGE_TABLE_FAMILY, renderReplace, TABLE_FAMILY, TABLE_NAME } from "./ruleset.ts";

/** What changed: one endpoint (its part is read again), or anything (the whole state is). */
export type FirewallChange = { endpoint: string } | undefined;

interface PendingSync {
  whole: boolean;
  endpoints: Set<string>;
}

export class Firewall {
  private readonly dp: Dataplane;
  private readonly ns: string | null;
  private readonly desired: DesiredFirewall;
  private chain: Promise<unknown> = Promise.resolve();
  private queued: Promise<void> | undefined;
  private pending: PendingSync | undefined;
  /** The tables as last applied; undefined = unknown (start, failure, repair): replace them whole. */
  private applied: AppliedElements | undefined;
  /** The nftables generation right after Berth's last transaction, while nobody else committed one since it. */
  private generation: number | undefined;

  constructor(dp: Dataplane, ns: string | null, desired: DesiredFirewall) {
    this.dp = dp;
    this.ns = ns;
    this.desired = desired;
  }

  /**
   * Brings the tables to the desired state: `change` names the endpoint that changed
   * (only its part is read), no change means anything may have. Calls arriving while
   * one is queued and not started yet join it (it reads the state when it starts, so it
   * covers their changes too): N concurrent changes cost about 2 transactions, not N.
   */
  sync(change?: FirewallChange): Promise<void> {
    this.pending ??= { whole: false, endpoints: new Set() };
    const p = this.pending;
    if (change === undefined) p.whole = true;
    else p.endpoints.add(change.endpoint);
    if (this.queued) return this.queued;
    const next = this.chain.then(() => {
      const job = this.pending!;
      this.pending = undefined;
      this.queued = undefined;
      return job.whole || !this.applied ? this.syncWhole() : this.syncEndpoints(job.endpoints);
    });
    this.queued = next;
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async syncEndpoints(ids: ReadonlySet<string>): Promise<void> {
    const parts = await this.desired.endpoints(ids);
    const applied = this.applied;
    if (!applied) return this.syncWhole();
    const plan = applied.plan(new Map([...ids].map((id) => [id, endpointElements(parts.get(id))])));
    if (isEmptyPlan(plan)) return;
    if (!(await this.applyPlan(applied, plan))) await this.replace(await this.desired.whole());
  }

  private async syncWhole(): Promise<void> {
    const state = await this.desired.whole();
    const applied = this.applied;
    if (applied) {
      const plan = applied.planWhole(contributions(state));
      if (isEmptyPlan(plan)) return;
      if (!touchesAutoMerge(plan) && (await this.applyPlan(applied, plan))) return;
    }
    await this.replace(state);
  }

  /** Sends a plan's element changes; false when the kernel refused them (its tables are not what was applied). */
  private async applyPlan(applied: AppliedElements, plan: ElementPlan): Promise<boolean> {
    const known = this.generation;
    this.generation = undefined;
    try {
      await this.dp.nftApply(this.ns, planScript(plan));
    } catch {
      this.applied = undefined;
      return false;
    }
    applied.commit(plan);
    if (known !== undefined && (await this.readGeneration()) === known + 1) this.generation = known + 1;
    return true;
  }

  /** Replaces both tables whole with the state. */
  private async replace(state: KeyedFirewallState): Promise<void> {
    this.applied = undefined;
    this.generation = undefined;
    const before = await this.readGeneration();
    await this.dp.nftApply(this.ns, renderReplace(flattenState(state)));
    this.applied = AppliedElements.of(contributions(state));
    const after = await this.readGeneration();
    if (before !== undefined && after === before + 1) this.generation = after;
  }

  private async readGeneration(): Promise<number | undefined> {
    try {
      return await this.dp.nftGeneration(this.ns);
    } catch {
      return undefined; // unknown: the reconciler lists the tables
    }
  }

  /**
   * How many elements each set holds (`FAMILY NAME` -> count) when the kernel's tables are
   * known to be exactly what was last applied: nothing but Berth's own transactions since
   * them. Else undefined: only a listing of the tables tells.
   */
  async untouched(): Promise<Map<string, number> | undefined> {
    if (this.generation === undefined || !this.applied) return undefined;
    const gen = this.generation;
    const applied = this.applied;
    if ((await this.readGeneration()) !== gen || this.generation !== gen || this.applied !== applied) return undefined;
    return applied.sizes();
  }

  /**
   * The reconciler listed the tables at `generation` (read before the listing) and found
   * them holding `sizes` elements per set: when that is still the generation and what was
   * last applied, the tables are known untouched again from here.
   */
  async confirm(generation: number, sizes: ReadonlyMap<string, number>): Promise<void> {
    const applied = this.applied;
    if (!applied || (await this.readGeneration()) !== generation || this.applied !== applied) return;
    const mine = applied.sizes();
    for (const [set, n] of sizes) if (mine.get(set) !== n) return;
    this.generation = generation;
  }

  /** The namespace's nftables generation now (undefined when it cannot be read). */
  currentGeneration(): Promise<number | undefined> {
    return this.readGeneration();
  }

  /** Forget what was applied: the next sync replaces the tables whole (after drift was seen). */
  invalidate(): void {
    this.applied = undefined;
    this.generation = undefined;
  }

  async exists(): Promise<boolean> {
    return (await this.dp.nftListTable(this.ns, TABLE_FAMILY, TABLE_NAME)) !== undefined;
  }

  async remove(): Promise<void> {
    this.invalidate();
    await this.dp.nftDeleteTable(this.ns, TABLE_FAMILY, TABLE_NAME);
    await this.dp.nftDeleteTable(this.ns, BRIDGE_TABLE_FAMILY, TABLE_NAME);
  }
}
