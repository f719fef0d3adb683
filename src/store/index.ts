export type * from "./types.ts";
export { isId, nameTaken, newId, nowIso } from "./ids.ts";
export { openSqliteStore, type SqliteStore } from "./sqlite.ts";
