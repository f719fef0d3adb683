/**
 * Every failure Berth reports carries a kind (what class of problem), a stable
 * machine-readable code, a human message and, where one input is at fault, the
 * field that was wrong. The API maps kind -> HTTP status, the CNI layer maps
 * kind/code -> CNI error codes.
 */
export type ErrorKind = "invalid" | "not-found" | "conflict" | "forbidden" | "unavailable" | "system";

export class BerthError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly field: string | undefined;
  constructor(kind: ErrorKind, code: string, message: string, field?: string) {
    super(message);
    this.name = "BerthError";
    this.kind = kind;
    this.code = code;
    this.field = field;
  }
  toJSON(): { kind: ErrorKind; code: string; message: string; field?: string } {
    return this.field === undefined
      ? { kind: this.kind, code: this.code, message: this.message }
      : { kind: this.kind, code: this.code, message: this.message, field: this.field };
  }
}

export const invalid = (code: string, message: string, field?: string): BerthError =>
  new BerthError("invalid", code, message, field);
export const notFound = (code: string, message: string, field?: string): BerthError =>
  new BerthError("not-found", code, message, field);
export const conflict = (code: string, message: string, field?: string): BerthError =>
  new BerthError("conflict", code, message, field);
export const forbidden = (code: string, message: string, field?: string): BerthError =>
  new BerthError("forbidden", code, message, field);
export const unavailable = (code: string, message: string, field?: string): BerthError =>
  new BerthError("unavailable", code, message, field);
export const systemError = (code: string, message: string, field?: string): BerthError =>
  new BerthError("system", code, message, field);

/** Wraps anything thrown into a BerthError (non-Berth errors become kind "system"). */
export function asBerthError(e: unknown): BerthError {
  if (e instanceof BerthError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return systemError("internal", msg);
}
