/**
 * The IPAM bookkeeping tables (ip_allocations, ip_cursors) and meta of the
 * SQLite store. Addresses are kept as fixed-width hex keys, so that SQL range
 * queries and ORDER BY follow address order.
 */
import type { Database } from "bun:sqlite";
import { conflict } from "../errors.ts";
import { IP, Prefix } from "../net/index.ts";
import type { Ctx } from "./sqlite-tables.ts";
import type { AllocationFilter, AllocationKey, AllocationRecord, AllocationTable, MetaTable } from "./types.ts";

interface AllocRow {
  network_id: string;
  container_id: string;
  ifname: string;
  family: number;
  addr_key: string;
  subnet: string;
  created: string;
}

/** Fixed-width hex, so that keys sort like the addresses they stand for. */
export function addrKey(ip: IP): string {
  return ip.value.toString(16).padStart(ip.family === 4 ? 8 : 32, "0");
}

function ipFromKey(family: 4 | 6, key: string): IP {
  return IP.fromBigInt(family, BigInt(`0x${key}`));
}

function allocFromRow(r: AllocRow): AllocationRecord {
  const family = r.family === 6 ? 6 : 4;
  return {
    networkId: r.network_id,
    containerId: r.container_id,
    ifname: r.ifname,
    family,
    address: ipFromKey(family, r.addr_key),
    subnet: Prefix.parse(r.subnet),
    created: r.created,
  };
}

const ALLOC_ORDER = "ORDER BY network_id, family, addr_key";

export class SqliteAllocations implements AllocationTable {
  constructor(private readonly ctx: Ctx) {}

  list(filter: AllocationFilter = {}): Promise<AllocationRecord[]> {
    return this.ctx.read((db) => {
      const rows = db
        .query<AllocRow, [string | null, string | null]>(
          `SELECT * FROM ip_allocations WHERE (?1 IS NULL OR network_id = ?1) AND (?2 IS NULL OR container_id = ?2) ${ALLOC_ORDER}`,
        )
        .all(filter.networkId ?? null, filter.containerId ?? null);
      return rows.map(allocFromRow);
    });
  }

  get(key: AllocationKey): Promise<AllocationRecord[]> {
    return this.ctx.read((db) => this.selectKey(db, key));
  }

  private selectKey(db: Database, key: AllocationKey, family?: 4 | 6): AllocationRecord[] {
    return db
      .query<AllocRow, [string, string, string, number | null]>(
        `SELECT * FROM ip_allocations WHERE network_id = ? AND container_id = ? AND ifname = ?
           AND (?4 IS NULL OR family = ?4) ORDER BY family`,
      )
      .all(key.networkId, key.containerId, key.ifname, family ?? null)
      .map(allocFromRow);
  }

  byAddress(networkId: string, address: IP): Promise<AllocationRecord | undefined> {
    return this.ctx.read((db) => {
      const row = db
        .query<AllocRow, [string, string]>("SELECT * FROM ip_allocations WHERE network_id = ? AND addr_key = ?")
        .get(networkId, addrKey(address));
      return row ? allocFromRow(row) : undefined;
    });
  }

  addressesIn(networkId: string, first: IP, last: IP, limit: number): Promise<IP[]> {
    return this.ctx.read((db) =>
      db
        .query<{ addr_key: string }, [string, number, string, string, number]>(
          `SELECT addr_key FROM ip_allocations WHERE network_id = ? AND family = ? AND addr_key BETWEEN ? AND ?
           ORDER BY addr_key LIMIT ?`,
        )
        .all(networkId, first.family, addrKey(first), addrKey(last), limit)
        .map((r) => ipFromKey(first.family, r.addr_key)),
    );
  }

  insert(r: AllocationRecord): Promise<void> {
    return this.ctx.write((db) => {
      if (db.query("SELECT 1 FROM ip_allocations WHERE network_id = ? AND addr_key = ?").get(r.networkId, addrKey(r.address))) {
        throw conflict("address-in-use", `address ${r.address.toString()} is already in use`);
      }
      if (this.selectKey(db, r, r.family).length > 0) {
        throw conflict(
          "allocation-exists",
          `${r.containerId} ${r.ifname} already has an IPv${r.family} address in network ${r.networkId}`,
        );
      }
      db.query(
        `INSERT INTO ip_allocations (network_id, container_id, ifname, family, addr_key, subnet, created)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(r.networkId, r.containerId, r.ifname, r.family, addrKey(r.address), r.subnet.toString(), r.created);
    });
  }

  delete(key: AllocationKey, family?: 4 | 6): Promise<AllocationRecord[]> {
    return this.ctx.write((db) => {
      const gone = this.selectKey(db, key, family);
      db.query(
        `DELETE FROM ip_allocations WHERE network_id = ? AND container_id = ? AND ifname = ?
           AND (?4 IS NULL OR family = ?4)`,
      ).run(key.networkId, key.containerId, key.ifname, family ?? null);
      return gone;
    });
  }

  deleteNetwork(networkId: string): Promise<AllocationRecord[]> {
    return this.ctx.write((db) => {
      const gone = db
        .query<AllocRow, [string]>(`SELECT * FROM ip_allocations WHERE network_id = ? ${ALLOC_ORDER}`)
        .all(networkId)
        .map(allocFromRow);
      db.query("DELETE FROM ip_allocations WHERE network_id = ?").run(networkId);
      db.query("DELETE FROM ip_cursors WHERE network_id = ?").run(networkId);
      return gone;
    });
  }

  getCursor(networkId: string, subnet: Prefix): Promise<IP | undefined> {
    return this.ctx.read((db) => {
      const row = db
        .query<{ addr_key: string }, [string, string]>(
          "SELECT addr_key FROM ip_cursors WHERE network_id = ? AND subnet = ?",
        )
        .get(networkId, subnet.toString());
      return row ? ipFromKey(subnet.family, row.addr_key) : undefined;
    });
  }

  setCursor(networkId: string, subnet: Prefix, last: IP): Promise<void> {
    return this.ctx.write((db) => {
      db.query("INSERT OR REPLACE INTO ip_cursors (network_id, subnet, addr_key) VALUES (?, ?, ?)").run(
        networkId,
        subnet.toString(),
        addrKey(last),
      );
    });
  }
}

export class SqliteMeta implements MetaTable {
  constructor(private readonly ctx: Ctx) {}

  get(key: string): Promise<string | undefined> {
    return this.ctx.read(
      (db) => db.query<{ value: string }, [string]>("SELECT value FROM meta WHERE key = ?").get(key)?.value,
    );
  }

  set(key: string, value: string): Promise<void> {
    return this.ctx.write((db) => {
      db.query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)").run(key, value);
    });
  }

  delete(key: string): Promise<boolean> {
    return this.ctx.write((db) => db.query("DELETE FROM meta WHERE key = ?").run(key).changes > 0);
  }
}

