/**
 * The embedded DNS service: one resolver address (127.0.0.11:53, UDP and TCP)
 * inside every attached container's network namespace, all served by berthd's
 * single event loop. See README.md in this directory for why.
 *
 * attach(containerId, netns) opens the two sockets inside the container's
 * namespace (a synchronous setns window through the dataplane) on free ports of
 * 127.0.0.11, and adds a DNAT from 127.0.0.11:53 to them in that namespace's own
 * nftables (table `ip berth_dns`), like Docker: port 53 stays free for a DNS
 * server the container may run itself. The sockets live until detach(); the
 * table lives and dies with the namespace (a new attach replaces it). A query's scope is the set of networks its container is
 * attached to, looked up in the name table when it arrives, so connecting to or
 * disconnecting from a network changes what the container can resolve at once.
 *
 * The name table is rebuilt from the store: after every network/endpoint event
 * (marked dirty; the next query waits for the rebuild) and when it is older than
 * `maxTableAgeMs` (changes made by other processes sharing the store).
 */
import type { Socket, TCPSocketListener } from "bun";
import type { Dataplane } from "../dataplane/dataplane.ts";
import type { EventBus } from "../observe/events.ts";
import type { Store } from "../store/types.ts";
import { NameTable } from "./names.ts";
import { failureReply, handleQuery, headerOnly, RCODE } from "./packet.ts";
import { type DnsCounters, DnsStatsCounter } from "./stats.ts";
import { type ExchangeTcp, Forwarder, type OpenUdp, type Upstream, type UpstreamStats } from "./upstream.ts";

export const RESOLVER_ADDRESS = "127.0.0.11";

export interface DnsServiceOptions {
  store: Store;
  dp: Dataplane;
  events?: EventBus;
  upstreams: readonly Upstream[];
  /** Address and port of the resolver inside each container (127.0.0.11:53). */
  address?: string;
  port?: number;
  forwardTimeoutMs?: number;
  maxTableAgeMs?: number;
}

export interface DnsStats extends DnsCounters {
  listeners: number;
  upstreams: UpstreamStats[];
  names: number;
}

interface Listener {
  containerId: string;
  netns: string;
  udp: { close(): void; port: number };
  tcp: TCPSocketListener<TcpState>;
}

interface TcpState {
  buf: Buffer;
  /** Bytes the kernel did not take yet (written on drain). */
  out: Buffer;
}

function tcpWrite(s: Socket<TcpState>, b: Buffer): void {
  if (s.data.out.length > 0) {
    s.data.out = Buffer.concat([s.data.out, b]);
    return;
  }
  const n = s.write(b);
  if (n < b.length) s.data.out = b.subarray(Math.max(n, 0));
}

/**
 * The container-side redirect: queries to ADDRESS:53 go to the resolver's real
 * ports. Output hook only, so it applies to the container's own traffic and
 * nothing arriving from outside; conntrack maps the replies back to port 53.
 */
