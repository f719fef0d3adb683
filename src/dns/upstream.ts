/**
 * Upstream servers and forwarding.
 *
 * - Upstreams come from `berthd --dns-upstream IP[:port]` (repeatable) or, by
 *   default, from the host's /etc/resolv.conf without loopback addresses (a
 *   127.0.0.53 stub is not reachable from Berth's host namespace in general).
 * - A query is tried on one upstream at a time, in order, failing over to the
 *   next on timeout, on an ICMP error (ECONNREFUSED arrives at once on a
 *   connected socket), on SERVFAIL and on REFUSED (like Docker). An upstream
 *   that failed is tried last for `downForMs`, so a dead first server costs one
 *   timeout, not one per query (a Docker complaint: moby#20029, #34972).
 * - UDP: one connected socket per upstream, opened lazily in Berth's host
 *   namespace; queries get a fresh random ID (the client's is restored) and a
 *   reply must come from the upstream's address (connected socket), carry a
 *   pending ID and echo the question. TCP queries are forwarded over TCP.
 * - At most `maxInFlight` forwards at once; beyond that the caller answers
 *   SERVFAIL at once instead of queueing without bound.
 *
 * The sockets come from injected factories so the failover logic is unit-tested
 * without a network.
 */
import { readFileSync } from "node:fs";
import { invalid } from "../errors.ts";
import { IP } from "../net/index.ts";
import { RCODE, sameQuestion } from "./packet.ts";

export interface Upstream {
  ip: IP;
  port: number;
}

export function formatUpstream(u: Upstream): string {
  return u.ip.family === 6 ? `[${u.ip}]:${u.port}` : `${u.ip}:${u.port}`;
}

/** Parses `IP`, `IP:port`, `[IPv6]` or `[IPv6]:port` (port defaults to 53). */
export function parseUpstream(s: string, field = "dns-upstream"): Upstream {
  const bad = (why: string): never => {
    throw invalid("dns-upstream-invalid", `DNS upstream ${JSON.stringify(s)} ${why}; expected IP, IP:PORT or [IPv6]:PORT`, field);
  };
  if (typeof s !== "string" || s.trim() === "") bad("is empty");
  let host = s.trim();
  let port = 53;
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
  if (br) {
    host = br[1]!;
    if (br[2] !== undefined) port = Number(br[2]);
  } else if ((host.match(/:/g) ?? []).length === 1) {
    const [h, p] = host.split(":") as [string, string];
    host = h;
    if (!/^\d+$/.test(p)) bad(`has an invalid port ${JSON.stringify(p)}`);
    port = Number(p);
  }
  const ip = IP.tryParse(host);
  if (!ip) bad("is not an IP address");
  if (!Number.isInteger(port) || port < 1 || port > 65535) bad(`has port ${port} outside 1-65535`);
  return { ip: ip!, port };
}

export interface HostResolvConf {
  upstreams: Upstream[];
  search: string[];
  options: string[];
}

/** Reads nameservers (without loopback ones), search domains and options from resolv.conf text. */
export function parseResolvConf(text: string): HostResolvConf {
  const out: HostResolvConf = { upstreams: [], search: [], options: [] };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    if (!line) continue;
    const [key, ...rest] = line.split(/\s+/);
    if (key === "nameserver" && rest[0]) {
      // "fe80::1%eth0": the zone names an interface of the host's namespace, unusable from Berth's
      const ip = rest[0].includes("%") ? undefined : IP.tryParse(rest[0]);
      if (ip && !ip.isLoopback() && !ip.isUnspecified() && !out.upstreams.some((u) => u.ip.equals(ip))) out.upstreams.push({ ip, port: 53 });
    } else if (key === "search" || key === "domain") {
      out.search = rest;
    } else if (key === "options") {
      out.options.push(...rest);
    }
  }
  return out;
}

export function readHostResolvConf(path = "/etc/resolv.conf"): HostResolvConf {
  try {
    return parseResolvConf(readFileSync(path, "utf8"));
  } catch {
    return { upstreams: [], search: [], options: [] };
  }
}

// ---------- forwarding ----------

/** A connected UDP socket to one upstream. */
export interface UdpConn {
  send(b: Uint8Array): void;
  close(): void;
}

export interface UdpHandlers {
  data(b: Uint8Array): void;
  error(e: Error): void;
}

export type OpenUdp = (u: Upstream, h: UdpHandlers) => Promise<UdpConn>;
/** One DNS-over-TCP exchange: sends a query, resolves with the reply (no length prefixes). */
export type ExchangeTcp = (u: Upstream, query: Uint8Array, timeoutMs: number) => Promise<Uint8Array>;

export interface ForwarderOptions {
  openUdp: OpenUdp;
  exchangeTcp?: ExchangeTcp;
  /** Per-upstream wait before failing over (default 2000 ms; Docker: 4 s). */
  timeoutMs?: number;
  /** How long a failed upstream is tried last (default 30 s). */
  downForMs?: number;
  maxInFlight?: number;
  now?: () => number;
}

export interface UpstreamStats {
  address: string;
  queries: number;
  failures: number;
  healthy: boolean;
}

export interface ForwardResult {
  /** The reply to give the client (ID restored); undefined when every upstream failed without one. */
  packet: Uint8Array | undefined;
  /** True when an upstream answered with something other than SERVFAIL/REFUSED. */
  ok: boolean;
  attempts: number;
}

interface Pending {
  questionEnd: number;
  query: Uint8Array;
  done: (r: Uint8Array | Error) => void;
}

