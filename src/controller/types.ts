/** Typed requests the controller accepts (the API layer parses JSON into these). */
import type { IP, MAC, PortMapping } from "../net/index.ts";

import type { PoolSpec } from "../ipam/index.ts";

export interface CreateNetworkRequest {
  name: string;
  driver?: string;
  internal?: boolean;
  enableIPv6?: boolean;
  /** false = IPv6-only (Docker's EnableIPv4=false). */
  enableIPv4?: boolean;
  attachable?: boolean;
  options?: Record<string, string>;
  labels?: Record<string, string>;
  ipam?: { driver?: string; options?: Record<string, string>; config?: PoolSpec[] };
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
}

export interface NetworkFilter {
  name?: string[];
  id?: string[];
  driver?: string[];
  label?: string[];
  scope?: string[];
  type?: ("custom" | "builtin")[];
}
