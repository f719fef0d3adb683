/** Typed requests the controller accepts (the API layer parses JSON into these). */
import type { IP, MAC, PortMapping } from "../net/index.ts";

import type { PoolSpec } from "../ipam/index.ts";

export interface CreateNetworkRequest {
  name: string;
  /** Use this id (64 hex) instead of a new one, e.g. Docker's NetworkID for plugin-created networks. */
  id?: string;
  /** See NetworkRecord.managedBy. */
  managedBy?: string;
  driver?: string;
  internal?: boolean;
  enableIPv6?: boolean;
  /** false = IPv6-only (Docker's EnableIPv4=false). */
  enableIPv4?: boolean;
  attachable?: boolean;
  options?: Record<string, string>;
  labels?: Record<string, string>;
  ipam?: {
    driver?: string;
    options?: Record<string, string>;
    config?: PoolSpec[];
    /**
     * The subnets were handed out by Berth's IPAM as reserved pools (Docker's
     * IPAM plugin RequestPool): a reservation of exactly the same subnet is the
     * network's own, not an overlap.
     */
    claimReserved?: boolean;
  };
}

export interface ConnectRequest {
  /** Network id, name or unique id prefix. */
  network: string;
  containerId: string;
  /** The container's network namespace (named netns). */
  netns: string;
  ifname?: string;
  ipv4?: IP;
  ipv6?: IP;
  mac?: MAC;
  aliases?: string[];
  ports?: PortMapping[];
  /**
   * The sandbox belongs to an external runtime (dockerd): create the endpoint
   * (addresses, links in the host namespace) but do not join it; the runtime
   * moves and configures the container end, then reports it with `joinExternal`.
   * `netns` is ignored.
   */
  external?: boolean;
  /** Use this endpoint id (64 hex), e.g. Docker's EndpointID. */
  endpointId?: string;
}

export interface NetworkFilter {
  name?: string[];
  id?: string[];
  driver?: string[];
  label?: string[];
  scope?: string[];
  type?: ("custom" | "builtin")[];
}
