/** src/net/names.ts: name validators, ports and port mappings. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { BerthError } from "../../src/errors.ts";
import { IP } from "../../src/net/ip.ts";
import {
  formatPortMapping,
  type PortMapping,
  parsePort,
  parsePortMapping,
  parsePortMappings,
  validateContainerId,
  validateDnsLabel,
  validateIfName,
  validateNetworkName,
} from "../../src/net/names.ts";

function caught(f: () => unknown): BerthError {
  try {
    f();
  } catch (e) {
    if (e instanceof BerthError) return e;
    throw e;
  }
  throw new Error("expected a BerthError, but nothing was thrown");
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".split("");
const ident = fc
  .tuple(fc.constantFrom(...alnum), fc.string({ unit: fc.constantFrom(...alnum, "_", ".", "-"), maxLength: 127 }))
  .map(([a, b]) => a + b);

describe("validateIfName", () => {
  test("accepts Linux names", () => {
    for (const s of ["eth0", "br-0123456789ab", "veth1234567890a", "a", "...", "lo", "wg_0", "é"]) {
      expect(validateIfName(s)).toBe(s);
    }
  });
  test("rejects", () => {
    expect(caught(() => validateIfName("abcdefghijklmnop")).message).toBe(
      `interface name "abcdefghijklmnop" is 16 characters; Linux allows at most 15`,
    );
    // 8 characters but 16 bytes in UTF-8
    expect(caught(() => validateIfName("éééééééé")).message).toContain("16 bytes in UTF-8");
    for (const s of ["", ".", "..", "a/b", "a:b", "a b", "a\tb", "a\nb", "a\0b"]) {
      const e = caught(() => validateIfName(s, "bridge"));
      expect(e.kind).toBe("invalid");
      expect(e.code).toBe("ifname-invalid");
      expect(e.field).toBe("bridge");
    }
    expect(caught(() => validateIfName("a\0b")).message).toContain("U+0000");
  });
  test("property: 1-15 safe characters always pass", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...alnum, "-", "_", "."), minLength: 1, maxLength: 15 }), (s) => {
        fc.pre(s !== "." && s !== "..");
        expect(validateIfName(s)).toBe(s);
      }),
    );
  });
});

describe("container IDs, network names, DNS labels", () => {
  test("examples", () => {
    const id = "3f2b1c0d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
    expect(validateContainerId(id)).toBe(id);
    expect(validateContainerId("my_container.1-a")).toBe("my_container.1-a");
    expect(validateContainerId("a".repeat(128))).toHaveLength(128);
    expect(caught(() => validateContainerId("a/b")).message).toBe(
      `container ID "a/b" contains "/" at position 2; only letters, digits, "_", "." and "-" are allowed`,
    );
    expect(validateNetworkName("bridge")).toBe("bridge");
    expect(validateNetworkName("my-net_2.0")).toBe("my-net_2.0");
    expect(caught(() => validateNetworkName("_net")).code).toBe("network-name-invalid");
    expect(caught(() => validateNetworkName("ñet")).message).toContain(`"ñ"`);
    expect(validateDnsLabel("web-1")).toBe("web-1");
    expect(validateDnsLabel("a".repeat(63))).toHaveLength(63);
    expect(validateDnsLabel("1abc")).toBe("1abc");
    expect(caught(() => validateDnsLabel("a.b")).code).toBe("dns-label-invalid");
    expect(caught(() => validateDnsLabel("", "hostname")).field).toBe("hostname");
  });

  test("property: container IDs and network names follow ^[A-Za-z0-9][A-Za-z0-9_.-]*$ up to 128", () => {
    const rule = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
    const anyText = fc.string({ unit: fc.constantFrom("a", "Z", "0", "_", ".", "-", "/", " ", ":", "é"), maxLength: 20 });
    fc.assert(
      fc.property(fc.oneof(ident, anyText), (s) => {
        const ok = rule.test(s) && s.length <= 128;
        for (const f of [validateContainerId, validateNetworkName]) {
          if (ok) expect(f(s)).toBe(s);
          else expect(caught(() => f(s)).kind).toBe("invalid");
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("parsePort", () => {
  test("examples", () => {
    expect(parsePort("80")).toBe(80);
    expect(parsePort("65535")).toBe(65535);
    expect(parsePort("1")).toBe(1);
    expect(parsePort(443)).toBe(443);
    expect(parsePort("0080")).toBe(80);
    for (const bad of [0, 65536, -1, 1.5, Number.NaN]) {
      const e = caught(() => parsePort(bad, "port"));
      expect(e.code).toBe("port-invalid");
      expect(e.field).toBe("port");
      expect(e.message).toContain(String(bad));
    }
    expect(caught(() => parsePort("99999999999999999999")).message).toContain("out of range");
  });
  test("property: every port round-trips", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 65535 }), (n) => {
        expect(parsePort(String(n))).toBe(n);
        expect(parsePort(n)).toBe(n);
      }),
    );
  });
});

describe("port mappings", () => {
  const one = (s: string): PortMapping => {
    const all = parsePortMappings(s);
    expect(all).toHaveLength(1);
    return all[0] as PortMapping;
  };

  test("Docker -p forms", () => {
    expect(one("8080:80")).toEqual({ hostIP: undefined, hostPort: 8080, containerPort: 80, protocol: "tcp" });
    expect(one("8080:80/udp")).toEqual({ hostIP: undefined, hostPort: 8080, containerPort: 80, protocol: "udp" });
    expect(one("8080:80/SCTP").protocol).toBe("sctp");
    const local = one("127.0.0.1:8080:80/tcp");
    expect(local.hostIP?.equals(IP.parse("127.0.0.1"))).toBe(true);
    expect(local.hostPort).toBe(8080);
    expect(one("[::1]:8080:80").hostIP?.toString()).toBe("::1");
    expect(one("[2001:DB8::1]:53:53/udp").hostIP?.toString()).toBe("2001:db8::1");
    expect(one("::1:8080:80").hostIP?.toString()).toBe("::1"); // Docker accepts unbracketed IPv6 too
    expect(one("0.0.0.0:1:1").hostIP?.isUnspecified()).toBe(true);
    expect(parsePortMapping("9000:9000").hostPort).toBe(9000);
  });

  test("ranges expand to one mapping per port", () => {
    const m = parsePortMappings("127.0.0.1:8000-8002:9000-9002/udp");
    expect(m.map(formatPortMapping)).toEqual([
      "127.0.0.1:8000->9000/udp",
      "127.0.0.1:8001->9001/udp",
      "127.0.0.1:8002->9002/udp",
    ]);
    expect(parsePortMappings("8080-8080:80-80")).toHaveLength(1);
    const e = caught(() => parsePortMappings("1-3:1-2"));
    expect(e.message).toBe(
      `invalid port mapping "1-3:1-2": host port range "1-3" has 3 ports but container port range "1-2" has 2; they must be the same length`,
    );
    expect(caught(() => parsePortMappings("80")).message).toContain("a host port is required");
  });

  test("formatPortMapping is docker ps style", () => {
    expect(formatPortMapping({ hostIP: undefined, hostPort: 8080, containerPort: 80, protocol: "tcp" })).toBe("0.0.0.0:8080->80/tcp");
    expect(formatPortMapping({ hostIP: IP.parse("127.0.0.1"), hostPort: 8080, containerPort: 80, protocol: "tcp" })).toBe(
      "127.0.0.1:8080->80/tcp",
    );
    expect(formatPortMapping({ hostIP: IP.parse("::"), hostPort: 53, containerPort: 53, protocol: "udp" })).toBe("[::]:53->53/udp");
  });

  test("property: ranges expand in order with equal offsets", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60000 }),
        fc.integer({ min: 1, max: 60000 }),
        fc.nat(50),
        fc.constantFrom("", "/tcp", "/udp", "/sctp"),
        (h, c, len, proto) => {
          const text = `${h}-${h + len}:${c}-${c + len}${proto}`;
          const ms = parsePortMappings(text);
          expect(ms).toHaveLength(len + 1);
          ms.forEach((m, i) => {
            expect(m.hostPort).toBe(h + i);
            expect(m.containerPort).toBe(c + i);
            expect(m.protocol).toBe(proto === "" ? "tcp" : (proto.slice(1) as PortMapping["protocol"]));
            expect(m.hostIP).toBeUndefined();
          });
        },
      ),
    );
  });

  test("property: format then re-parse (docker ps -> -p syntax) round-trips", () => {
    const hostIP = fc.oneof(
      fc.constant(undefined),
      fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }).map((v) => IP.fromBigInt(4, v)),
      fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map((v) => IP.fromBigInt(6, v)),
    );
    fc.assert(
      fc.property(
        hostIP,
        fc.integer({ min: 1, max: 65535 }),
        fc.integer({ min: 1, max: 65535 }),
        fc.constantFrom("tcp" as const, "udp" as const, "sctp" as const),
        (ip, hostPort, containerPort, protocol) => {
          const m: PortMapping = { hostIP: ip, hostPort, containerPort, protocol };
          const text = formatPortMapping(m).replace("->", ":");
          const back = parsePortMapping(text);
          expect(back.hostPort).toBe(hostPort);
          expect(back.containerPort).toBe(containerPort);
          expect(back.protocol).toBe(protocol);
          expect(back.hostIP?.toString() ?? "0.0.0.0").toBe(ip?.toString() ?? "0.0.0.0");
        },
      ),
      { numRuns: 1000 },
    );
  });
});
