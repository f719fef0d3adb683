/**
 * Owns Berth's nftables table in one namespace. Every change renders the whole
 * desired state and replaces the table in one atomic nft transaction, serialised
 * by a mutex so concurrent changes cannot interleave. It never touches any
 * table it did not create.
 */
import type { Dataplane } from "../dataplane/dataplane.ts";
import { type FirewallState, renderReplace, TABLE_FAMILY, TABLE_NAME } from "./ruleset.ts";

export class Firewall {
  private readonly dp: Dataplane;
  private readonly ns: string | null;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(dp: Dataplane, ns: string | null) {
    this.dp = dp;
    this.ns = ns;
  }

  /**
   * Applies the state produced by `load` (called inside the lock, so the newest
   * state always wins even when calls race).
   */
  sync(load: () => Promise<FirewallState>): Promise<void> {
    const next = this.chain.then(async () => {
      const state = await load();
      await this.dp.nftApply(this.ns, renderReplace(state));
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  async exists(): Promise<boolean> {
    return (await this.dp.nftListTable(this.ns, TABLE_FAMILY, TABLE_NAME)) !== undefined;
  }

  async remove(): Promise<void> {
    await this.dp.nftDeleteTable(this.ns, TABLE_FAMILY, TABLE_NAME);
  }
}
