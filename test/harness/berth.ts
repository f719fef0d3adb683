/** Builds an in-process Berth (store, IPAM, controller, runtime) inside a sandbox host namespace. */
import { Controller } from "../../src/controller/controller.ts";
import { Faults } from "../../src/controller/faults.ts";
import { Cgroups } from "../../src/dataplane/cgroup.ts";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { DnsService, type DnsServiceOptions } from "../../src/dns/server.ts";
import { Ipam } from "../../src/ipam/index.ts";
import { openDaemonStore } from "../../src/daemon/cluster.ts";
import { ContainerRuntime } from "../../src/runtime/containers.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/types.ts";
import { createSandbox, RUN_PREFIX, type Sandbox, uniqueName } from "./sandbox.ts";

export interface TestBerth {
  sb: Sandbox;
  store: Store;
  ipam: Ipam;
  dp: Dataplane;
  faults: Faults;
  ctl: Controller;
  rt: ContainerRuntime;
  /** Creates a bare container namespace (as a runtime would) and returns its name. */
  containerNs(tag?: string): string;
  close(): Promise<void>;
}

/** Default pools inside TEST-NET-ish space so nothing resembles the real host's networks. */
export const TEST_POOLS = [{ base: "10.123.0.0/16", size: 24 }];

export interface TestBerthOptions {
  /** Give the runtime an embedded DNS service (upstreams etc.; store, dataplane and events come from the test Berth). */
  dns?: Omit<DnsServiceOptions, "store" | "dp" | "events">;
  /** Open the store as berthd does (in-memory endpoint index, sync-on-demand durability) instead of the plain test store. */
  daemonStore?: boolean;
}

export async function createTestBerth(tag = "b", opts: TestBerthOptions = {}): Promise<TestBerth> {
  const sb = createSandbox(tag);
  const store = opts.daemonStore ? (await openDaemonStore({ stateDir: sb.stateDir })).store : openSqliteStore(sb.stateDir);
  const ipam = new Ipam(store, { defaultPools: TEST_POOLS });
  const dp = new Dataplane({ hostNs: sb.host });
  const faults = new Faults();
  const ctl = new Controller({ store, ipam, dp, faults });
  const dns = opts.dns ? new DnsService({ ...opts.dns, store, dp, events: ctl.events }) : undefined;
  const rt = new ContainerRuntime({
    controller: ctl,
    stateDir: sb.stateDir,
    netnsPrefix: uniqueName("c"),
    cgroups: new Cgroups({ parent: `${RUN_PREFIX}cg` }),
    ...(dns ? { dns } : {}),
  });
  return {
    sb,
    store,
    ipam,
    dp,
    faults,
    ctl,
    rt,
    containerNs: (t = "c") => sb.netns(t),
    async close() {
      for (const c of await store.containers.list()) await rt.remove(c.id, true).catch(() => undefined);
      await dns?.stop();
      await store.close();
      await sb.cleanup();
      rt.cgroups.removeParent();
    },
  };
}
