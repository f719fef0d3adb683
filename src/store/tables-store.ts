/**
 * A Store made of the five tables one implementation builds over one open
 * transaction (SQLite's connection, etcd's STM context): a transaction inside
 * it joins the one that is open, and closing it is a mistake.
 */
import { systemError } from "../errors.ts";
import type { AllocationTable, ContainerTable, EndpointTable, MetaTable, NetworkTable, Store } from "./types.ts";

export interface StoreTables {
  networks: NetworkTable;
  endpoints: EndpointTable;
  containers: ContainerTable;
  allocations: AllocationTable;
  meta: MetaTable;
}

export class TablesStore implements Store {
  readonly networks: NetworkTable;
  readonly endpoints: EndpointTable;
  readonly containers: ContainerTable;
  readonly allocations: AllocationTable;
  readonly meta: MetaTable;

  constructor(t: StoreTables) {
    this.networks = t.networks;
    this.endpoints = t.endpoints;
    this.containers = t.containers;
    this.allocations = t.allocations;
    this.meta = t.meta;
  }

  transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    return fn(this);
  }

  /** Inside a transaction there is nothing committed yet to sync: the outer store syncs. */
  async sync(): Promise<void> {}

  close(): Promise<void> {
    return Promise.reject(systemError("tx-close", "close() inside a transaction"));
  }
}
