/** src/net/ip.ts: parsing, RFC 5952 formatting, arithmetic, classification. */
import { describe, expect, test } from "bun:test";
import { isIPv4, isIPv6 } from "node:net";
import fc from "fast-check";
import { BerthError } from "../../src/errors.ts";
import { IP } from "../../src/net/ip.ts";

const MAX4 = (1n << 32n) - 1n;
const MAX6 = (1n << 128n) - 1n;

function caught(f: () => unknown): BerthError {
  try {
    f();
  } catch (e) {
    if (e instanceof BerthError) return e;
    throw e;
  }
  throw new Error("expected a BerthError, but nothing was thrown");
}

const word = fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }));
const words8 = fc.array(word, { minLength: 8, maxLength: 8 });
const toValue = (ws: readonly number[]): bigint => ws.reduce((v, w) => (v << 16n) | BigInt(w), 0n);
const v4 = fc.bigInt({ min: 0n, max: MAX4 }).map((v) => IP.fromBigInt(4, v));
const v6 = fc.oneof(
  words8.map((ws) => IP.fromBigInt(6, toValue(ws))),
  fc.bigInt({ min: 0n, max: MAX6 }).map((v) => IP.fromBigInt(6, v)),
  v4.map((ip) => ip.toIPv6Mapped()),
);
const anyIP = fc.oneof(v4, v6);

/** A random (usually non-canonical) RFC 4291 spelling of the 8 words. */
const v6Text = words8.chain((ws) =>
  fc
    .record({
      upper: fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
      pad: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }),
      dotted: fc.boolean(),
      cut: fc.nat(),
    })
    .map(({ upper, pad, dotted, cut }) => {
      const groups = ws.map((w, i) => {
        const h = w.toString(16).padStart(Math.min(4, w.toString(16).length + (pad[i] ?? 0)), "0");
        return upper[i] ? h.toUpperCase() : h;
      });
      let tailText = "";
      let n = 8;
      if (dotted) {
        const lo = ((ws[6] ?? 0) << 16) + (ws[7] ?? 0);
        tailText = `${lo >>> 24}.${(lo >>> 16) & 255}.${(lo >>> 8) & 255}.${lo & 255}`;
        n = 6;
      }
      // compress one run of zero groups (any length >= 1), chosen by `cut`
      const runs: [number, number][] = [];
      for (let i = 0; i < n; i++) {
        if (ws[i] !== 0) continue;
        for (let j = i; j < n && ws[j] === 0; j++) runs.push([i, j + 1]);
      }
      const run = runs.length > 0 && cut % 3 !== 0 ? runs[cut % runs.length] : undefined;
      const join = (a: string[]): string => a.join(":");
      const all = dotted ? [...groups.slice(0, n), tailText] : groups;
      const text = run
        ? `${join(groups.slice(0, run[0]))}::${join(all.slice(run[1]))}`
        : join(all);
      return { text, value: toValue(ws) };
    }),
);

