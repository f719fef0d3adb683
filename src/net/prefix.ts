/**
 * Prefix: a network, i.e. an address whose host bits are all zero plus a length.
 */
import { invalid } from "../errors.ts";
import { splitCidr } from "./cidr.ts";
import { type Family, IP } from "./ip.ts";
import { quote, toBigInt } from "./internal.ts";

const WORDS = { what: "prefix", code: "prefix", example: "10.0.0.0/24" } as const;

/** The netmask of a prefix length as an integer. */
function maskValue(bits: number, length: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return all ^ ((1n << BigInt(bits - length)) - 1n);
}

export class Prefix {
  /** The network address (host bits zero). */
  readonly ip: IP;
  readonly length: number;

  private constructor(ip: IP, length: number) {
    this.ip = ip;
    this.length = length;
    Object.freeze(this);
  }

  /**
   * Parses "10.0.0.0/24" or "fd00::/64". Host bits must be zero (code "prefix-host-bits");
   * a bad length gives "prefix-length", anything else "prefix-invalid".
   */
  static parse(s: string, field?: string): Prefix {
    const { ip, length } = splitCidr(s, WORDS, field);
    const p = Prefix.of(ip, length);
    if (!p.ip.equals(ip)) {
      throw invalid(
        "prefix-host-bits",
        `invalid prefix ${quote(s)}: host bits are set; did you mean "${p}"?`,
        field,
      );
    }
    return p;
  }

  /** Like parse, but clears host bits instead of rejecting them ("10.0.0.1/24" gives 10.0.0.0/24). */
  static parseLoose(s: string, field?: string): Prefix {
    const { ip, length } = splitCidr(s, WORDS, field);
    return Prefix.of(ip, length);
  }

  /** The prefix of the given length containing ip (host bits are cleared). */
  static of(ip: IP, length: number): Prefix {
    if (!Number.isInteger(length) || length < 0 || length > ip.bits) {
      throw invalid(
        "prefix-length",
        `invalid prefix length ${String(length)} for IPv${ip.family} address ${ip}: must be an integer 0-${ip.bits}`,
      );
    }
    return new Prefix(IP.fromBigInt(ip.family, ip.value & maskValue(ip.bits, length)), length);
  }

  get family(): Family {
    return this.ip.family;
  }

  /** Number of addresses: 2^(bits - length). */
  get size(): bigint {
    return 1n << BigInt(this.ip.bits - this.length);
  }

  /** The network address. */
  first(): IP {
    return this.ip;
  }

  /** The last address (the broadcast address for IPv4). */
  last(): IP {
    return IP.fromBigInt(this.family, this.ip.value + this.size - 1n);
  }

  /** The i-th address, 0 being the network address; throws "prefix-index" outside 0..size-1. */
  nth(i: bigint | number): IP {
    const n = toBigInt(i, "prefix-index", "prefix index");
    if (n < 0n || n >= this.size) {
      throw invalid(
        "prefix-index",
        `index ${n} is outside ${this}, which has ${this.size} addresses (0 to ${this.size - 1n})`,
      );
    }
    return IP.fromBigInt(this.family, this.ip.value + n);
  }

  /** Offset of ip from the network address; throws "prefix-not-contained" if ip is outside. */
  indexOf(ip: IP): bigint {
    if (!this.contains(ip)) throw invalid("prefix-not-contained", `${ip} is not inside ${this}`);
    return ip.value - this.ip.value;
  }

  contains(ip: IP): boolean {
    return ip.family === this.family && (ip.value & maskValue(ip.bits, this.length)) === this.ip.value;
  }

  /** True if every address of p is in this prefix (a prefix contains itself). */
  containsPrefix(p: Prefix): boolean {
    return p.family === this.family && p.length >= this.length && this.contains(p.ip);
  }

  /** True if the two share an address; always false across families. */
  overlaps(p: Prefix): boolean {
    return this.containsPrefix(p) || p.containsPrefix(this);
  }

  /**
   * All subnets of newLength, in address order. Throws "prefix-length" (immediately,
   * not on first iteration) unless length <= newLength <= bits.
   */
  subnets(newLength: number): Generator<Prefix> {
    if (!Number.isInteger(newLength) || newLength < this.length || newLength > this.ip.bits) {
      throw invalid(
        "prefix-length",
        `cannot split ${this} into /${String(newLength)} subnets: the length must be an integer ${this.length}-${this.ip.bits}`,
      );
    }
    return subnetsOf(this, newLength);
  }

  /** The next prefix of the same length, or undefined at the end of the address space. */
  next(): Prefix | undefined {
    const v = this.ip.value + this.size;
    if (v >> BigInt(this.ip.bits) !== 0n) return undefined;
    return new Prefix(IP.fromBigInt(this.family, v), this.length);
  }

  /** The netmask as an address, e.g. 255.255.255.0 for a /24. */
  mask(): IP {
    return IP.fromBigInt(this.family, maskValue(this.ip.bits, this.length));
  }

  equals(p: Prefix): boolean {
    return this.length === p.length && this.ip.equals(p.ip);
  }

  /** By address (IPv4 first), then shorter prefixes first. Returns -1, 0 or 1. */
  compare(p: Prefix): number {
    const c = this.ip.compare(p.ip);
    if (c !== 0) return c;
    return this.length < p.length ? -1 : this.length > p.length ? 1 : 0;
  }

  toString(): string {
    return `${this.ip}/${this.length}`;
  }

  toJSON(): string {
    return this.toString();
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `Prefix(${this.toString()})`;
  }
}

function* subnetsOf(p: Prefix, newLength: number): Generator<Prefix> {
  const count = 1n << BigInt(newLength - p.length);
  const step = 1n << BigInt(p.ip.bits - newLength);
  for (let i = 0n; i < count; i++) yield Prefix.of(IP.fromBigInt(p.family, p.ip.value + i * step), newLength);
}
