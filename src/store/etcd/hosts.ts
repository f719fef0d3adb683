/**
 * Host liveness on etcd: each berthd keeps `/berth/hosts/<name>` (value: its
 * underlay/VTEP address) bound to a lease it renews every TTL/3. When berthd
 * dies the lease expires and the key goes, which every other host sees through
 * its watch. The registry re-registers by itself after etcd comes back or the
 * lease was lost.
 *
 * It also tells its listeners whenever shared state may have changed: on every
 * watch event under /berth/, and after each (re)connection of the watch, so a
 * listener doing a full resync never misses what happened while etcd was away.
 */
import { IP } from "../../net/index.ts";
import type { EtcdClient } from "./client.ts";
import { HOSTS, hostKey, ROOT } from "./keys.ts";

export interface HostRegistryOptions {
  etcd: EtcdClient;
  host: string;
  /** The host's underlay (VTEP) address. */
  address: IP;
  /** Lease TTL in seconds (>= 1). */
  ttlSeconds: number;
  log?: (msg: string) => void;
}

export class HostRegistry {
  readonly host: string;
  readonly advertise: IP;
  private readonly o: HostRegistryOptions;
  private lease = "";
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly listeners: (() => void)[] = [];
  private keepTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(o: HostRegistryOptions) {
    this.o = o;
    this.host = o.host;
    this.advertise = o.address;
  }

  /** Registers (must succeed once), then keeps the lease alive and watches in the background. */
  async start(): Promise<void> {
    await this.register();
    this.scheduleKeepAlive();
    void this.watchLoop();
  }

  private async register(): Promise<void> {
    const { etcd } = this.o;
    this.lease = await etcd.leaseGrant(this.o.ttlSeconds);
    await etcd.put(hostKey(this.host), this.advertise.toString(), this.lease);
  }

  private scheduleKeepAlive(): void {
    if (this.stopped) return;
    const every = Math.max(250, (this.o.ttlSeconds * 1000) / 3);
    this.keepTimer = setTimeout(() => void this.keepAlive().finally(() => this.scheduleKeepAlive()), every);
  }

  private async keepAlive(): Promise<void> {
    try {
      const ttl = this.lease ? await this.o.etcd.leaseKeepAlive(this.lease) : 0;
      if (ttl > 0) {
        // the key may have been lost with a wiped etcd while the lease id got re-used: cheap to check
        const cur = await this.o.etcd.get(hostKey(this.host));
        if (cur?.lease === this.lease) return;
      }
      this.o.log?.(`host registration of ${this.host} lost; registering again`);
      await this.register();
      this.notify();
    } catch {
      // etcd unreachable: try again at the next tick (the lease may still be alive)
    }
  }

  private async watchLoop(): Promise<void> {
    let backoff = 200;
    while (!this.stopped) {
      try {
        const head = await this.o.etcd.range(HOSTS, { limit: 1 });
        this.notify(); // (re)connected: whatever happened meanwhile must be resynced
        backoff = 200;
        await this.o.etcd.watch(ROOT, head.revision + 1, () => this.notify(), this.abort.signal);
      } catch {
        /* etcd away or the watch was aborted */
      }
      if (this.stopped) return;
      await Bun.sleep(backoff);
      backoff = Math.min(backoff * 2, 2000);
    }
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  /** Live hosts and their VTEP addresses. Throws `unavailable` when etcd cannot be read. */
  async liveHosts(): Promise<Map<string, IP>> {
    const r = await this.o.etcd.prefix(HOSTS);
    const out = new Map<string, IP>();
    for (const kv of r.kvs) {
      const ip = IP.tryParse(kv.value);
      if (ip) out.set(kv.key.slice(HOSTS.length), ip);
    }
    return out;
  }

  /** Stops renewing; `revoke` also removes the registration at once (a clean shutdown). */
  async stop(revoke = true): Promise<void> {
    this.stopped = true;
    if (this.keepTimer) clearTimeout(this.keepTimer);
    this.abort.abort();
    if (revoke && this.lease) await this.o.etcd.leaseRevoke(this.lease);
  }
}
