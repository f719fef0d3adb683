/**
 * The overlay agent: makes each local VXLAN device's forwarding state match the
 * shared endpoint registry. Level-triggered: every pass computes, for each
 * overlay network, the wanted entries (every endpoint of a live other host: its
 * MAC -> that host's VTEP, its addresses -> its MAC) and diffs them against the
 * kernel (`bridge fdb`, `ip neigh`), adding what is missing and removing what is
 * not wanted any more (endpoint gone, host's lease expired). It also creates a
 * network's local devices where local endpoints exist and removes the devices
 * of networks deleted elsewhere.
 *
 * Passes run on every change the cluster reports (etcd watch) and on a timer.
 * A pass that cannot read the store or the host registry changes nothing: the
 * dataplane keeps forwarding while etcd is away and is resynced when it is back.
 */
import type { Dataplane } from "../../dataplane/dataplane.ts";
import { VxlanOps, type FdbEntry, type NeighbourEntry } from "../../dataplane/vxlan.ts";
import type { IP, MAC } from "../../net/index.ts";
import type { EndpointRecord, Store } from "../../store/types.ts";
import { networkIdOfVxlan } from "./options.ts";
import type { OverlayDriver, OverlayNetworkState } from "./overlay-driver.ts";

export interface AgentPass {
  networks: number;
  added: number;
  removed: number;
}

export class OverlayAgent {
  private readonly vx: VxlanOps;
  private timer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<AgentPass> | undefined;
  private again = false;
  private stopped = false;
  /** The last pass's error, if it failed (for logs/diagnostics). */
  lastError: Error | undefined;

  constructor(
    private readonly dp: Dataplane,
    private readonly store: Store,
    private readonly driver: OverlayDriver,
    private readonly log: (msg: string, fields?: Record<string, unknown>) => void = () => {},
  ) {
    this.vx = new VxlanOps(dp);
  }

  start(intervalMs = 1000): void {
    const c = this.driver.cluster;
    if (!c) return;
    c.onChange(() => this.kick());
    this.timer = setInterval(() => this.kick(), intervalMs);
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Schedules a pass (coalesced with the one in flight: at most one more runs after it). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    void this.runOnce().catch(() => undefined);
  }

  /** One pass now (or the one in flight); resolves with what it changed. */
  runOnce(): Promise<AgentPass> {
    this.running ??= this.pass()
      .then(
        (r) => {
          this.lastError = undefined;
          return r;
        },
        (e: Error) => {
          if (this.lastError?.message !== e.message) this.log("overlay agent pass failed", { error: e.message });
          this.lastError = e;
          throw e;
        },
      )
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
    return this.running;
  }

  private async pass(): Promise<AgentPass> {
    const c = this.driver.cluster;
    const out: AgentPass = { networks: 0, added: 0, removed: 0 };
    if (!c) return out;
    const dp = this.dp;
    const hostNs = dp.hostNs;
    // everything read first: a failure here leaves the dataplane as it is
    const nets = (await this.store.networks.list()).filter((n) => n.driver === "overlay" && !n.pending);
    const hosts = await c.liveHosts();
    const eps = new Map<string, EndpointRecord[]>();
    for (const n of nets) eps.set(n.id, await this.store.endpoints.listByNetwork(n.id));

    // devices of networks that no longer exist (removed on another host)
    const known = new Set(nets.map((n) => n.id.slice(0, 12)));
    for (const l of await dp.links(hostNs)) {
      const id = l.kind === "vxlan" ? networkIdOfVxlan(l.name) : undefined;
      if (id && !known.has(id)) {
        await this.driver.removeLocal(id.padEnd(64, "0"));
        this.log("overlay network gone: removed its local devices", { vxlan: l.name });
      }
    }

    for (const net of nets) {
      const st = net.driverState as Partial<OverlayNetworkState>;
      if (!st.vxlan || st.vni === undefined) continue;
      const all = eps.get(net.id) ?? [];
      const local = all.filter((e) => e.host === c.host);
      if (local.length > 0) await this.driver.ensureLocal(net);
      else if (!(await dp.link(hostNs, st.vxlan))) continue;
      out.networks++;
      const r = await this.syncDevice(st.vxlan, wanted(all, c.host, hosts));
      out.added += r.added;
      out.removed += r.removed;
    }
    return out;
  }

  private async syncDevice(dev: string, want: { fdb: FdbEntry[]; neigh: NeighbourEntry[] }): Promise<{ added: number; removed: number }> {
    const ns = this.dp.hostNs;
    const [fdb, neigh] = await Promise.all([this.vx.fdb(ns, dev), this.vx.neighbours(ns, dev)]);
    const key = (m: MAC, ip: IP) => `${m}|${ip}`;
    const haveFdb = new Set(fdb.map((e) => key(e.mac, e.dst)));
    const wantFdbMacs = new Set(want.fdb.map((e) => e.mac.toString()));
    const addFdb = want.fdb.filter((e) => !haveFdb.has(key(e.mac, e.dst)));
    const delFdb = fdb.filter((e) => !wantFdbMacs.has(e.mac.toString())).map((e) => e.mac);
    const haveNeigh = new Set(neigh.map((n) => key(n.mac, n.ip)));
    const wantIps = new Set(want.neigh.map((n) => n.ip.toString()));
    const addNeigh = want.neigh.filter((n) => !haveNeigh.has(key(n.mac, n.ip)));
    const delNeigh = neigh.filter((n) => !wantIps.has(n.ip.toString())).map((n) => n.ip);
    await this.vx.applyFdb(ns, dev, addFdb, delFdb);
    await this.vx.applyNeighbours(ns, dev, addNeigh, delNeigh);
    const added = addFdb.length + addNeigh.length;
    const removed = delFdb.length + delNeigh.length;
    if (added + removed > 0) this.log("overlay forwarding synced", { vxlan: dev, added, removed });
    return { added, removed };
  }
}

/** The forwarding entries a host wants for one network: the endpoints of the other live hosts. */
export function wanted(all: readonly EndpointRecord[], me: string, hosts: ReadonlyMap<string, IP>): { fdb: FdbEntry[]; neigh: NeighbourEntry[] } {
  const fdb: FdbEntry[] = [];
  const neigh: NeighbourEntry[] = [];
  for (const ep of all) {
    if (ep.host === undefined || ep.host === me || ep.pending === "disconnect") continue;
    const vtep = hosts.get(ep.host);
    if (!vtep) continue;
    fdb.push({ mac: ep.mac, dst: vtep });
    for (const a of ep.addresses) neigh.push({ ip: a.ip, mac: ep.mac });
  }
  return { fdb, neigh };
}
