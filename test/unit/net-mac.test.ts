/** src/net/mac.ts */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { BerthError } from "../../src/errors.ts";
import { IP } from "../../src/net/ip.ts";
import { MAC } from "../../src/net/mac.ts";

function caught(f: () => unknown): BerthError {
  try {
    f();
  } catch (e) {
    if (e instanceof BerthError) return e;
    throw e;
  }
  throw new Error("expected a BerthError, but nothing was thrown");
}

const bytes6 = fc.uint8Array({ minLength: 6, maxLength: 6 });

test("parse accepts ':' and '-' in any case and prints lowercase with ':'", () => {
  for (const s of ["02:42:ac:11:00:02", "02-42-AC-11-00-02", "02:42:Ac:11:00:02"]) {
    const m = MAC.parse(s);
    expect(m.toString()).toBe("02:42:ac:11:00:02");
    expect(m.toJSON()).toBe("02:42:ac:11:00:02");
    expect([...m.bytes]).toEqual([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
  }
  expect(MAC.tryParse("nope")).toBeUndefined();
  expect(MAC.tryParse("ff:ff:ff:ff:ff:ff")?.toString()).toBe("ff:ff:ff:ff:ff:ff");
  expect(caught(() => MAC.parse(" 02:42:ac:11:00:02")).message).toContain("whitespace");
  expect(caught(() => MAC.parse("")).message).toContain("empty");
  expect(caught(() => MAC.fromBytes(new Uint8Array(5))).code).toBe("mac-invalid");
});

test("property: parse(toString(m)) round-trips, also in '-' and uppercase form", () => {
  fc.assert(
    fc.property(bytes6, (b) => {
      const m = MAC.fromBytes(b);
      expect(MAC.parse(m.toString()).equals(m)).toBe(true);
      expect(MAC.parse(m.toString().replaceAll(":", "-").toUpperCase()).equals(m)).toBe(true);
      expect([...m.bytes]).toEqual([...b]);
      expect(m.isUnicast()).toBe(((b[0] ?? 0) & 1) === 0);
      expect(m.isLocallyAdministered()).toBe(((b[0] ?? 0) & 2) === 2);
    }),
    { numRuns: 1000 },
  );
});

test("random is locally administered unicast and varies", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const m = MAC.random();
    expect(m.isUnicast()).toBe(true);
    expect(m.isLocallyAdministered()).toBe(true);
    expect(m.bytes.length).toBe(6);
    seen.add(m.toString());
  }
  expect(seen.size).toBe(200);
});

test("fromIPv4 is Docker's 02:42:<ip>", () => {
  const m = MAC.fromIPv4(IP.parse("172.17.0.2"));
  expect(m.toString()).toBe("02:42:ac:11:00:02");
  expect(m.isUnicast()).toBe(true);
  expect(m.isLocallyAdministered()).toBe(true);
  expect(MAC.fromIPv4(IP.parse("255.255.255.255")).toString()).toBe("02:42:ff:ff:ff:ff");
  const e = caught(() => MAC.fromIPv4(IP.parse("fd00::1")));
  expect(e.kind).toBe("invalid");
  expect(e.message).toContain("fd00::1");
});

test("equals and immutability", () => {
  const a = MAC.parse("02:42:ac:11:00:02");
  expect(a.equals(MAC.parse("02-42-ac-11-00-02"))).toBe(true);
  expect(a.equals(MAC.parse("02:42:ac:11:00:03"))).toBe(false);
  const src = new Uint8Array([2, 0, 0, 0, 0, 1]);
  const b = MAC.fromBytes(src);
  src[5] = 9;
  expect(b.toString()).toBe("02:00:00:00:00:01");
});
