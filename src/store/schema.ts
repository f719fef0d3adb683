/**
 * SQLite schema and migrations. Each entry of MIGRATIONS moves the schema one
 * version up; the version lives in meta("schema_version"). Records are JSON
 * documents in `data`; the columns beside it exist for uniqueness and lookups.
 */
import type { Database } from "bun:sqlite";
import { systemError } from "../errors.ts";

export const MIGRATIONS: readonly string[] = [
  // v1
  `CREATE TABLE networks (
     id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL, data TEXT NOT NULL);
   CREATE TABLE endpoints (
     id TEXT PRIMARY KEY, network_id TEXT NOT NULL, container_id TEXT NOT NULL, created TEXT NOT NULL,
     data TEXT NOT NULL, UNIQUE (network_id, container_id));
   CREATE INDEX endpoints_by_container ON endpoints (container_id);
   CREATE TABLE containers (
     id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL, data TEXT NOT NULL);
   CREATE TABLE ip_allocations (
     network_id TEXT NOT NULL, container_id TEXT NOT NULL, ifname TEXT NOT NULL, family INTEGER NOT NULL,
     addr_key TEXT NOT NULL, subnet TEXT NOT NULL, created TEXT NOT NULL,
     PRIMARY KEY (network_id, container_id, ifname, family),
     UNIQUE (network_id, addr_key));
   CREATE INDEX ip_allocations_by_container ON ip_allocations (container_id);
   CREATE TABLE ip_cursors (
     network_id TEXT NOT NULL, subnet TEXT NOT NULL, addr_key TEXT NOT NULL, PRIMARY KEY (network_id, subnet));`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the schema up to date. Call inside BEGIN IMMEDIATE. */
export function migrate(db: Database): void {
  db.run("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
  const row = db.query<{ value: string }, [string]>("SELECT value FROM meta WHERE key = ?").get("schema_version");
  const current = row ? Number(row.value) : 0;
  if (!Number.isInteger(current) || current > SCHEMA_VERSION) {
    throw systemError(
      "store-schema",
      `state database schema version ${row?.value} is newer than this Berth understands (${SCHEMA_VERSION})`,
    );
  }
  for (let v = current; v < SCHEMA_VERSION; v++) db.run(MIGRATIONS[v] ?? "");
  if (current !== SCHEMA_VERSION) {
    db.query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)").run("schema_version", String(SCHEMA_VERSION));
  }
}
