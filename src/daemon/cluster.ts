/**
 * berthd's store and cluster membership: SQLite by default; with
 * `--store etcd://HOST:PORT` the shared etcd store, this host's registration
 * (`--host-name`, `--advertise-addr`, lease TTL `--host-ttl`) and the overlay
 * agent that programs VXLAN forwarding from the shared endpoint registry.
 */
import type { Controller } from "../controller/controller.ts";
import { OverlayAgent } from "../drivers/overlay/agent.ts";
import type { OverlayDriver } from "../drivers/overlay/overlay-driver.ts";
import { invalid } from "../errors.ts";
import { IP } from "../net/index.ts";
import type { Logger } from "../observe/log.ts";
import { withEndpointIndex } from "../store/endpoint-index.ts";
import { HostRegistry } from "../store/etcd/hosts.ts";
import { openEtcdStore } from "../store/etcd/store.ts";
import { openSqliteStore } from "../store/index.ts";
import type { Store } from "../store/types.ts";

export interface ClusterConfig {
  stateDir: string;
  /** undefined: the embedded SQLite store; "etcd://HOST:PORT": the shared etcd store. */
  store?: string;
  hostName?: string;
  /** This host's underlay address (VXLAN endpoint); needed for overlay networks. */
  advertiseAddr?: string;
  /** Host registration lease TTL in seconds (default 10). */
  hostTtlSeconds?: number;
}

export interface OpenedStore {
  store: Store;
  /** Set with etcd and an advertise address. */
  registry?: HostRegistry;
}

export async function openDaemonStore(c: ClusterConfig): Promise<OpenedStore> {
  if (c.store === undefined || c.store === "" || c.store === "sqlite") {
    if (c.advertiseAddr !== undefined) {
      throw invalid("advertise-needs-etcd", "--advertise-addr needs a shared store (--store etcd://HOST:PORT)", "advertise-addr");
    }
    // commits survive a berthd crash at once; network and pool definitions are fsynced
    // (Store.sync), endpoints are not worth an fsync each: no sandbox survives a reboot
    // berthd alone writes it (the CLI goes through the API): whole-network endpoint reads come from memory
    return { store: await withEndpointIndex(openSqliteStore(c.stateDir, { durability: "sync-on-demand" })) };
  }
  const store = await openEtcdStore({ url: c.store, ...(c.hostName ? { host: c.hostName } : {}) });
  if (c.advertiseAddr === undefined) return { store };
  const address = IP.parse(c.advertiseAddr, "advertise-addr");
  const registry = new HostRegistry({
    etcd: store.etcd,
    host: store.host,
    address,
    ttlSeconds: c.hostTtlSeconds ?? 10,
  });
  await registry.start();
  return { store, registry };
}

/** Starts the overlay agent (with a registry only). */
export function startOverlayAgent(ctl: Controller, registry: HostRegistry | undefined, log: Logger, intervalMs = 1000): OverlayAgent | undefined {
  if (!registry) return undefined;
  const driver = ctl.driver("overlay") as OverlayDriver;
  const agent = new OverlayAgent(ctl.dp, ctl.store, driver, (msg, fields) => log.log("info", msg, { op: "overlay", ...fields }));
  agent.start(intervalMs);
  return agent;
}