class UpstreamState {
  conn: UdpConn | undefined;
  opening: Promise<UdpConn> | undefined;
  readonly pending = new Map<number, Pending>();
  downUntil = 0;
  queries = 0;
  failures = 0;
  constructor(readonly u: Upstream) {}
}

export class Forwarder {
  private readonly ups: UpstreamState[];
  private readonly o: Required<Omit<ForwarderOptions, "exchangeTcp">> & { exchangeTcp: ExchangeTcp | undefined };
  private inFlight = 0;
  private closed = false;

  constructor(upstreams: readonly Upstream[], o: ForwarderOptions) {
    this.ups = upstreams.map((u) => new UpstreamState(u));
    this.o = {
      openUdp: o.openUdp,
      exchangeTcp: o.exchangeTcp,
      timeoutMs: o.timeoutMs ?? 2000,
      downForMs: o.downForMs ?? 30_000,
      maxInFlight: o.maxInFlight ?? 1024,
      now: o.now ?? Date.now,
    };
  }

  get upstreams(): Upstream[] {
    return this.ups.map((s) => s.u);
  }

  get busy(): boolean {
    return this.inFlight >= this.o.maxInFlight;
  }

  stats(): UpstreamStats[] {
    const now = this.o.now();
    return this.ups.map((s) => ({ address: formatUpstream(s.u), queries: s.queries, failures: s.failures, healthy: s.downUntil <= now }));
  }

  /** Healthy upstreams in configured order, then the ones that failed recently (oldest failure first). */
  private order(): UpstreamState[] {
    const now = this.o.now();
    const up = this.ups.filter((s) => s.downUntil <= now);
    const down = this.ups.filter((s) => s.downUntil > now).sort((a, b) => a.downUntil - b.downUntil);
    return [...up, ...down];
  }

  /** Forwards one query (raw bytes, as received) over UDP or TCP with failover. */
  async forward(query: Uint8Array, questionEnd: number, tcp = false): Promise<ForwardResult> {
    if (this.ups.length === 0 || this.closed) return { packet: undefined, ok: false, attempts: 0 };
    this.inFlight++;
    try {
      let last: Uint8Array | undefined;
      let attempts = 0;
      for (const s of this.order()) {
        attempts++;
        s.queries++;
        let r: Uint8Array | Error;
        try {
          r = tcp && this.o.exchangeTcp ? await this.viaTcp(s, query, questionEnd) : await this.viaUdp(s, query, questionEnd);
        } catch (e) {
          r = e as Error;
        }
        if (r instanceof Error) {
          this.markDown(s);
          continue;
        }
        const rcode = (r[3] ?? 0) & 0xf;
        if (rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) {
          this.markDown(s);
          last = r;
          continue;
        }
        s.downUntil = 0;
        return { packet: r, ok: true, attempts };
      }
      return { packet: last, ok: false, attempts };
    } finally {
      this.inFlight--;
    }
  }

  private markDown(s: UpstreamState): void {
    s.failures++;
    s.downUntil = this.o.now() + this.o.downForMs;
  }

  private async viaTcp(s: UpstreamState, query: Uint8Array, questionEnd: number): Promise<Uint8Array | Error> {
    const r = await this.o.exchangeTcp!(s.u, query, this.o.timeoutMs);
    if (r.length < 12 || r[0] !== query[0] || r[1] !== query[1] || !sameQuestion(query, r, questionEnd)) return new Error("mismatched reply");
    return r;
  }

  private async conn(s: UpstreamState): Promise<UdpConn> {
    if (s.conn) return s.conn;
    if (!s.opening) {
      s.opening = this.o
        .openUdp(s.u, {
          data: (b) => this.onData(s, b),
          // ECONNREFUSED and friends: nobody is listening there, so nothing pending will be answered
          error: (e) => {
            for (const p of [...s.pending.values()]) p.done(e);
          },
        })
        .then(
          (c) => {
            s.conn = c;
            s.opening = undefined;
            return c;
          },
          (e) => {
            s.opening = undefined;
            throw e;
          },
        );
    }
    return s.opening;
  }

  private onData(s: UpstreamState, b: Uint8Array): void {
    if (b.length < 12) return;
    const id = (b[0]! << 8) | b[1]!;
    const p = s.pending.get(id);
    if (!p || !sameQuestion(p.query, b, p.questionEnd)) return; // late, spoofed or foreign: ignore
    p.done(b);
  }

  private async viaUdp(s: UpstreamState, query: Uint8Array, questionEnd: number): Promise<Uint8Array | Error> {
    const c = await this.conn(s);
    let id = 0;
    do id = Math.floor(Math.random() * 0x10000);
    while (s.pending.has(id));
    const out = Buffer.from(query);
    out.writeUInt16BE(id, 0);
    return await new Promise<Uint8Array | Error>((resolve) => {
      const timer = setTimeout(() => p.done(new Error("timeout")), this.o.timeoutMs);
      const p: Pending = {
        questionEnd,
        query: out,
        done: (r) => {
          clearTimeout(timer);
          s.pending.delete(id);
          if (r instanceof Error) return resolve(r);
          // give the client its own ID back
          const copy = Buffer.from(r);
          copy[0] = query[0]!;
          copy[1] = query[1]!;
          resolve(copy);
        },
      };
      s.pending.set(id, p);
      try {
        c.send(out);
      } catch (e) {
        p.done(e as Error);
      }
    });
  }

  close(): void {
    this.closed = true;
    for (const s of this.ups) {
      for (const p of [...s.pending.values()]) p.done(new Error("closed"));
      s.conn?.close();
      s.conn = undefined;
    }
  }
}
