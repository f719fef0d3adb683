/**
 * CNI error codes (SPEC.md "Error"): 1-99 reserved by the spec, 100+ plugin
 * specific. Berth's BerthError kinds map onto them when a throw site gave no
 * explicit code.
 */
import { BerthError, type ErrorKind } from "../errors.ts";

export const CNI_ERR = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  invalidNetns: 8,
  tryAgainLater: 11,
  notAvailable: 50,
  notAvailableDegraded: 51,
  // Berth's own
  conflict: 100,
  forbidden: 101,
  /** CHECK found a resource missing or different from the previous result. */
  checkFailed: 102,
  internal: 999,
} as const;

const BY_KIND: Record<ErrorKind, number> = {
  invalid: CNI_ERR.invalidConfig,
  "not-found": CNI_ERR.invalidConfig,
  conflict: CNI_ERR.conflict,
  forbidden: CNI_ERR.forbidden,
  unavailable: CNI_ERR.tryAgainLater,
  system: CNI_ERR.internal,
};

export class CniError extends Error {
  readonly code: number;
  readonly details: string;
  constructor(code: number, msg: string, details = "") {
    super(msg);
    this.name = "CniError";
    this.code = code;
    this.details = details;
  }
}

export function cniError(code: number, msg: string, details = ""): CniError {
  return new CniError(code, msg, details);
}

/** Any thrown value as a CNI error. */
export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof BerthError) {
    const code = e.code === "pool-exhausted" ? CNI_ERR.tryAgainLater : BY_KIND[e.kind];
    return new CniError(code, e.message, e.field ? `field: ${e.field}` : "");
  }
  return new CniError(CNI_ERR.internal, e instanceof Error ? e.message : String(e));
}

export function errorJson(e: CniError, cniVersion: string): Record<string, unknown> {
  return { cniVersion, code: e.code, msg: e.message, ...(e.details ? { details: e.details } : {}) };
}
