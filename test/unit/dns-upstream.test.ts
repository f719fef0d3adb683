// Upstream configuration (flag syntax, the host's resolv.conf, the container's resolv.conf) and
// forwarding with failover, over a fake transport (no network).
import { describe, expect, test } from "bun:test";
import * as dnsPacket from "dns-packet";
import { questionEndOffset } from "../../src/dns/packet.ts";
import { renderResolvConf } from "../../src/dns/resolvconf.ts";
import { dnsNatScript } from "../../src/dns/server.ts";
import { formatUpstream, Forwarder, type OpenUdp, parseResolvConf, parseUpstream, type Upstream } from "../../src/dns/upstream.ts";
import { BerthError } from "../../src/errors.ts";
import { assertRootUntouched } from "../harness/sandbox.ts";
import { query } from "../fixtures/dns-helpers.ts";

assertRootUntouched();

describe("upstream syntax", () => {
  test("IP, IP:port, [v6]:port, bare v6", () => {
    const f = (s: string) => formatUpstream(parseUpstream(s));
    expect(f("192.0.2.1")).toBe("192.0.2.1:53");
    expect(f("192.0.2.1:5353")).toBe("192.0.2.1:5353");
    expect(f("[2001:db8::1]:5353")).toBe("[2001:db8::1]:5353");
    expect(f("[2001:db8::1]")).toBe("[2001:db8::1]:53");
    expect(f("2001:db8::1")).toBe("[2001:db8::1]:53");
  });

  test("bad values are rejected with the field and a hint", () => {
    for (const s of ["", "dns.example", "192.0.2.1:0", "192.0.2.1:70000", "192.0.2.1:x", "[2001:db8::1]:"]) {
      let err: unknown;
      try {
        parseUpstream(s);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BerthError);
      expect((err as BerthError).code).toBe("dns-upstream-invalid");
      expect((err as BerthError).field).toBe("dns-upstream");
      expect((err as BerthError).message).toContain("expected IP, IP:PORT or [IPv6]:PORT");
    }
  });

  test("resolv.conf: nameservers without loopback ones, search, options, comments", () => {
    const r = parseResolvConf(
      ["# comment", "nameserver 127.0.0.53", "nameserver 192.0.2.10 ; trailing", "nameserver ::1", "nameserver fe80::1%eth0", "nameserver 192.0.2.10", "search corp.example lab.example", "options edns0 trust-ad", "nameserver bogus"].join("\n"),
    );
    expect(r.upstreams.map(formatUpstream)).toEqual(["192.0.2.10:53"]);
    expect(r.search).toEqual(["corp.example", "lab.example"]);
    expect(r.options).toEqual(["edns0", "trust-ad"]);
  });

  test("the container's resolv.conf: the resolver only, host search and options, ndots:0 unless set", () => {
    const t = renderResolvConf("127.0.0.11", { search: ["corp.example"], options: ["edns0"] }, "web");
    expect(t).toContain("nameserver 127.0.0.11\n");
    expect(t.match(/^nameserver/gm)?.length).toBe(1);
    expect(t).toContain("search corp.example\n");
    expect(t).toContain("options edns0 ndots:0\n");
    expect(renderResolvConf("127.0.0.11", { search: [], options: ["ndots:2"] })).toContain("options ndots:2\n");
  });
});

describe("container-side redirect", () => {
  test("one atomic nft script: replaces the table, DNATs only the resolver address on the output hook", () => {
    const s = dnsNatScript("127.0.0.11", 53, 40001, 40002);
    expect(s.split("\n").slice(0, 3)).toEqual(["table ip berth_dns", "delete table ip berth_dns", "table ip berth_dns {"]);
    expect(s).toContain("type nat hook output priority -100; policy accept;");
    expect(s).toContain("ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40001");
    expect(s).toContain("ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40002");
    expect(s).not.toContain("prerouting");
  });
});

// ---------- forwarding over a fake transport ----------

type Behaviour = "answer" | "servfail" | "refused" | "silent" | "refuse-connection" | "wrong-question" | "wrong-id";

function fakeNet(behaviour: Record<string, Behaviour>) {
  const seen: string[] = [];
  const open: OpenUdp = async (u, h) => ({
    send(b) {
      const addr = formatUpstream(u);
      seen.push(addr);
      const q = dnsPacket.decode(Buffer.from(b));
      const mode = behaviour[addr] ?? "silent";
      const reply = (rcode: number, name = q.questions?.[0]?.name ?? "", id = q.id ?? 0) =>
        dnsPacket.encode({ type: "response", id, flags: rcode, questions: [{ type: "A", name }], answers: rcode === 0 ? [{ type: "A", name, data: u.ip.toString() }] : [] });
      queueMicrotask(() => {
        if (mode === "answer") h.data(reply(0));
        else if (mode === "servfail") h.data(reply(2));
        else if (mode === "refused") h.data(reply(5));
        else if (mode === "refuse-connection") h.error(new Error("ECONNREFUSED"));
        else if (mode === "wrong-question") h.data(reply(0, "evil.example"));
        else if (mode === "wrong-id") h.data(reply(0, undefined, ((q.id ?? 0) + 1) & 0xffff));
      });
    },
    close() {},
  });
  return { open, seen };
}

const ups = (...a: string[]): Upstream[] => a.map((s) => parseUpstream(s));

