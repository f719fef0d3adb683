/**
 * The etcd key layout. Global data (global-scope networks, their endpoints and
 * address allocations, meta) is shared by every host; local data (local-scope
 * networks and their endpoints and allocations, containers) lives under the
 * host's own prefix, so each berthd sees its own `bridge` network beside the
 * shared overlays.
 *
 *   /berth/g/...                 global data
 *   /berth/h/<host>/...          one host's local data
 *   /berth/names/<name>/<owner>  network names (owner: "@global" or a host): uniqueness across hosts
 *   /berth/hosts/<host>          live hosts (lease-bound; value: the host's underlay/VTEP address)
 *   /berth/vni/<vni>             VXLAN network identifiers handed out to overlay networks
 *
 * Under a data prefix:
 *   networks/<id>, epnet/<networkId>/<containerId> (endpoint record), endpoints/<id> -> "<networkId>/<containerId>",
 *   alloc/<networkId>/<family>/<addrKey>, allockey/<networkId>/<containerId>/<ifname>/<family> -> addrKey,
 *   cursor/<networkId>/<subnet>, containers/<id>, cnames/<name> -> id, meta/<key>
 */
export const ROOT = "/berth/";
export const GLOBAL = `${ROOT}g/`;
export const HOSTS = `${ROOT}hosts/`;
export const VNIS = `${ROOT}vni/`;
export const NAMES = `${ROOT}names/`;
export const GLOBAL_OWNER = "@global";

export function localPrefix(host: string): string {
  return `${ROOT}h/${host}/`;
}

export function hostKey(host: string): string {
  return `${HOSTS}${host}`;
}

/** A host name must be a single key segment. */
export function validHostName(host: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(host);
}
