/**
 * IPNet: an interface address, i.e. an IP together with the prefix it lives in
 * (e.g. 10.0.0.2/24). Unlike Prefix, host bits are expected.
 */
import { splitCidr } from "./cidr.ts";
import type { Family, IP } from "./ip.ts";
import { Prefix } from "./prefix.ts";

const WORDS = { what: "interface address", code: "ipnet", example: "10.0.0.2/24" } as const;

export class IPNet {
  readonly ip: IP;
  /** The network ip belongs to (host bits cleared). */
  readonly prefix: Prefix;

  private constructor(ip: IP, prefix: Prefix) {
    this.ip = ip;
    this.prefix = prefix;
    Object.freeze(this);
  }

  /** Parses "10.0.0.2/24" or "fd00::2/64"; codes "ipnet-invalid" and "ipnet-length". */
  static parse(s: string, field?: string): IPNet {
    const { ip, length } = splitCidr(s, WORDS, field);
    return new IPNet(ip, Prefix.of(ip, length));
  }

  /** Throws "prefix-length" if length does not fit the family. */
  static of(ip: IP, length: number): IPNet {
    return new IPNet(ip, Prefix.of(ip, length));
  }

  get family(): Family {
    return this.ip.family;
  }

  /** The prefix length. */
  get length(): number {
    return this.prefix.length;
  }

  toString(): string {
    return `${this.ip}/${this.prefix.length}`;
  }

  toJSON(): string {
    return this.toString();
  }

  equals(o: IPNet): boolean {
    return this.ip.equals(o.ip) && this.prefix.length === o.prefix.length;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `IPNet(${this.toString()})`;
  }
}
