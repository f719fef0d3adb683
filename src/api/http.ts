/**
 * Transport-neutral request/response types and the error mapping shared by all
 * API handlers. Handlers are pure functions over the controller; the daemon's
 * HTTP server is a thin adapter.
 */
import { asBerthError, type BerthError, type ErrorKind, invalid } from "../errors.ts";

export interface ApiRequest {
  method: string;
  /** Path without the optional /vX.YY version prefix. */
  path: string;
  query: URLSearchParams;
  body: unknown;
}

export interface ApiResponse {
  status: number;
  body?: unknown;
  /** Raw text body (logs); takes precedence over `body`. */
  text?: string;
}

const STATUS: Record<ErrorKind, number> = {
  invalid: 400,
  "not-found": 404,
  conflict: 409,
  forbidden: 403,
  unavailable: 503,
  system: 500,
};

/** Docker's error body is {"message": ...}; Berth adds kind, code and field. */
export function errorResponse(e: unknown): ApiResponse {
  const be: BerthError = asBerthError(e);
  return { status: STATUS[be.kind], body: be.toJSON() };
}

export function ok(body?: unknown, status = 200): ApiResponse {
  return body === undefined ? { status } : { status, body };
}

// ---- small typed readers for untrusted JSON ----

export type Json = Record<string, unknown>;

export function asObject(v: unknown, field: string): Json {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw invalid("bad-type", `${field} must be a JSON object`, field);
  return v as Json;
}

export function optString(o: Json, key: string, field = key): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid("bad-type", `${field} must be a string`, field);
  return v;
}

export function optBool(o: Json, key: string, field = key): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw invalid("bad-type", `${field} must be true or false`, field);
  return v;
}

export function optNumber(o: Json, key: string, field = key): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw invalid("bad-type", `${field} must be a number`, field);
  return v;
}

export function optStringMap(o: Json, key: string, field = key): Record<string, string> | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  const m = asObject(v, field);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(m)) {
    if (typeof x !== "string") throw invalid("bad-type", `${field}.${k} must be a string`, `${field}.${k}`);
    out[k] = x;
  }
  return out;
}

export function optStringArray(o: Json, key: string, field = key): string[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw invalid("bad-type", `${field} must be a list of strings`, field);
  return v as string[];
}

/** Rejects keys not in `known` so typos are reported instead of ignored. */
export function rejectUnknown(o: Json, known: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw invalid("unknown-field", `unknown field ${JSON.stringify(k)} in ${where}`, k);
  }
}

/** Docker's `filters` query parameter: {"name":{"x":true}} or {"name":["x"]}. */
export function parseFilters(raw: string | null): Record<string, string[]> {
  if (!raw) return {};
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw invalid("bad-filters", `filters is not valid JSON: ${raw}`, "filters");
  }
  const o = asObject(v, "filters");
  const out: Record<string, string[]> = {};
  for (const [k, x] of Object.entries(o)) {
    if (Array.isArray(x)) out[k] = x.map(String);
    else if (x && typeof x === "object") out[k] = Object.keys(x as object);
    else throw invalid("bad-filters", `filter ${k} must be a list or a map`, `filters.${k}`);
  }
  return out;
}