describe("IP.parse / toString", () => {
  test("IPv4 examples", () => {
    expect(IP.parse("0.0.0.0").value).toBe(0n);
    expect(IP.parse("255.255.255.255").value).toBe(MAX4);
    expect(IP.parse("10.1.2.3").value).toBe(0x0a010203n);
    expect(IP.parse("10.1.2.3").family).toBe(4);
    expect(IP.parse("10.1.2.3").bits).toBe(32);
    expect(IP.parse("192.168.0.10").toString()).toBe("192.168.0.10");
  });

  test("RFC 5952 canonical IPv6 text", () => {
    const table: [string, string][] = [
      ["2001:db8::1", "2001:db8::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"],
      ["::", "::"],
      ["0:0:0:0:0:0:0:0", "::"],
      ["::1", "::1"],
      ["0:0:0:0:0:0:0:1", "::1"],
      ["1::", "1::"],
      ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
      ["::FFFF:c000:0201", "::ffff:192.0.2.1"],
      ["0:0:0:0:0:ffff:192.0.2.1", "::ffff:192.0.2.1"],
      ["2001:DB8::ABCD", "2001:db8::abcd"], // 4.3 lowercase
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // 4.2.2 a single 0 is not compressed
      ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // 4.2.3 longest run
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // 4.2.3 first of equal runs
      ["2001:db8::0:1", "2001:db8::1"],
      ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
      ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
      ["fe80::1:2", "fe80::1:2"],
      ["::1.2.3.4", "::102:304"], // IPv4-compatible (deprecated) is not printed dotted
      ["::ffff:0:1.2.3.4", "::ffff:0:102:304"],
      ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
      ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
    ];
    for (const [input, want] of table) {
      const ip = IP.parse(input);
      expect(ip.family).toBe(6);
      expect(ip.toString()).toBe(want);
      expect(ip.toJSON()).toBe(want);
    }
  });

  test("property: parse(toString(x)) round-trips", () => {
    fc.assert(
      fc.property(anyIP, (ip) => {
        const back = IP.parse(ip.toString());
        expect(back.equals(ip)).toBe(true);
        expect(back.family).toBe(ip.family);
      }),
      { numRuns: 2000 },
    );
  });

  test("property: every RFC 4291 spelling parses to the same value and prints canonically", () => {
    fc.assert(
      fc.property(v6Text, ({ text, value }) => {
        const ip = IP.parse(text);
        expect(ip.value).toBe(value);
        expect(IP.parse(ip.toString()).value).toBe(value);
      }),
      { numRuns: 3000 },
    );
  });

  test("property: canonical IPv6 text agrees with the WHATWG URL serialiser (which is RFC 5952 minus dotted quads)", () => {
    fc.assert(
      fc.property(v6, (ip) => {
        fc.pre(!ip.isIPv4Mapped());
        expect(new URL(`http://[${ip}]/`).hostname).toBe(`[${ip}]`);
      }),
      { numRuns: 2000 },
    );
  });

  test("property: IPv4 dotted text matches the octets", () => {
    fc.assert(
      fc.property(fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)), ([a, b, c, d]) => {
        const ip = IP.v4(a, b, c, d);
        expect(ip.toString()).toBe(`${a}.${b}.${c}.${d}`);
        expect(IP.parse(`${a}.${b}.${c}.${d}`).equals(ip)).toBe(true);
        expect([...ip.toBytes()]).toEqual([a, b, c, d]);
      }),
    );
  });

  test("property: accepts exactly what node:net accepts (strict IPv4, RFC 4291 IPv6 without zones)", () => {
    const chars = fc.constantFrom("0", "1", "2", "5", "9", "a", "F", "g", ":", ":", ":", ".", ".", "%", "[", " ");
    const noisy = fc.string({ unit: chars, maxLength: 40 });
    const nearMiss = fc.oneof(v6Text.map((t) => t.text), anyIP.map(String)).chain((t) =>
      fc.tuple(fc.nat(t.length), fc.nat(t.length), chars).map(([i, j, c]) => {
        const k = Math.min(i, j);
        return [t, t.slice(0, k) + t.slice(Math.max(i, j)), t.slice(0, k) + c + t.slice(k)][i % 3] ?? t;
      }),
    );
    fc.assert(
      fc.property(fc.oneof(noisy, nearMiss), (s) => {
        const ip = IP.tryParse(s);
        expect(ip?.family === 4).toBe(isIPv4(s));
        expect(ip?.family === 6).toBe(isIPv6(s) && !s.includes("%"));
      }),
      { numRuns: 20000 },
    );
  });

  test("tryParse returns undefined instead of throwing", () => {
    expect(IP.tryParse("1.2.3.4")?.toString()).toBe("1.2.3.4");
    expect(IP.tryParse("1.2.3.400")).toBeUndefined();
    expect(IP.tryParse("")).toBeUndefined();
  });
});

