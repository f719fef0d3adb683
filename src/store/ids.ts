/** Identifiers and timestamps for records. */

/** A new random 64-hex-character id (Docker's format). */
export function newId(): string {
  // Web Crypto, not node:crypto: importing node:crypto costs a CNI plugin process 2-16 ms of start-up
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
}

export function isId(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

export function nowIso(): string {
  return new Date().toISOString();
}
