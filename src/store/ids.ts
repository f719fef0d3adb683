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

/**
 * Whether a record named `name` exists, through a Docker-style `find` (exact id,
 * exact name, unique id prefix). A name that happens to be a prefix of several
 * ids makes `find` answer "ambiguous"; that only happens when neither an id nor a
 * name equals it, so the name is free.
 */
export async function nameTaken(table: { find(term: string): Promise<{ name: string } | undefined> }, name: string): Promise<boolean> {
  try {
    return (await table.find(name))?.name === name;
  } catch (e) {
    if ((e as { code?: string }).code === "ambiguous") return false;
    throw e;
  }
}
