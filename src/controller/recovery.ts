/**
 * Crash recovery of the controller's multi-step operations, run once at daemon
 * start before anything else touches the store or the kernel.
 *
 * Every multi-step operation marks its record before its first kernel step and
 * clears the mark when done (`pending` in src/store/types.ts), so a record still
 * marked at start was interrupted by a crash (SIGKILL, power loss):
 *  - network "create" -> rolled back (bridge, addresses, record removed);
 *  - network "delete" -> rolled forward (the delete is finished);
 *  - endpoint "connect" -> rolled back; endpoint "disconnect" -> rolled forward:
 *    both end with the endpoint, its links and its addresses gone. The drivers
 *    derive the names of links made before the record knew them from the ids.
 *  - an address allocated for an endpoint whose record was never written (a
 *    crash between IPAM and the endpoint record) is released: every allocation
 *    of a network must belong to an endpoint record of that network.
 * Containers interrupted while being run or removed are the runtime's part
 * (ContainerRuntime.recoverInterrupted), run before this. Teardown steps are
 * idempotent, so a crash during recovery is recovered by the next start.
 */
import type { Controller } from "./controller.ts";

export interface Recovery {
  object: string;
  action: "rolled back" | "rolled forward" | "released";
}

export async function recoverInterrupted(ctl: Controller): Promise<Recovery[]> {
  const { store } = ctl;
  const done: Recovery[] = [];
  const netnsOf = async (containerId: string): Promise<string> => (await store.containers.get(containerId))?.netns ?? "";
  // multi-host store: global networks and other hosts' endpoints may be in flight on another host right now
  const shared = (net: { scope: string }): boolean => store.host !== undefined && net.scope === "global";
  const foreign = (ep: { host?: string }): boolean => ep.host !== undefined && ep.host !== store.host;

  for (const net of await store.networks.list()) {
    if (!net.pending || shared(net)) continue;
    for (const ep of await store.endpoints.listByNetwork(net.id)) {
      await ctl.removeEndpoint(net, ep, await netnsOf(ep.containerId));
      done.push({ object: `endpoint ${ep.ifname} of ${ep.containerId.slice(0, 12)} on ${net.name}`, action: "rolled back" });
    }
    const action = net.pending === "create" ? "rolled back" : "rolled forward";
    await ctl.teardownNetwork(net);
    done.push({ object: `network ${net.name}`, action });
  }

  const nets = await store.networks.list();
  for (const net of nets) {
    for (const ep of await store.endpoints.listByNetwork(net.id)) {
      if (!ep.pending || foreign(ep)) continue;
      const action = ep.pending === "connect" ? "rolled back" : "rolled forward";
      await ctl.removeEndpoint(net, ep, ep.external ? "" : await netnsOf(ep.containerId));
      done.push({ object: `endpoint ${ep.ifname} of ${ep.containerId.slice(0, 12)} on ${net.name}`, action });
    }
  }

  // addresses whose endpoint record was never written; allocations under other ids
  // (pools Docker's IPAM plugin reserved outside any network) are not the controller's
  for (const net of nets) {
    if (shared(net)) continue;
    const live = new Set((await store.endpoints.listByNetwork(net.id)).map((e) => `${e.containerId}\0${e.ifname}`));
    for (const a of await store.allocations.list({ networkId: net.id })) {
      if (live.has(`${a.containerId}\0${a.ifname}`)) continue;
      await ctl.ipam.release({ networkId: net.id, containerId: a.containerId, ifname: a.ifname });
      live.add(`${a.containerId}\0${a.ifname}`);
      done.push({ object: `address ${a.address} of ${a.containerId.slice(0, 12)} on ${net.name}`, action: "released" });
    }
  }
  return done;
}
