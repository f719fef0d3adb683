/**
 * The record tables of the SQLite store (allocations and meta live in
 * sqlite-alloc.ts). Each method is one synchronous piece of SQL
 * run through a Ctx, which decides the locking: the root store wraps each
 * write in its own BEGIN IMMEDIATE, a transaction's store runs inside the
 * transaction already open.
 */
import type { StoreTables } from "./tables-store.ts";
import type { Database } from "bun:sqlite";
import { conflict, invalid, notFound } from "../errors.ts";
import {
  decodeContainer,
  decodeEndpoint,
  decodeNetwork,
  encodeContainer,
  encodeEndpoint,
  encodeNetwork,
} from "./codec.ts";
import { SqliteAllocations, SqliteMeta } from "./sqlite-alloc.ts";
import type {
  ContainerRecord,
  ContainerTable,
  EndpointRecord,
  EndpointTable,
  NetworkRecord,
  NetworkTable,
} from "./types.ts";

export interface Ctx {
  read<T>(f: (db: Database) => T): Promise<T>;
  write<T>(f: (db: Database) => T): Promise<T>;
}

interface DataRow {
  data: string;
}

/** Docker-style lookup: exact id, exact name, then a unique id prefix. */
function resolve(db: Database, table: "networks" | "containers", what: string, term: string): string | undefined {
  if (term === "") return undefined;
  const byId = db.query<DataRow, [string]>(`SELECT data FROM ${table} WHERE id = ?`).get(term);
  if (byId) return byId.data;
  const byName = db.query<DataRow, [string]>(`SELECT data FROM ${table} WHERE name = ?`).get(term);
  if (byName) return byName.data;
  const byPrefix = db
    .query<DataRow, [number, string]>(`SELECT data FROM ${table} WHERE substr(id, 1, ?) = ?`)
    .all(term.length, term);
  if (byPrefix.length > 1) {
    throw invalid("ambiguous", `${what} ${term} is ambiguous (${byPrefix.length} matches found based on ID prefix)`);
  }
  return byPrefix[0]?.data;
}

class SqliteNetworks implements NetworkTable {
  constructor(private readonly ctx: Ctx) {}

  create(r: NetworkRecord): Promise<void> {
    return this.ctx.write((db) => {
      if (db.query("SELECT 1 FROM networks WHERE name = ?").get(r.name)) {
        throw conflict("network-exists", `network with name ${r.name} already exists`, "Name");
      }
      if (db.query("SELECT 1 FROM networks WHERE id = ?").get(r.id)) {
        throw conflict("network-exists", `network with id ${r.id} already exists`, "Id");
      }
      db.query("INSERT INTO networks (id, name, created, data) VALUES (?, ?, ?, ?)").run(
        r.id,
        r.name,
        r.created,
        encodeNetwork(r),
      );
    });
  }

  get(id: string): Promise<NetworkRecord | undefined> {
    return this.ctx.read((db) => {
      const row = db.query<DataRow, [string]>("SELECT data FROM networks WHERE id = ?").get(id);
      return row ? decodeNetwork(row.data) : undefined;
    });
  }

  find(term: string): Promise<NetworkRecord | undefined> {
    return this.ctx.read((db) => {
      const data = resolve(db, "networks", "network", term);
      return data === undefined ? undefined : decodeNetwork(data);
    });
  }

  list(): Promise<NetworkRecord[]> {
    return this.ctx.read((db) =>
      db
        .query<DataRow, []>("SELECT data FROM networks ORDER BY created, id")
        .all()
        .map((r) => decodeNetwork(r.data)),
    );
  }

  update(r: NetworkRecord): Promise<void> {
    return this.ctx.write((db) => {
      const clash = db.query<{ id: string }, [string]>("SELECT id FROM networks WHERE name = ?").get(r.name);
      if (clash && clash.id !== r.id) {
        throw conflict("network-exists", `network with name ${r.name} already exists`, "Name");
      }
      const res = db
        .query("UPDATE networks SET name = ?, created = ?, data = ? WHERE id = ?")
        .run(r.name, r.created, encodeNetwork(r), r.id);
      if (res.changes === 0) throw notFound("network-not-found", `network ${r.id} not found`);
    });
  }

  delete(id: string): Promise<boolean> {
    return this.ctx.write((db) => {
      const row = db.query<{ name: string }, [string]>("SELECT name FROM networks WHERE id = ?").get(id);
      if (!row) return false;
      const eps = db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM endpoints WHERE network_id = ?").get(id);
      if (eps && eps.n > 0) {
        throw conflict("network-in-use", `network ${row.name} id ${id} has active endpoints`);
      }
      db.query("DELETE FROM ip_allocations WHERE network_id = ?").run(id);
      db.query("DELETE FROM ip_cursors WHERE network_id = ?").run(id);
      db.query("DELETE FROM networks WHERE id = ?").run(id);
      return true;
    });
  }
}

class SqliteEndpoints implements EndpointTable {
  constructor(private readonly ctx: Ctx) {}