async function ask(f: Forwarder, name = "x.example") {
  const q = query(name, "A", { id: 0x1234 });
  const r = await f.forward(q, questionEndOffset(q));
  const p = r.packet ? (dnsPacket.decode(Buffer.from(r.packet)) as dnsPacket.DecodedPacket & { rcode?: string }) : undefined;
  return { ...r, p, answer: p?.answers?.map((a) => String((a as { data: unknown }).data)) };
}

describe("Forwarder", () => {
  test("first upstream answers: the client's id comes back", async () => {
    const n = fakeNet({ "192.0.2.1:53": "answer" });
    const r = await ask(new Forwarder(ups("192.0.2.1"), { openUdp: n.open }));
    expect(r.ok).toBe(true);
    expect(r.p?.id).toBe(0x1234);
    expect(r.answer).toEqual(["192.0.2.1"]);
  });

  for (const bad of ["silent", "servfail", "refused", "refuse-connection", "wrong-question", "wrong-id"] as const) {
    test(`fails over from an upstream that is ${bad}`, async () => {
      const n = fakeNet({ "192.0.2.1:53": bad, "192.0.2.2:53": "answer" });
      const f = new Forwarder(ups("192.0.2.1", "192.0.2.2"), { openUdp: n.open, timeoutMs: 50 });
      const r = await ask(f);
      expect(r.ok).toBe(true);
      expect(r.attempts).toBe(2);
      expect(r.answer).toEqual(["192.0.2.2"]);
      expect(f.stats()).toEqual([
        { address: "192.0.2.1:53", queries: 1, failures: 1, healthy: false },
        { address: "192.0.2.2:53", queries: 1, failures: 0, healthy: true },
      ]);
    });
  }

  test("a failed upstream is tried last until downForMs passes", async () => {
    let now = 1000;
    const n = fakeNet({ "192.0.2.1:53": "servfail", "192.0.2.2:53": "answer" });
    const f = new Forwarder(ups("192.0.2.1", "192.0.2.2"), { openUdp: n.open, downForMs: 30_000, now: () => now });
    await ask(f);
    n.seen.length = 0;
    expect((await ask(f)).attempts).toBe(1);
    expect(n.seen).toEqual(["192.0.2.2:53"]);
    now += 30_001;
    n.seen.length = 0;
    await ask(f);
    expect(n.seen).toEqual(["192.0.2.1:53", "192.0.2.2:53"]);
  });

  test("every upstream failing: the last SERVFAIL is passed on, or nothing after timeouts", async () => {
    const n = fakeNet({ "192.0.2.1:53": "silent", "192.0.2.2:53": "servfail" });
    const r = await ask(new Forwarder(ups("192.0.2.1", "192.0.2.2"), { openUdp: n.open, timeoutMs: 30 }));
    expect(r.ok).toBe(false);
    expect(r.p?.rcode).toBe("SERVFAIL");
    expect(r.p?.id).toBe(0x1234);
    const n2 = fakeNet({});
    const r2 = await ask(new Forwarder(ups("192.0.2.1"), { openUdp: n2.open, timeoutMs: 30 }));
    expect(r2).toMatchObject({ ok: false, packet: undefined, attempts: 1 });
    expect((await ask(new Forwarder([], { openUdp: n2.open }))).attempts).toBe(0);
  });

  test("an upstream socket that cannot be opened counts as a failure", async () => {
    const n = fakeNet({ "192.0.2.2:53": "answer" });
    const open: OpenUdp = (u, h) => (u.ip.toString() === "192.0.2.1" ? Promise.reject(new Error("ENETUNREACH")) : n.open(u, h));
    const r = await ask(new Forwarder(ups("192.0.2.1", "192.0.2.2"), { openUdp: open }));
    expect(r.answer).toEqual(["192.0.2.2"]);
  });

  test("concurrent queries on one upstream get distinct ids and their own answers", async () => {
    const n = fakeNet({ "192.0.2.1:53": "answer" });
    const f = new Forwarder(ups("192.0.2.1"), { openUdp: n.open });
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => ask(f, `n${i}.example`)));
    expect(rs.map((r) => r.p?.questions?.[0]?.name)).toEqual(rs.map((_, i) => `n${i}.example`));
  });

  test("busy beyond maxInFlight", async () => {
    const n = fakeNet({});
    const f = new Forwarder(ups("192.0.2.1"), { openUdp: n.open, timeoutMs: 50, maxInFlight: 2 });
    const p = [ask(f), ask(f)];
    expect(f.busy).toBe(true);
    await Promise.all(p);
    expect(f.busy).toBe(false);
  });

  test("TCP queries use the TCP exchange, with the same failover", async () => {
    const n = fakeNet({});
    const calls: string[] = [];
    const f = new Forwarder(ups("192.0.2.1", "192.0.2.2"), {
      openUdp: n.open,
      exchangeTcp: async (u, q) => {
        calls.push(formatUpstream(u));
        if (u.ip.toString() === "192.0.2.1") throw new Error("connection refused");
        const d = dnsPacket.decode(Buffer.from(q));
        return dnsPacket.encode({ type: "response", id: d.id ?? 0, questions: d.questions ?? [], answers: [{ type: "A", name: "x.example", data: "203.0.113.9" }] });
      },
    });
    const q = query("x.example");
    const r = await f.forward(q, questionEndOffset(q), true);
    expect(r.ok).toBe(true);
    expect(calls).toEqual(["192.0.2.1:53", "192.0.2.2:53"]);
    expect(n.seen).toEqual([]);
  });
});
