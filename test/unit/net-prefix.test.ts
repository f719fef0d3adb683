/** src/net/prefix.ts and src/net/ipnet.ts. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { BerthError } from "../../src/errors.ts";
import { IP } from "../../src/net/ip.ts";
import { IPNet } from "../../src/net/ipnet.ts";
import { Prefix } from "../../src/net/prefix.ts";

function caught(f: () => unknown): BerthError {
  try {
    f();
  } catch (e) {
    if (e instanceof BerthError) return e;
    throw e;
  }
  throw new Error("expected a BerthError, but nothing was thrown");
}

const MAX = { 4: (1n << 32n) - 1n, 6: (1n << 128n) - 1n } as const;
const v4 = fc.bigInt({ min: 0n, max: MAX[4] }).map((v) => IP.fromBigInt(4, v));
const v6 = fc.bigInt({ min: 0n, max: MAX[6] }).map((v) => IP.fromBigInt(6, v));
const anyIP = fc.oneof(v4, v6);
const withLength = (ip: IP) => fc.integer({ min: 0, max: ip.bits }).map((len) => ({ ip, len }));
const ipAndLength = anyIP.chain(withLength);
const anyPrefix = ipAndLength.map(({ ip, len }) => Prefix.of(ip, len));
/** Prefixes drawn from a small space (top bits mostly fixed), so that overlaps are common. */
const clustered = fc
  .record({
    family: fc.constantFrom(4 as const, 6 as const),
    top: fc.nat(3),
    rest: fc.bigInt({ min: 0n, max: MAX[6] }),
    len: fc.nat(12),
  })
  .map(({ family, top, rest, len }) => {
    const bits = family === 4 ? 32n : 128n;
    const v = (BigInt(top) << (bits - 2n)) | (rest & ((1n << (bits - 2n)) - 1n));
    return Prefix.of(IP.fromBigInt(family, v), len);
  });