describe("construction", () => {
  test("fromBigInt is range checked", () => {
    expect(IP.fromBigInt(4, MAX4).toString()).toBe("255.255.255.255");
    expect(IP.fromBigInt(6, MAX6).toString()).toBe("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    for (const [f, v] of [
      [4, MAX4 + 1n],
      [4, -1n],
      [6, MAX6 + 1n],
      [6, -1n],
    ] as const) {
      const e = caught(() => IP.fromBigInt(f, v));
      expect(e.kind).toBe("invalid");
      expect(e.code).toBe("ip-out-of-range");
    }
    expect(caught(() => IP.fromBigInt(5 as 4, 0n)).code).toBe("ip-family");
  });

  test("v4 checks octets", () => {
    expect(IP.v4(172, 17, 0, 1).toString()).toBe("172.17.0.1");
    expect(caught(() => IP.v4(256, 0, 0, 0)).message).toContain("256");
    expect(caught(() => IP.v4(1.5, 0, 0, 0)).kind).toBe("invalid");
    expect(caught(() => IP.v4(-1, 0, 0, 0)).kind).toBe("invalid");
  });

  test("property: bytes round-trip", () => {
    fc.assert(
      fc.property(anyIP, (ip) => {
        const b = ip.toBytes();
        expect(b.length).toBe(ip.family === 4 ? 4 : 16);
        expect(IP.fromBytes(b).equals(ip)).toBe(true);
      }),
    );
    expect([...IP.parse("2001:db8::1").toBytes()]).toEqual([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(caught(() => IP.fromBytes(new Uint8Array(5))).code).toBe("ip-bytes");
  });
});

describe("ordering and arithmetic", () => {
  test("compare: IPv4 before IPv6, then numeric", () => {
    const sorted = ["::", "10.0.0.2", "::1", "10.0.0.10", "1.2.3.4", "::ffff:0.0.0.0"]
      .map((s) => IP.parse(s))
      .sort((a, b) => a.compare(b))
      .map(String);
    expect(sorted).toEqual(["1.2.3.4", "10.0.0.2", "10.0.0.10", "::", "::1", "::ffff:0.0.0.0"]);
    expect(IP.parse("1.1.1.1").compare(IP.parse("1.1.1.1"))).toBe(0);
  });

  test("property: compare is antisymmetric and consistent with equals", () => {
    fc.assert(
      fc.property(anyIP, anyIP, (a, b) => {
        expect([-1, 0, 1]).toContain(a.compare(b));
        expect(a.compare(b) + b.compare(a)).toBe(0);
        expect(a.compare(b) === 0).toBe(a.equals(b));
      }),
    );
  });

  test("add and overflow", () => {
    expect(IP.parse("10.0.0.255").add(1).toString()).toBe("10.0.1.0");
    expect(IP.parse("10.0.1.0").add(-1n).toString()).toBe("10.0.0.255");
    expect(IP.parse("::ffff").add(1).toString()).toBe("::1:0");
    expect(IP.parse("255.255.255.254").add(1).toString()).toBe("255.255.255.255");
    for (const [s, n] of [
      ["255.255.255.255", 1],
      ["0.0.0.0", -1],
      ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1n],
      ["::", -1n],
    ] as const) {
      const e = caught(() => IP.parse(s).add(n));
      expect(e.kind).toBe("invalid");
      expect(e.code).toBe("ip-overflow");
      expect(e.message).toContain(s);
    }
    expect(caught(() => IP.parse("1.2.3.4").add(0.5)).kind).toBe("invalid");
  });

  test("property: add(n).add(-n) is the identity when in range", () => {
    fc.assert(
      fc.property(anyIP, fc.bigInt({ min: -(1n << 40n), max: 1n << 40n }), (ip, n) => {
        const max = ip.family === 4 ? MAX4 : MAX6;
        const v = ip.value + n;
        if (v < 0n || v > max) {
          expect(caught(() => ip.add(n)).code).toBe("ip-overflow");
        } else {
          expect(ip.add(n).value).toBe(v);
          expect(ip.add(n).add(-n).equals(ip)).toBe(true);
        }
      }),
    );
  });
});

describe("classification", () => {
  const is = (s: string) => {
    const ip = IP.parse(s);
    return {
      loopback: ip.isLoopback(),
      unspecified: ip.isUnspecified(),
      multicast: ip.isMulticast(),
      linkLocal: ip.isLinkLocal(),
    };
  };
  const none = { loopback: false, unspecified: false, multicast: false, linkLocal: false };

  test("examples", () => {
    expect(is("127.0.0.1")).toEqual({ ...none, loopback: true });
    expect(is("127.255.255.254")).toEqual({ ...none, loopback: true });
    expect(is("128.0.0.1")).toEqual(none);
    expect(is("::1")).toEqual({ ...none, loopback: true });
    expect(is("::2")).toEqual(none);
    expect(is("::ffff:127.0.0.1")).toEqual({ ...none, loopback: true });
    expect(is("0.0.0.0")).toEqual({ ...none, unspecified: true });
    expect(is("::")).toEqual({ ...none, unspecified: true });
    expect(is("224.0.0.1")).toEqual({ ...none, multicast: true });
    expect(is("239.255.255.255")).toEqual({ ...none, multicast: true });
    expect(is("240.0.0.0")).toEqual(none);
    expect(is("ff02::1")).toEqual({ ...none, multicast: true });
    expect(is("fe00::1")).toEqual(none);
    expect(is("169.254.1.1")).toEqual({ ...none, linkLocal: true });
    expect(is("169.255.0.1")).toEqual(none);
    expect(is("fe80::1")).toEqual({ ...none, linkLocal: true });
    expect(is("febf:ffff::1")).toEqual({ ...none, linkLocal: true });
    expect(is("fec0::1")).toEqual(none);
    expect(is("10.0.0.1")).toEqual(none);
  });

  test("IPv4-mapped helpers", () => {
    const m = IP.parse("::ffff:10.0.0.1");
    expect(m.isIPv4Mapped()).toBe(true);
    expect(m.unmap().toString()).toBe("10.0.0.1");
    expect(IP.parse("10.0.0.1").toIPv6Mapped().equals(m)).toBe(true);
    expect(IP.parse("::1").unmap().toString()).toBe("::1");
  });
});
