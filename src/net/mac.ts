/**
 * MAC: an immutable 48-bit Ethernet address.
 */
import { invalid } from "../errors.ts";
import type { IP } from "./ip.ts";
import { HAS_WHITESPACE, quote, requireString } from "./internal.ts";

const OCTET = /^[0-9a-fA-F]{2}$/;

export class MAC {
  readonly #bytes: Uint8Array;
  #text: string | undefined;

  private constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    Object.freeze(this);
  }

  /** The 6 address bytes (a fresh copy each time: a MAC never changes). */
  get bytes(): Uint8Array {
    return this.#bytes.slice();
  }

  /**
   * Parses six two-digit hex octets separated by ":" or "-" (one kind throughout),
   * any case. Throws code "mac-invalid".
   */
  static parse(s: string, field?: string): MAC {
    requireString(s, "MAC address", "mac-invalid", field);
    const bad = (reason: string): never => {
      throw invalid("mac-invalid", `invalid MAC address ${quote(s)}: ${reason}`, field);
    };
    if (s === "") bad("empty string");
    if (HAS_WHITESPACE.test(s)) bad("contains whitespace");
    const sep = s.includes(":") ? ":" : "-";
    if (s.includes(":") && s.includes("-")) bad(`mixes ":" and "-" separators`);
    const parts = s.split(sep);
    if (parts.length !== 6) bad(`has ${parts.length} octet${parts.length === 1 ? "" : "s"}; expected 6 (e.g. "02:42:ac:11:00:02")`);
    const out = new Uint8Array(6);
    for (const [i, p] of parts.entries()) {
      if (!OCTET.test(p)) bad(`octet ${quote(p)} is not two hex digits`);
      out[i] = Number.parseInt(p, 16);
    }
    return new MAC(out);
  }

  /** Like parse, but returns undefined instead of throwing. */
  static tryParse(s: string): MAC | undefined {
    try {
      return MAC.parse(s);
    } catch {
      return undefined;
    }
  }

  /** From exactly 6 bytes (copied). Throws code "mac-invalid". */
  static fromBytes(b: Uint8Array): MAC {
    if (!(b instanceof Uint8Array) || b.length !== 6) {
      const len = b instanceof Uint8Array ? `${b.length} bytes` : "not a Uint8Array";
      throw invalid("mac-invalid", `invalid MAC address bytes: expected 6 bytes, got ${len}`);
    }
    return new MAC(b.slice());
  }

  /** A random locally administered unicast address (first octet: bit 0x02 set, bit 0x01 clear). */
  static random(): MAC {
    const b = crypto.getRandomValues(new Uint8Array(6));
    b[0] = ((b[0] ?? 0) & 0xfc) | 0x02;
    return new MAC(b);
  }

  /** Docker's scheme: 02:42 followed by the 4 bytes of an IPv4 address. Throws "mac-from-ip" for IPv6. */
  static fromIPv4(ip: IP): MAC {
    if (ip.family !== 4) throw invalid("mac-from-ip", `cannot derive a MAC address from ${ip}: it is not an IPv4 address`);
    const b = new Uint8Array(6);
    b[0] = 0x02;
    b[1] = 0x42;
    b.set(ip.toBytes(), 2);
    return new MAC(b);
  }

  isUnicast(): boolean {
    return ((this.#bytes[0] ?? 0) & 0x01) === 0;
  }

  isLocallyAdministered(): boolean {
    return ((this.#bytes[0] ?? 0) & 0x02) !== 0;
  }

  equals(o: MAC): boolean {
    return this.toString() === o.toString();
  }

  /** Lowercase, colon separated: "02:42:ac:11:00:02". */
  toString(): string {
    // immutable: formatted once (the firewall renders every container's MAC on each sync)
    this.#text ??= Array.from(this.#bytes, (x) => x.toString(16).padStart(2, "0")).join(":");
    return this.#text;
  }

  toJSON(): string {
    return this.toString();
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `MAC(${this.toString()})`;
  }
}