export function dnsNatScript(address: string, port: number, udpPort: number, tcpPort: number): string {
  return [
    "table ip berth_dns",
    "delete table ip berth_dns",
    "table ip berth_dns {",
    "  chain output {",
    "    type nat hook output priority -100; policy accept;",
    `    ip daddr ${address} udp dport ${port} dnat to ${address}:${udpPort}`,
    `    ip daddr ${address} tcp dport ${port} dnat to ${address}:${tcpPort}`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** A DNS-over-TCP frame: 2-byte length, then the message. */
function frame(msg: Uint8Array): Buffer {
  const out = Buffer.alloc(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  out.set(msg, 2);
  return out;
}

export class DnsService {
  readonly counters = new DnsStatsCounter();
  readonly address: string;
  readonly port: number;
  private readonly o: DnsServiceOptions;
  private readonly forwarder: Forwarder;
  private readonly listeners = new Map<string, Listener>();
  private table = new NameTable();
  private tableBuilt = 0;
  private generation = 1;
  private builtGeneration = 0;
  private building: Promise<void> | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;

  constructor(o: DnsServiceOptions) {
    this.o = o;
    this.address = o.address ?? RESOLVER_ADDRESS;
    this.port = o.port ?? 53;
    this.forwarder = new Forwarder(o.upstreams, {
      openUdp: this.openUdp,
      exchangeTcp: this.exchangeTcp,
      ...(o.forwardTimeoutMs !== undefined ? { timeoutMs: o.forwardTimeoutMs } : {}),
    });
    this.unsubscribe = o.events?.subscribe((e) => {
      if (e.Type === "network") this.invalidate();
    });
  }

  get upstreams(): Upstream[] {
    return this.forwarder.upstreams;
  }

  /** Marks the name table stale: the next query rebuilds it first. */
  invalidate(): void {
    this.generation++;
  }

  /** Rebuilds the name table from the store (single flight; loops until current). */
  async refresh(): Promise<NameTable> {
    while (this.builtGeneration !== this.generation) {
      if (!this.building) {
        const gen = this.generation;
        this.building = (async () => {
          const networks = await this.o.store.networks.list();
          const endpoints = (await Promise.all(networks.map((n) => this.o.store.endpoints.listByNetwork(n.id)))).flat();
          this.table = NameTable.build(networks, endpoints);
          this.tableBuilt = Date.now();
          this.builtGeneration = gen;
        })().finally(() => {
          this.building = undefined;
        });
      }
      await this.building;
    }
    return this.table;
  }

  private async currentTable(): Promise<NameTable> {
    if (Date.now() - this.tableBuilt > (this.o.maxTableAgeMs ?? 2000)) this.invalidate();
    return this.builtGeneration === this.generation ? this.table : this.refresh();
  }

  /** The current table (for inspection). */
  async names(): Promise<NameTable> {
    return this.currentTable();
  }

  isAttached(containerId: string): boolean {
    return this.listeners.has(containerId);
  }

  /** The real ports behind 127.0.0.11:53 in a container's namespace (diagnostics, benchmarks). */
  ports(containerId: string): { udp: number; tcp: number } | undefined {
    const l = this.listeners.get(containerId);
    return l ? { udp: l.udp.port, tcp: l.tcp.port } : undefined;
  }

  /**
   * Opens the resolver inside a container's namespace. Idempotent. Throws when
   * the address cannot be bound there (e.g. something else holds port 53).
   */
  async attach(containerId: string, netns: string): Promise<void> {
    if (this.stopped) throw new Error("DNS service stopped");
    const cur = this.listeners.get(containerId);
    if (cur && cur.netns === netns) return;
    if (cur) this.detach(containerId);
    this.invalidate();
    await this.refresh();
    const { address } = this;
    const [udpPromise, tcp] = this.o.dp.inNetns(netns, () => {
      const u = Bun.udpSocket({
        hostname: address,
        port: 0,
        socket: {
          data: (sock, buf, rport, raddr) => {
            void this.onUdp(containerId, buf, (out) => sock.send(out, rport, raddr));
          },
        },
      });
      let t: TCPSocketListener<TcpState>;
      try {
        t = Bun.listen<TcpState>({ hostname: address, port: 0, socket: this.tcpHandlers(containerId) });
      } catch (e) {
        void u.then((s) => s.close(), () => undefined);
        throw e;
      }
      return [u, t] as const;
    });
    let udp: { close(): void; port: number } | undefined;
    try {
      udp = await udpPromise;
      await this.o.dp.nftApply(netns, dnsNatScript(address, this.port, udp.port, tcp.port));
    } catch (e) {
      udp?.close();
      tcp.stop(true);
      throw e;
    }
    this.listeners.set(containerId, { containerId, netns, udp, tcp });
  }

  /** Closes a container's resolver; unknown containers are fine. */
  detach(containerId: string): void {
    const l = this.listeners.get(containerId);
    if (!l) return;
    this.listeners.delete(containerId);
    l.udp.close();
    l.tcp.stop(true);
    this.invalidate();
  }

  stats(): DnsStats {
    return { ...this.counters.snapshot(), listeners: this.listeners.size, upstreams: this.forwarder.stats(), names: this.table.records().length };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    for (const id of [...this.listeners.keys()]) this.detach(id);
    this.forwarder.close();
    await this.building?.catch(() => undefined);
  }

  // ---------- query path ----------

  /** Answers one query from a container; `reply` sends bytes back. Never throws. */
  async answer(containerId: string, query: Uint8Array, tcp: boolean, reply: (b: Uint8Array) => void): Promise<void> {
    const c = this.counters;
    c.queries++;
    try {
      const table = await this.currentTable();
      const scope = table.scopeOf(containerId);
      const d = handleQuery(query, { table, scope, forward: table.mayForward(scope), tcp });
      if (d.kind === "drop") {
        c.dropped++;
        return;
      }
      if (d.kind === "reply") {
        c.answeredLocally++;
        c.countRcode(d.rcode);
        reply(d.packet);
        return;
      }
      c.forwarded++;
      if (this.forwarder.busy) {
        c.forwardFailures++;
        c.countRcode(RCODE.SERVFAIL);
        reply(failureReply(query, RCODE.SERVFAIL, d.questionEnd));
        return;
      }
      const r = await this.forwarder.forward(query, d.questionEnd, tcp);
      if (!r.ok) c.forwardFailures++;
      const out = r.packet ?? failureReply(query, RCODE.SERVFAIL, d.questionEnd);
      c.countRcode((out[3] ?? 0) & 0xf);
      reply(out);
    } catch {
      // the table could not be read (store closed?): tell the client rather than time it out
      c.servfail++;
      const d = query.length >= 12 ? headerOnly(query, RCODE.SERVFAIL) : undefined;
      if (d?.kind === "reply") reply(d.packet);
    }
  }

  private async onUdp(containerId: string, buf: Uint8Array, send: (b: Uint8Array) => void): Promise<void> {
    await this.answer(containerId, buf, false, (out) => {
      try {
        send(out);
      } catch {
        /* the client went away */
      }
    });
  }

  private tcpHandlers(containerId: string) {
    return {
      open: (s: Socket<TcpState>) => {
        s.data = { buf: Buffer.alloc(0), out: Buffer.alloc(0) };
        s.timeout(10);
      },
      data: (s: Socket<TcpState>, chunk: Buffer) => {
        let buf = Buffer.concat([s.data.buf, chunk]);
        while (buf.length >= 2) {
          const len = buf.readUInt16BE(0);
          if (buf.length < len + 2) break;
          const msg = buf.subarray(2, len + 2);
          buf = buf.subarray(len + 2);
          void this.answer(containerId, Buffer.from(msg), true, (out) => tcpWrite(s, frame(out)));
        }
        s.data.buf = buf;
      },
      drain: (s: Socket<TcpState>) => {
        const rest = s.data.out;
        s.data.out = Buffer.alloc(0);
        if (rest.length > 0) tcpWrite(s, rest);
      },
      timeout: (s: Socket<TcpState>) => {
        s.end();
      },
      error: () => undefined,
    };
  }

  // ---------- upstream sockets, opened in Berth's host namespace ----------

  private readonly openUdp: OpenUdp = (u, h) =>
    this.o.dp.inNetns(this.o.dp.hostNs, () =>
      Bun.udpSocket({
        connect: { hostname: u.ip.toString(), port: u.port },
        socket: {
          data: (_s, b) => h.data(b),
          // Bun calls this with the error as the only argument
          error: (...args: unknown[]) => h.error(args.find((a): a is Error => a instanceof Error) ?? new Error("socket error")),
        },
      }),
    );

  private readonly exchangeTcp: ExchangeTcp = (u, query, timeoutMs) =>
    new Promise<Uint8Array>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      let settled = false;
      const finish = (r: Uint8Array | Error, s?: Socket<undefined>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        s?.end();
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      const timer = setTimeout(() => finish(new Error("timeout")), timeoutMs);
      let conn: Promise<Socket<undefined>>;
      try {
        conn = this.o.dp.inNetns(this.o.dp.hostNs, () =>
          Bun.connect({
            hostname: u.ip.toString(),
            port: u.port,
            socket: {
              open: (s) => {
                s.write(frame(query));
              },
              data: (s, chunk) => {
                buf = Buffer.concat([buf, chunk]);
                if (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) finish(buf.subarray(2, buf.readUInt16BE(0) + 2), s);
              },
              close: () => finish(new Error("connection closed")),
              error: (_s, e) => finish(e instanceof Error ? e : new Error(String(e))),
              connectError: (_s, e) => finish(e instanceof Error ? e : new Error(String(e))),
            },
          }),
        );
      } catch (e) {
        finish(e as Error);
        return;
      }
      conn.then(
        (s) => {
          if (settled) s.end();
        },
        (e: Error) => finish(e),
      );
    });
}
