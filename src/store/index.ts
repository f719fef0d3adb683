export type * from "./types.ts";
export { isId, newId, nowIso } from "./ids.ts";
export { endpointOn, nameTaken } from "./lookups.ts";
export { openSqliteStore, type SqliteStore } from "./sqlite.ts";
