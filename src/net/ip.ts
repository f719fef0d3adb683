/**
 * IP: a parsed, immutable IPv4 or IPv6 address.
 */
import { invalid } from "../errors.ts";
import { quote, requireString, toBigInt } from "./internal.ts";
import { formatV4, formatV6, parseAddr } from "./parse-ip.ts";

export type Family = 4 | 6;

const MAX: Readonly<Record<Family, bigint>> = { 4: (1n << 32n) - 1n, 6: (1n << 128n) - 1n };
const V4_MAPPED = 0xffffn << 32n;

function checkFamily(family: unknown): Family {
  if (family !== 4 && family !== 6) throw invalid("ip-family", `invalid IP family ${String(family)}: must be 4 or 6`);
  return family;
}

/** IP.toString's results (an IP is frozen, so the text cannot live on it). */
const texts = new WeakMap<IP, string>();

export class IP {
  readonly family: Family;
  /** The address as an unsigned integer: 32-bit for IPv4, 128-bit for IPv6. */
  readonly value: bigint;

  private constructor(family: Family, value: bigint) {
    this.family = family;
    this.value = value;
    Object.freeze(this);
  }

  /**
   * Parses a strict IPv4 dotted quad or any RFC 4291 IPv6 text form.
   * Throws BerthError (kind "invalid", code "ip-invalid") naming the value and the reason.
   */
  static parse(s: string, field?: string): IP {
    requireString(s, "IP address", "ip-invalid", field);
    const r = parseAddr(s);
    if (!r.ok) throw invalid("ip-invalid", `invalid ${r.what} ${quote(s)}: ${r.reason}`, field);
    return new IP(r.family, r.value);
  }

  /** Like parse, but returns undefined instead of throwing. */
  static tryParse(s: string): IP | undefined {
    if (typeof s !== "string") return undefined;
    const r = parseAddr(s);
    return r.ok ? new IP(r.family, r.value) : undefined;
  }

  /** Builds an address from its integer value; throws "ip-out-of-range" if it does not fit the family. */
  static fromBigInt(family: Family, v: bigint): IP {
    const f = checkFamily(family);
    if (typeof v !== "bigint" || v < 0n || v > MAX[f]) {
      throw invalid("ip-out-of-range", `value ${String(v)} is out of range for an IPv${f} address (0 to ${MAX[f]})`);
    }
    return new IP(f, v);
  }

  static v4(a: number, b: number, c: number, d: number): IP {
    let v = 0;
    for (const o of [a, b, c, d]) {
      if (!Number.isInteger(o) || o < 0 || o > 255) {
        throw invalid("ip-invalid", `invalid IPv4 octet ${String(o)} in IP.v4(${a}, ${b}, ${c}, ${d}): must be an integer 0-255`);
      }
      v = v * 256 + o;
    }
    return new IP(4, BigInt(v));
  }

  /** 4 bytes give IPv4, 16 bytes IPv6 (network byte order). */
  static fromBytes(b: Uint8Array): IP {
    if (!(b instanceof Uint8Array) || (b.length !== 4 && b.length !== 16)) {
      const len = b instanceof Uint8Array ? `${b.length} bytes` : "not a Uint8Array";
      throw invalid("ip-bytes", `invalid IP address bytes: expected 4 or 16 bytes, got ${len}`);
    }
    let v = 0n;
    for (const x of b) v = (v << 8n) | BigInt(x);
    return new IP(b.length === 4 ? 4 : 6, v);
  }

  get bits(): 32 | 128 {
    return this.family === 4 ? 32 : 128;
  }

  /** Dotted quad for IPv4; RFC 5952 canonical text for IPv6. */
  toString(): string {
    // immutable (and frozen): formatted once, remembered beside it
    let t = texts.get(this);
    if (t === undefined) {
      t = this.family === 4 ? formatV4(this.value) : formatV6(this.value);
      texts.set(this, t);
    }
    return t;
  }

  toJSON(): string {
    return this.toString();
  }

  equals(o: IP): boolean {
    return this.family === o.family && this.value === o.value;
  }

  /** IPv4 sorts before IPv6, then by numeric value. Returns -1, 0 or 1. */
  compare(o: IP): number {
    if (this.family !== o.family) return this.family < o.family ? -1 : 1;
    return this.value < o.value ? -1 : this.value > o.value ? 1 : 0;
  }

  /** The address n further on (n may be negative); throws "ip-overflow" when leaving the address space. */
  add(n: bigint | number): IP {
    const d = toBigInt(n, "ip-invalid-offset", "IP offset");
    const v = this.value + d;
    if (v < 0n || v > MAX[this.family]) {
      throw invalid("ip-overflow", `${this} ${d < 0n ? "-" : "+"} ${d < 0n ? -d : d} leaves the IPv${this.family} address space`);
    }
    return new IP(this.family, v);
  }

  /** Network byte order; a fresh array each call. */
  toBytes(): Uint8Array {
    const n = this.family === 4 ? 4 : 16;
    const out = new Uint8Array(n);
    let v = this.value;
    for (let i = n - 1; i >= 0; i--) {
      out[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return out;
  }

  /** True for ::ffff:a.b.c.d. */
  isIPv4Mapped(): boolean {
    return this.family === 6 && this.value >> 32n === 0xffffn;
  }

  /** ::ffff:a.b.c.d becomes a.b.c.d; every other address is returned unchanged. */
  unmap(): IP {
    return this.isIPv4Mapped() ? new IP(4, this.value & MAX[4]) : this;
  }

  /** The IPv4-mapped IPv6 form (::ffff:a.b.c.d) of an IPv4 address; IPv6 addresses are returned unchanged. */
  toIPv6Mapped(): IP {
    return this.family === 4 ? new IP(6, V4_MAPPED | this.value) : this;
  }

  /** 127.0.0.0/8 or ::1 (IPv4-mapped addresses are judged as IPv4). */
  isLoopback(): boolean {
    const ip = this.unmap();
    return ip.family === 4 ? ip.value >> 24n === 127n : ip.value === 1n;
  }

  /** 0.0.0.0 or ::. */
  isUnspecified(): boolean {
    return this.value === 0n;
  }

  /** 224.0.0.0/4 or ff00::/8 (IPv4-mapped addresses are judged as IPv4). */
  isMulticast(): boolean {
    const ip = this.unmap();
    return ip.family === 4 ? ip.value >> 28n === 0xen : ip.value >> 120n === 0xffn;
  }

  /** Link-local unicast: 169.254.0.0/16 or fe80::/10 (IPv4-mapped addresses are judged as IPv4). */
  isLinkLocal(): boolean {
    const ip = this.unmap();
    return ip.family === 4 ? ip.value >> 16n === 0xa9fen : ip.value >> 118n === 0x3fan;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `IP(${this.toString()})`;
  }
}