describe("Prefix.parse", () => {
  test("examples", () => {
    const p = Prefix.parse("10.0.0.0/24");
    expect(p.ip.toString()).toBe("10.0.0.0");
    expect(p.length).toBe(24);
    expect(p.family).toBe(4);
    expect(p.size).toBe(256n);
    expect(p.first().toString()).toBe("10.0.0.0");
    expect(p.last().toString()).toBe("10.0.0.255");
    expect(p.mask().toString()).toBe("255.255.255.0");
    expect(p.toString()).toBe("10.0.0.0/24");
    expect(p.toJSON()).toBe("10.0.0.0/24");

    const q = Prefix.parse("FD00:0::/64");
    expect(q.toString()).toBe("fd00::/64");
    expect(q.family).toBe(6);
    expect(q.size).toBe(1n << 64n);
    expect(q.last().toString()).toBe("fd00::ffff:ffff:ffff:ffff");
    expect(q.mask().toString()).toBe("ffff:ffff:ffff:ffff::");

    expect(Prefix.parse("0.0.0.0/0").size).toBe(1n << 32n);
    expect(Prefix.parse("::/0").last().toString()).toBe("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    expect(Prefix.parse("10.1.2.3/32").size).toBe(1n);
    expect(Prefix.parse("0.0.0.0/0").mask().toString()).toBe("0.0.0.0");
    expect(Prefix.parse("172.16.0.0/12").mask().toString()).toBe("255.240.0.0");
  });

  test("host bits: parse rejects and suggests, parseLoose and of mask", () => {
    const e = caught(() => Prefix.parse("10.0.0.1/24"));
    expect(e.code).toBe("prefix-host-bits");
    expect(e.message).toBe(`invalid prefix "10.0.0.1/24": host bits are set; did you mean "10.0.0.0/24"?`);
    expect(Prefix.parseLoose("10.0.0.1/24").toString()).toBe("10.0.0.0/24");
    expect(Prefix.parseLoose("fd00::abcd/120").toString()).toBe("fd00::ab00/120");
    expect(Prefix.of(IP.parse("192.168.77.5"), 16).toString()).toBe("192.168.0.0/16");
    expect(caught(() => Prefix.of(IP.parse("10.0.0.0"), 33)).code).toBe("prefix-length");
    expect(caught(() => Prefix.of(IP.parse("10.0.0.0"), -1)).code).toBe("prefix-length");
    expect(caught(() => Prefix.of(IP.parse("10.0.0.0"), 8.5)).code).toBe("prefix-length");
  });

  test("property: parse(toString(p)) round-trips", () => {
    fc.assert(
      fc.property(anyPrefix, (p) => {
        const back = Prefix.parse(p.toString());
        expect(back.equals(p)).toBe(true);
        expect(back.compare(p)).toBe(0);
      }),
      { numRuns: 2000 },
    );
  });

  test("property: Prefix.of masks host bits (and parseLoose agrees)", () => {
    fc.assert(
      fc.property(ipAndLength, ({ ip, len }) => {
        const p = Prefix.of(ip, len);
        const hostBits = (1n << BigInt(ip.bits - len)) - 1n;
        expect(p.length).toBe(len);
        expect(p.ip.value & hostBits).toBe(0n);
        expect(p.ip.value).toBe(ip.value & ~hostBits);
        expect(p.contains(ip)).toBe(true);
        expect(Prefix.of(p.ip, len).equals(p)).toBe(true);
        expect(Prefix.parseLoose(`${ip}/${len}`).equals(p)).toBe(true);
        expect(p.mask().value).toBe(MAX[ip.family] ^ hostBits);
        if (!p.ip.equals(ip)) expect(caught(() => Prefix.parse(`${ip}/${len}`)).code).toBe("prefix-host-bits");
      }),
      { numRuns: 2000 },
    );
  });
});

describe("addresses inside a prefix", () => {
  test("nth / indexOf examples", () => {
    const p = Prefix.parse("10.0.0.0/24");
    expect(p.nth(0).toString()).toBe("10.0.0.0");
    expect(p.nth(1).toString()).toBe("10.0.0.1");
    expect(p.nth(255n).toString()).toBe("10.0.0.255");
    expect(p.indexOf(IP.parse("10.0.0.42"))).toBe(42n);
    expect(caught(() => p.nth(256)).code).toBe("prefix-index");
    expect(caught(() => p.nth(-1)).code).toBe("prefix-index");
    const e = caught(() => p.indexOf(IP.parse("10.0.1.0")));
    expect(e.code).toBe("prefix-not-contained");
    expect(e.message).toBe("10.0.1.0 is not inside 10.0.0.0/24");
    expect(caught(() => p.indexOf(IP.parse("::"))).code).toBe("prefix-not-contained");
  });

  test("property: nth and indexOf are inverse", () => {
    fc.assert(
      fc.property(anyPrefix, fc.bigInt({ min: 0n, max: MAX[6] }), (p, r) => {
        const i = r % p.size;
        const ip = p.nth(i);
        expect(p.contains(ip)).toBe(true);
        expect(p.indexOf(ip)).toBe(i);
        expect(p.nth(p.indexOf(ip)).equals(ip)).toBe(true);
        expect(caught(() => p.nth(p.size)).code).toBe("prefix-index");
      }),
      { numRuns: 2000 },
    );
  });

  test("property: contains(ip) iff first <= ip <= last, same family", () => {
    fc.assert(
      fc.property(clustered, anyIP, fc.boolean(), (p, other, near) => {
        const ip = near && other.family === p.family ? IP.fromBigInt(p.family, (p.ip.value + other.value) % (MAX[p.family] + 1n)) : other;
        const inRange = ip.family === p.family && p.first().value <= ip.value && ip.value <= p.last().value;
        expect(p.contains(ip)).toBe(inRange);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("relations between prefixes", () => {
  test("examples", () => {
    const p8 = Prefix.parse("10.0.0.0/8");
    const p24 = Prefix.parse("10.1.2.0/24");
    const other = Prefix.parse("192.168.0.0/16");
    expect(p8.containsPrefix(p24)).toBe(true);
    expect(p24.containsPrefix(p8)).toBe(false);
    expect(p8.containsPrefix(p8)).toBe(true);
    expect(p8.overlaps(p24)).toBe(true);
    expect(p24.overlaps(p8)).toBe(true);
    expect(p8.overlaps(other)).toBe(false);
    expect(Prefix.parse("0.0.0.0/0").overlaps(Prefix.parse("::/0"))).toBe(false);
    expect(Prefix.parse("::ffff:0.0.0.0/96").overlaps(Prefix.parse("0.0.0.0/0"))).toBe(false);
  });

  test("property: overlaps is symmetric and equals containment either way (and interval intersection)", () => {
    fc.assert(
      fc.property(fc.oneof(clustered, anyPrefix), fc.oneof(clustered, anyPrefix), (a, b) => {
        expect(a.overlaps(b)).toBe(b.overlaps(a));
        expect(a.overlaps(b)).toBe(a.containsPrefix(b) || b.containsPrefix(a));
        const lo = a.first().compare(b.first()) > 0 ? a.first() : b.first();
        const hi = a.last().compare(b.last()) < 0 ? a.last() : b.last();
        expect(a.overlaps(b)).toBe(a.family === b.family && lo.value <= hi.value);
      }),
      { numRuns: 3000 },
    );
  });

  test("property: containsPrefix is the interval inclusion", () => {
    fc.assert(
      fc.property(clustered, clustered, (a, b) => {
        const inside = a.family === b.family && a.first().value <= b.first().value && b.last().value <= a.last().value;
        expect(a.containsPrefix(b)).toBe(inside);
      }),
      { numRuns: 2000 },
    );
  });

  test("compare orders by address then length", () => {
    const sorted = ["10.0.0.0/24", "::/0", "10.0.0.0/8", "9.0.0.0/8", "fd00::/8"]
      .map((s) => Prefix.parse(s))
      .sort((a, b) => a.compare(b))
      .map(String);
    expect(sorted).toEqual(["9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/24", "::/0", "fd00::/8"]);
  });
});

describe("subnets and next", () => {
  test("examples", () => {
    const p = Prefix.parse("10.0.0.0/24");
    expect([...p.subnets(26)].map(String)).toEqual(["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26", "10.0.0.192/26"]);
    expect([...p.subnets(24)].map(String)).toEqual(["10.0.0.0/24"]);
    expect(caught(() => p.subnets(23)).code).toBe("prefix-length");
    expect(caught(() => p.subnets(33)).code).toBe("prefix-length");
    // lazy: a /0 split into /64s is fine as long as we only take a few
    const it = Prefix.parse("fd00::/48").subnets(64);
    expect(it.next().value?.toString()).toBe("fd00::/64");
    expect(it.next().value?.toString()).toBe("fd00:0:0:1::/64");

    expect(p.next()?.toString()).toBe("10.0.1.0/24");
    expect(Prefix.parse("10.255.255.0/24").next()?.toString()).toBe("11.0.0.0/24");
    expect(Prefix.parse("255.255.255.0/24").next()).toBeUndefined();
    expect(Prefix.parse("0.0.0.0/0").next()).toBeUndefined();
    expect(Prefix.parse("ffff::/16").next()).toBeUndefined();
    expect(Prefix.parse("255.255.255.255/32").next()).toBeUndefined();
  });

  test("property: subnets partition the parent, in order, contiguously", () => {
    fc.assert(
      fc.property(anyPrefix, fc.nat(6), (p, extra) => {
        const newLength = Math.min(p.ip.bits, p.length + extra);
        const subs = [...p.subnets(newLength)];
        expect(BigInt(subs.length)).toBe(1n << BigInt(newLength - p.length));
        expect(subs[0]?.first().equals(p.first())).toBe(true);
        expect(subs.at(-1)?.last().equals(p.last())).toBe(true);
        let total = 0n;
        subs.forEach((s, i) => {
          expect(s.length).toBe(newLength);
          expect(p.containsPrefix(s)).toBe(true);
          total += s.size;
          const following = subs[i + 1];
          if (following !== undefined) {
            expect(following.first().value).toBe(s.last().value + 1n);
            expect(s.next()?.equals(following)).toBe(true);
            expect(s.overlaps(following)).toBe(false);
          }
        });
        expect(total).toBe(p.size);
      }),
      { numRuns: 500 },
    );
  });

  test("property: next starts right after last", () => {
    fc.assert(
      fc.property(anyPrefix, (p) => {
        const n = p.next();
        if (p.last().value === MAX[p.family]) {
          expect(n).toBeUndefined();
        } else {
          expect(n?.first().value).toBe(p.last().value + 1n);
          expect(n?.length).toBe(p.length);
        }
      }),
    );
  });
});

describe("IPNet", () => {
  test("examples", () => {
    const n = IPNet.parse("10.0.0.2/24");
    expect(n.ip.toString()).toBe("10.0.0.2");
    expect(n.prefix.toString()).toBe("10.0.0.0/24");
    expect(n.length).toBe(24);
    expect(n.family).toBe(4);
    expect(n.toString()).toBe("10.0.0.2/24");
    expect(n.toJSON()).toBe("10.0.0.2/24");
    expect(IPNet.parse("FD00::0002/64").toString()).toBe("fd00::2/64");
    expect(IPNet.of(IP.parse("10.0.0.2"), 24).equals(n)).toBe(true);
    expect(IPNet.parse("10.0.0.2/25").equals(n)).toBe(false);
    expect(IPNet.parse("10.0.0.3/24").equals(n)).toBe(false);
    expect(caught(() => IPNet.of(IP.parse("10.0.0.2"), 33)).code).toBe("prefix-length");
    expect(caught(() => IPNet.parse("10.0.0.2/64")).message).toBe(`invalid interface address "10.0.0.2/64": length 64 exceeds 32 for IPv4`);
  });

  test("property: round-trips and its prefix contains its address", () => {
    fc.assert(
      fc.property(ipAndLength, ({ ip, len }) => {
        const n = IPNet.of(ip, len);
        const back = IPNet.parse(n.toString());
        expect(back.equals(n)).toBe(true);
        expect(back.ip.equals(ip)).toBe(true);
        expect(n.prefix.contains(n.ip)).toBe(true);
        expect(n.prefix.equals(Prefix.of(ip, len))).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});
