export type * from "./types.ts";
export { newId, isId, nowIso } from "./ids.ts";
export { openSqliteStore, type SqliteStore } from "./sqlite.ts";