  create(r: EndpointRecord): Promise<void> {
    return this.ctx.write((db) => {
      const net = db.query<{ name: string }, [string]>("SELECT name FROM networks WHERE id = ?").get(r.networkId);
      if (!net) throw notFound("network-not-found", `network ${r.networkId} not found`);
      if (db.query("SELECT 1 FROM endpoints WHERE network_id = ? AND container_id = ?").get(r.networkId, r.containerId)) {
        const c = db.query<{ name: string }, [string]>("SELECT name FROM containers WHERE id = ?").get(r.containerId);
        throw conflict(
          "endpoint-exists",
          `endpoint with name ${c?.name ?? r.containerId} already exists in network ${net.name}`,
        );
      }
      if (db.query("SELECT 1 FROM endpoints WHERE id = ?").get(r.id)) {
        throw conflict("endpoint-exists", `endpoint with id ${r.id} already exists`);
      }
      db.query("INSERT INTO endpoints (id, network_id, container_id, created, data) VALUES (?, ?, ?, ?, ?)").run(
        r.id,
        r.networkId,
        r.containerId,
        r.created,
        encodeEndpoint(r),
      );
    });
  }

  get(id: string): Promise<EndpointRecord | undefined> {
    return this.ctx.read((db) => {
      const row = db.query<DataRow, [string]>("SELECT data FROM endpoints WHERE id = ?").get(id);
      return row ? decodeEndpoint(row.data) : undefined;
    });
  }

  listByNetwork(networkId: string): Promise<EndpointRecord[]> {
    return this.listWhere("network_id", networkId);
  }

  listByContainer(containerId: string): Promise<EndpointRecord[]> {
    return this.listWhere("container_id", containerId);
  }

  private listWhere(column: "network_id" | "container_id", value: string): Promise<EndpointRecord[]> {
    return this.ctx.read((db) =>
      db
        .query<DataRow, [string]>(`SELECT data FROM endpoints WHERE ${column} = ? ORDER BY created, id`)
        .all(value)
        .map((r) => decodeEndpoint(r.data)),
    );
  }

  update(r: EndpointRecord): Promise<void> {
    return this.ctx.write((db) => {
      const cur = db
        .query<{ network_id: string; container_id: string }, [string]>(
          "SELECT network_id, container_id FROM endpoints WHERE id = ?",
        )
        .get(r.id);
      if (!cur) throw notFound("endpoint-not-found", `endpoint ${r.id} not found`);
      if (cur.network_id !== r.networkId || cur.container_id !== r.containerId) {
        throw invalid("endpoint-immutable", `endpoint ${r.id}: network and container cannot change`);
      }
      db.query("UPDATE endpoints SET created = ?, data = ? WHERE id = ?").run(r.created, encodeEndpoint(r), r.id);
    });
  }

  delete(id: string): Promise<boolean> {
    return this.ctx.write((db) => db.query("DELETE FROM endpoints WHERE id = ?").run(id).changes > 0);
  }
}

class SqliteContainers implements ContainerTable {
  constructor(private readonly ctx: Ctx) {}

  create(r: ContainerRecord): Promise<void> {
    return this.ctx.write((db) => {
      if (db.query("SELECT 1 FROM containers WHERE name = ?").get(r.name)) {
        throw conflict("container-exists", `container with name ${r.name} already exists`, "name");
      }
      if (db.query("SELECT 1 FROM containers WHERE id = ?").get(r.id)) {
        throw conflict("container-exists", `container with id ${r.id} already exists`, "id");
      }
      db.query("INSERT INTO containers (id, name, created, data) VALUES (?, ?, ?, ?)").run(
        r.id,
        r.name,
        r.created,
        encodeContainer(r),
      );
    });
  }

  get(id: string): Promise<ContainerRecord | undefined> {
    return this.ctx.read((db) => {
      const row = db.query<DataRow, [string]>("SELECT data FROM containers WHERE id = ?").get(id);
      return row ? decodeContainer(row.data) : undefined;
    });
  }

  find(term: string): Promise<ContainerRecord | undefined> {
    return this.ctx.read((db) => {
      const data = resolve(db, "containers", "container", term);
      return data === undefined ? undefined : decodeContainer(data);
    });
  }

  list(): Promise<ContainerRecord[]> {
    return this.ctx.read((db) =>
      db
        .query<DataRow, []>("SELECT data FROM containers ORDER BY created, id")
        .all()
        .map((r) => decodeContainer(r.data)),
    );
  }

  update(r: ContainerRecord): Promise<void> {
    return this.ctx.write((db) => {
      const clash = db.query<{ id: string }, [string]>("SELECT id FROM containers WHERE name = ?").get(r.name);
      if (clash && clash.id !== r.id) {
        throw conflict("container-exists", `container with name ${r.name} already exists`, "name");
      }
      const res = db
        .query("UPDATE containers SET name = ?, created = ?, data = ? WHERE id = ?")
        .run(r.name, r.created, encodeContainer(r), r.id);
      if (res.changes === 0) throw notFound("container-not-found", `container ${r.id} not found`);
    });
  }

  delete(id: string): Promise<boolean> {
    return this.ctx.write((db) => db.query("DELETE FROM containers WHERE id = ?").run(id).changes > 0);
  }
}

export function makeTables(ctx: Ctx): StoreTables {
  return {
    networks: new SqliteNetworks(ctx),
    endpoints: new SqliteEndpoints(ctx),
    containers: new SqliteContainers(ctx),
    allocations: new SqliteAllocations(ctx),
    meta: new SqliteMeta(ctx),
  };
}
