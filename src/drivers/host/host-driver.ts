/**
 * The `host` driver: the container shares the host's network stack. There is
 * nothing to wire; the runtime starts such containers in the host namespace
 * itself (the sandbox of a host-network container *is* the host namespace).
 */
import { invalid } from "../../errors.ts";
import type { EndpointRecord, NetworkRecord } from "../../store/types.ts";
import type { Driver, DriverState } from "../driver.ts";

export class HostDriver implements Driver {
  readonly name = "host";
  readonly scope = "local" as const;
  readonly needsAddresses = false;

  validateNetwork(net: NetworkRecord): void {
    const keys = Object.keys(net.options);
    if (keys.length > 0) throw invalid("unknown-option", `the host driver takes no options (got ${keys.join(", ")})`, "Options");
  }
  async createNetwork(): Promise<DriverState> {
    return {};
  }
  async deleteNetwork(): Promise<void> {}
  validateEndpoint(_net: NetworkRecord, ep: EndpointRecord): void {
    if (ep.ports.length > 0) {
      throw invalid("ports-unsupported", "published ports make no sense on the host network: the container already uses the host's ports", "ports");
    }
  }
  async createEndpoint(): Promise<DriverState> {
    return {};
  }
  async deleteEndpoint(): Promise<void> {}
  async join(): Promise<void> {}
  async leave(): Promise<void> {}
}
