/**
 * Owns Berth's nftables tables (inet berth, and bridge berth for anti-spoofing) in one namespace. Every change renders the whole
 * desired state and applies it in one atomic nft transaction, serialised
 * by a mutex so concurrent changes cannot interleave: only the set/map elements that
 * changed when nothing else did (delta.ts), else both tables replaced whole. It never
 * touches any table it did not create.
 */
import type { Dataplane } from "../dataplane/dataplane.ts";
import { elementDelta, type RenderedTable } from "./delta.ts";
import { BRIDGE_TABLE_FAMILY, type FirewallState, renderBridgeTable, renderReplace, renderTable, TABLE_FAMILY, TABLE_NAME } from "./ruleset.ts";

export class Firewall {
  private readonly dp: Dataplane;
  private readonly ns: string | null;
  private chain: Promise<unknown> = Promise.resolve();
  private queued: Promise<void> | undefined;
  /** The tables as last applied; undefined = unknown (start, failure, repair): replace them whole. */
  private applied: RenderedTable[] | undefined;

  constructor(dp: Dataplane, ns: string | null) {
    this.dp = dp;
    this.ns = ns;
  }

  /**
   * Applies the state produced by `load` (called inside the lock, so the newest
   * state always wins even when calls race). Calls arriving while one is queued
   * and not started yet share it (it loads the state when it starts, so it covers
   * their changes too): N concurrent changes cost about 2 transactions, not N.
   * `load` must therefore be the same function on every call (the owner's state).
   */
  sync(load: () => Promise<FirewallState>): Promise<void> {
    if (this.queued) return this.queued;
    const next = this.chain.then(async () => {
      this.queued = undefined;
      const state = await load();
      const next: RenderedTable[] = [
        { family: TABLE_FAMILY, name: TABLE_NAME, text: renderTable(state) },
        { family: BRIDGE_TABLE_FAMILY, name: TABLE_NAME, text: renderBridgeTable(state) },
      ];
      // only elements changed (a connect, a port): send just those, not the whole tables
      const delta = this.applied ? elementDelta(this.applied, next) : undefined;
      this.applied = undefined;
      if (delta === "") {
        this.applied = next;
        return;
      }
      if (delta !== undefined) {
        try {
          await this.dp.nftApply(this.ns, delta);
          this.applied = next;
          return;
        } catch {
          // the kernel's tables are not what was applied (drift): replace them whole below
        }
      }
      await this.dp.nftApply(this.ns, renderReplace(state));
      this.applied = next;
    });
    this.queued = next;
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Forget what was applied: the next sync replaces the tables whole (after drift was seen). */
  invalidate(): void {
    this.applied = undefined;
  }

  async exists(): Promise<boolean> {
    return (await this.dp.nftListTable(this.ns, TABLE_FAMILY, TABLE_NAME)) !== undefined;
  }

  async remove(): Promise<void> {
    this.applied = undefined;
    await this.dp.nftDeleteTable(this.ns, TABLE_FAMILY, TABLE_NAME);
    await this.dp.nftDeleteTable(this.ns, BRIDGE_TABLE_FAMILY, TABLE_NAME);
  }
}
