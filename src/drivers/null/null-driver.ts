/**
 * The `null` driver (Docker's "none" network): the container keeps only its
 * loopback interface. It touches nothing, so it is the executable spec of the
 * minimum a Driver must do.
 */
import { invalid } from "../../errors.ts";
import type { EndpointRecord, NetworkRecord } from "../../store/types.ts";
import type { Driver, DriverState } from "../driver.ts";

export class NullDriver implements Driver {
  readonly name = "null";
  readonly scope = "local" as const;
  readonly needsAddresses = false;

  validateNetwork(net: NetworkRecord): void {
    const keys = Object.keys(net.options);
    if (keys.length > 0) throw invalid("unknown-option", `the null driver takes no options (got ${keys.join(", ")})`, "Options");
  }
  async createNetwork(): Promise<DriverState> {
    return {};
  }
  async deleteNetwork(): Promise<void> {}
  validateEndpoint(_net: NetworkRecord, ep: EndpointRecord): void {
    if (ep.ports.length > 0) throw invalid("ports-unsupported", "a container on a null network has no network to publish ports on", "ports");
  }
  async createEndpoint(): Promise<DriverState> {
    return {};
  }
  async deleteEndpoint(): Promise<void> {}
  async join(): Promise<void> {}
  async leave(): Promise<void> {}
}
