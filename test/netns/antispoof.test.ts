/**
 * Anti-spoofing on bridge networks (issue 9), IPv4 and IPv6, with real packets:
 * container A gives itself another container's address (or a foreign one, or
 * another container's MAC) and sends ping, UDP and gratuitous ARP with it; counters
 * in the receiving container's own nftables prove that nothing of it arrives, while
 * the same traffic from A's real address and MAC does. Berth's `bridge berth` table
 * holds exactly one (port . MAC . address) element per container address.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { assertRootUntouched, nftJson, reachable } from "../harness/sandbox.ts";

assertRootUntouched();

function sh(...argv: string[]): { code: number; out: string; err: string } {
  return shIn("", ...argv);
}
function shIn(stdin: string, ...argv: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(argv, { stdin: new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}
function must(...argv: string[]): string {
  const r = sh(...argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.err}`);
  return r.out;
}

interface Ctr {
  ns: string;
  v4: string;
  v6: string;
  mac: string;
}

describe("anti-spoofing on a dual-stack bridge network", () => {
  let b: TestBerth;
  const c: Record<"a" | "b" | "c", Ctr> = {} as Record<"a" | "b" | "c", Ctr>;
  const FOREIGN4 = "10.99.99.99";
  const FOREIGN6 = "fd00:99::99";

  /** Packets (by comment) counted on input in the receiver's own namespace. */
  function probe(ns: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const o of nftJson(ns, "list", "ruleset").nftables) {
      const r = o.rule as { comment?: string; expr: { counter?: { packets: number } }[] } | undefined;
      if (r?.comment) out[r.comment] = r.expr.find((e) => e.counter)?.counter?.packets ?? 0;
    }
    return out;
  }
  const berthDrops = (): number => {
    const t = nftJson(b.sb.host, "list", "table", "bridge", "berth").nftables;
    return t.reduce((n, o) => n + ((o.rule as { expr: { counter?: { packets: number } }[] } | undefined)?.expr.find((e) => e.counter)?.counter?.packets ?? 0), 0);
  };
  const inA = (...argv: string[]) => sh("ip", "netns", "exec", c.a.ns, ...argv);
  /** Elements of a set of Berth's anti-spoofing table (bridge family), as compact JSON. */
  const bridgeElems = (name: string): string[] => {
    for (const o of nftJson(b.sb.host, "list", "set", "bridge", "berth", name).nftables) {
      const st = o.set as { name: string; elem?: unknown[] } | undefined;
      if (st?.name === name) return (st.elem ?? []).map((e) => JSON.stringify(e));
    }
    throw new Error(`no set ${name}`);
  };
  const ping = (src: string, dst: string) => inA("ping", dst.includes(":") ? "-6" : "-4", "-c", "2", "-i", "0.2", "-W", "1", "-I", src, dst);
  const udp = (src: string, dst: string) =>
    shIn("spoof?\n", "ip", "netns", "exec", c.a.ns, "socat", "-u", "STDIN", dst.includes(":") ? `UDP6-SENDTO:[${dst}]:9999,bind=[${src}]` : `UDP4-SENDTO:${dst}:9999,bind=${src}`);

  beforeAll(async () => {
    b = await createTestBerth("as");
    await b.ctl.createNetwork({ name: "as", enableIPv6: true, ipam: { config: [{ subnet: "10.140.0.0/24" }, { subnet: "fd00:140::/64" }] } });
    for (const k of ["a", "b", "c"] as const) {
      const ns = b.containerNs(k);
      const ep = await b.ctl.connect({ network: "as", containerId: k, netns: ns });
      c[k] = {
        ns,
        v4: ep.addresses.find((x) => x.ip.family === 4)!.ip.toString(),
        v6: ep.addresses.find((x) => x.ip.family === 6)!.ip.toString(),
        mac: ep.mac.toString(),
      };
    }
    // the receiver counts what reaches it, by source
    const { a, b: bb } = c;
    const rules = `table inet probe {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr ${a.v4} counter comment "v4-a"
    ip saddr ${bb.v4} counter comment "v4-b"
    ip saddr ${FOREIGN4} counter comment "v4-foreign"
    ip6 saddr ${a.v6} counter comment "v6-a"
    ip6 saddr ${bb.v6} counter comment "v6-b"
    ip6 saddr ${FOREIGN6} counter comment "v6-foreign"
  }
}
table arp probe {
  chain input {
    type filter hook input priority 0; policy accept;
    arp saddr ip ${a.v4} counter comment "arp-a"
    arp saddr ip ${bb.v4} counter comment "arp-b"
  }
}
`;
    const r = Bun.spawnSync(["ip", "netns", "exec", c.c.ns, "nft", "-f", "-"], { stdin: new TextEncoder().encode(rules), stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  }, 60_000);

  afterAll(async () => {
    await b?.close();
  });

  test("Berth's bridge table holds each container's port . MAC . address", () => {
    const src4 = bridgeElems("src4").join("\n");
    const src6 = bridgeElems("src6").join("\n");
    for (const k of ["a", "b", "c"] as const) {
      expect(src4).toContain(c[k].v4);
      expect(src4).toContain(c[k].mac);
      expect(src6).toContain(c[k].v6);
    }
    expect(bridgeElems("src4").length).toBe(3);
    expect(bridgeElems("src6").length).toBe(3);
  });

  test("IPv4: own address arrives; another container's and a foreign one do not (ping, UDP)", () => {
    const before = probe(c.c.ns);
    expect(ping(c.a.v4, c.c.v4).code).toBe(0);
    expect(udp(c.a.v4, c.c.v4).code).toBe(0);
    const drops0 = berthDrops();
    must("ip", "-n", c.a.ns, "addr", "add", `${c.b.v4}/32`, "dev", "eth0");
    must("ip", "-n", c.a.ns, "addr", "add", `${FOREIGN4}/32`, "dev", "eth0");
    try {
      expect(ping(c.b.v4, c.c.v4).code).not.toBe(0);
      udp(c.b.v4, c.c.v4);
      expect(ping(FOREIGN4, c.c.v4).code).not.toBe(0);
      udp(FOREIGN4, c.c.v4);
      // nor towards the host (routed traffic is policed on the same port)
      expect(sh("ip", "netns", "exec", c.a.ns, "ping", "-4", "-c", "1", "-W", "1", "-I", FOREIGN4, "10.140.0.1").code).not.toBe(0);
    } finally {
      sh("ip", "-n", c.a.ns, "addr", "del", `${c.b.v4}/32`, "dev", "eth0");
      sh("ip", "-n", c.a.ns, "addr", "del", `${FOREIGN4}/32`, "dev", "eth0");
    }
    const after = probe(c.c.ns);
    expect(after["v4-a"]! - before["v4-a"]!).toBeGreaterThanOrEqual(3); // 2 echo requests + 1 datagram
    expect(after["v4-b"]).toBe(before["v4-b"]!);
    expect(after["v4-foreign"]).toBe(before["v4-foreign"]!);
    expect(berthDrops()).toBeGreaterThan(drops0);
  });

  test("IPv6: own address arrives; another container's and a foreign one do not (ping, UDP)", () => {
    const before = probe(c.c.ns);
    expect(ping(c.a.v6, c.c.v6).code).toBe(0);
    expect(udp(c.a.v6, c.c.v6).code).toBe(0);
    must("ip", "-n", c.a.ns, "addr", "add", `${c.b.v6}/128`, "dev", "eth0", "nodad");
    must("ip", "-n", c.a.ns, "addr", "add", `${FOREIGN6}/128`, "dev", "eth0", "nodad");
    try {
      expect(ping(c.b.v6, c.c.v6).code).not.toBe(0);
      udp(c.b.v6, c.c.v6);
      expect(ping(FOREIGN6, c.c.v6).code).not.toBe(0);
      udp(FOREIGN6, c.c.v6);
    } finally {
      sh("ip", "-n", c.a.ns, "addr", "del", `${c.b.v6}/128`, "dev", "eth0");
      sh("ip", "-n", c.a.ns, "addr", "del", `${FOREIGN6}/128`, "dev", "eth0");
    }
    const after = probe(c.c.ns);
    expect(after["v6-a"]! - before["v6-a"]!).toBeGreaterThanOrEqual(3);
    expect(after["v6-b"]).toBe(before["v6-b"]!);
    expect(after["v6-foreign"]).toBe(before["v6-foreign"]!);
  });

  test("another container's MAC with the container's own address does not arrive", () => {
    const before = probe(c.c.ns);
    must("ip", "-n", c.a.ns, "link", "set", "eth0", "address", c.b.mac);
    try {
      // c's cached neighbour entry for a is refreshed by a's traffic; either way nothing arrives
      expect(ping(c.a.v4, c.c.v4).code).not.toBe(0);
    } finally {
      must("ip", "-n", c.a.ns, "link", "set", "eth0", "address", c.a.mac);
    }
    expect(probe(c.c.ns)["v4-a"]).toBe(before["v4-a"]!);
  });

  test("gratuitous ARP claiming another container's address does not arrive; one for its own does", () => {
    const before = probe(c.c.ns);
    inA("busybox", "arping", "-U", "-c", "2", "-w", "1", "-I", "eth0", "-s", c.b.v4, c.b.v4);
    inA("busybox", "arping", "-U", "-c", "2", "-w", "1", "-I", "eth0", "-s", c.a.v4, c.a.v4);
    const after = probe(c.c.ns);
    expect(after["arp-a"]! - before["arp-a"]!).toBeGreaterThanOrEqual(1);
    expect(after["arp-b"]).toBe(before["arp-b"]!);
    // and c still reaches b at b's real MAC
    expect(reachable(c.c.ns, c.b.v4)).toBe(true);
  });

  test("normal traffic between all three still flows (v4 and v6)", () => {
    for (const [x, y] of [["a", "b"], ["b", "c"], ["c", "a"]] as const) {
      expect(reachable(c[x].ns, c[y].v4)).toBe(true);
      expect(reachable(c[x].ns, c[y].v6)).toBe(true);
    }
  });

  test("the reconciler restores a deleted anti-spoofing table; a disconnect removes the container's elements", async () => {
    must("ip", "netns", "exec", b.sb.host, "nft", "delete", "table", "bridge", "berth");
    const { Reconciler } = await import("../../src/controller/reconcile.ts");
    const repairs = await new Reconciler(b.ctl).runOnce();
    expect(repairs.map((r) => r.problem).join(";")).toContain("bridge berth is missing");
    expect(bridgeElems("src4").length).toBe(3);
    await b.ctl.disconnect("as", "a", c.a.ns);
    expect(bridgeElems("src4").join("\n")).not.toContain(c.a.v4);
    expect(bridgeElems("src6").length).toBe(2);
    expect(reachable(c.b.ns, c.c.v4)).toBe(true);
  });
});
