/** Small lookups over the Store interface that several layers make the same way. */
import type { EndpointRecord, Store } from "./types.ts";

/**
 * Whether a record named `name` exists, through a Docker-style `find` (exact id,
 * exact name, unique id prefix). A name that happens to be a prefix of several
 * ids makes `find` answer "ambiguous"; that only happens when neither an id nor a
 * name equals it, so the name is free.
 */
export async function nameTaken(table: { find(term: string): Promise<{ name: string } | undefined> }, name: string): Promise<boolean> {
  try {
    return (await table.find(name))?.name === name;
  } catch (e) {
    if ((e as { code?: string }).code === "ambiguous") return false;
    throw e;
  }
}

/** A container's endpoint on a network, found among the container's few endpoints (not the network's many). */
export async function endpointOn(store: Store, networkId: string, containerId: string): Promise<EndpointRecord | undefined> {
  return (await store.endpoints.listByContainer(containerId)).find((e) => e.networkId === networkId);
}
