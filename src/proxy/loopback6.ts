/**
 * Published ports on the host's IPv6 loopback ([::1]), forwarded in userland.
 *
 * Why not nftables like every other published port: a DNATed connection from
 * ::1 keeps ::1 as its original tuple, so the container's replies are un-NATed
 * back to ::1 on arrival from the bridge. IPv6 has no `route_localnet`: the
 * kernel drops a packet with a loopback address received on a non-loopback
 * device (ip6_rcv_core, RFC 4291 2.5.3; and with br_netfilter the un-NAT happens
 * before that check), and the input route lookup for ::1 is bound to `lo`
 * (strict). So [::1] can only be served by a socket: Berth listens on
 * [::1]:hostPort in its host namespace and relays each TCP connection / UDP
 * flow to the container (what Docker's docker-proxy does for every port; Berth
 * does it only for IPv6 loopback). The container sees the network's gateway as
 * the client, which for a local client carries no information anyway.
 *
 * Sockets are opened in the host namespace through the dataplane's setns
 * window. `sync` makes the listeners match the desired forwards: forwards that
 * must exist (`strict`, an explicit [::1] mapping) make it throw when their port
 * cannot be bound; the others (a mapping on "every address") are best effort.
 */
import type { Socket, TCPSocketListener, udp } from "bun";
import type { Dataplane } from "../dataplane/dataplane.ts";
import { conflict, invalid } from "../errors.ts";
import type { IP } from "../net/index.ts";

export interface LoopbackForward {
  protocol: "tcp" | "udp" | "sctp";
  hostPort: number;
  target: IP;
  targetPort: number;
  /** The mapping names [::1] itself: failing to listen is an error (else best effort). */
  strict: boolean;
}

const LOOPBACK = "::1";
/** A UDP flow without traffic for this long is forgotten. */
const UDP_IDLE_MS = 30_000;

interface Listener {
  key: string;
  target: string;
  close(): void;
}

/** One end of a relayed TCP connection. */
interface Pipe {
  peer: Socket<Pipe> | undefined;
  /** Bytes received before the peer was connected. */
  early: Uint8Array[];
  /** Bytes waiting to be written to THIS socket (it could not take them all). */
  pending: Uint8Array[];
  /** The peer is gone: end this socket once `pending` is written. */
  ending: boolean;
  closed: boolean;
}

function newPipe(peer?: Socket<Pipe>): Pipe {
  return { peer, early: [], pending: [], ending: false, closed: false };
}

function keyOf(f: LoopbackForward): string {
  return `${f.protocol}/${f.hostPort}`;
}

function targetOf(f: LoopbackForward): string {
  return `[${f.target}]:${f.targetPort}`;
}

export class Loopback6Proxy {
  private readonly listeners = new Map<string, Listener>();
  private lock: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly dp: Dataplane,
    private readonly ns: string | null,
    private readonly onError: (msg: string) => void = () => {},
  ) {}

  /** The [::1] forwards currently served, as "proto/port -> [target]:port". */
  active(): string[] {
    return [...this.listeners.values()].map((l) => `${l.key} -> ${l.target}`).sort();
  }

  /** Opens, replaces and closes listeners so exactly `want` is served (serialised). */
  sync(want: readonly LoopbackForward[]): Promise<void> {
    const next = this.lock.then(() => this.apply(want));
    this.lock = next.catch(() => undefined);
    return next;
  }

  /** Closes every listener and the connections they relay. */
  stop(): Promise<void> {
    return this.sync([]);
  }

  private async apply(want: readonly LoopbackForward[]): Promise<void> {
    const byKey = new Map<string, LoopbackForward>();
    for (const f of want) {
      if (f.target.family !== 6) throw invalid("loopback-target", `[::1] forward to ${f.target} is not an IPv6 target`);
      const k = keyOf(f);
      const had = byKey.get(k);
      // two mappings of one host port: the strict one wins (the conflict was refused earlier unless one is best effort)
      if (!had || (f.strict && !had.strict)) byKey.set(k, f);
    }
    for (const [k, l] of this.listeners) {
      const f = byKey.get(k);
      if (!f || targetOf(f) !== l.target) {
        l.close();
        this.listeners.delete(k);
      }
    }
    const errors: string[] = [];
    const unsupported: string[] = [];
    for (const [k, f] of byKey) {
      if (this.listeners.has(k)) continue;
      if (f.protocol === "sctp") {
        if (f.strict) unsupported.push(`[::1]:${f.hostPort}/sctp`);
        continue;
      }
      try {
        const l = f.protocol === "tcp" ? this.listenTcp(f) : await this.listenUdp(f);
        this.listeners.set(k, l);
      } catch (e) {
        const msg = `[::1]:${f.hostPort}/${f.protocol}: ${(e as Error).message}`;
        if (f.strict) errors.push(msg);
        else this.onError(`cannot forward ${msg}`);
      }
    }
    if (unsupported.length > 0) {
      throw invalid("loopback-sctp", `${unsupported.join(", ")}: SCTP cannot be published on [::1] (its userland forwarding covers tcp and udp)`, "ports");
    }
    if (errors.length > 0) {
      throw conflict("port-allocated", `Bind for ${errors.join("; ")}`, "ports");
    }
  }

  // ---------- TCP ----------

  private listenTcp(f: LoopbackForward): Listener {
    const target = f.target.toString();
    const handlers = pipeHandlers();
    const connectPeer = (client: Socket<Pipe>): void => {
      let conn: Promise<Socket<Pipe>>;
      try {
        conn = this.dp.inNetns(this.ns, () =>
          Bun.connect<Pipe>({ hostname: target, port: f.targetPort, data: newPipe(client), socket: handlers }),
        );
      } catch {
        client.end();
        return;
      }
      conn.then(
        (upstream) => {
          if (client.data.closed) {
            upstream.end();
            return;
          }
          client.data.peer = upstream;
          for (const b of client.data.early.splice(0)) send(upstream, b);
        },
        () => client.end(),
      );
    };
    const server: TCPSocketListener<Pipe> = this.dp.inNetns(this.ns, () =>
      Bun.listen<Pipe>({
        hostname: LOOPBACK,
        port: f.hostPort,
        socket: {
          ...handlers,
          open(s) {
            s.data = newPipe();
            connectPeer(s);
          },
        },
      }),
    );
    return { key: keyOf(f), target: targetOf(f), close: () => server.stop(true) };
  }

  // ---------- UDP ----------

  private async listenUdp(f: LoopbackForward): Promise<Listener> {
    const target = f.target.toString();
    const flows = new Map<string, { sock: udp.ConnectedSocket<"buffer">; timer: ReturnType<typeof setTimeout> }>();
    let server: udp.Socket<"buffer"> | undefined;
    const touch = (id: string) => {
      const fl = flows.get(id);
      if (!fl) return;
      clearTimeout(fl.timer);
      fl.timer = setTimeout(() => {
        fl.sock.close();
        flows.delete(id);
      }, UDP_IDLE_MS);
    };
    const forward = async (buf: Buffer, port: number, addr: string) => {
      const id = `[${addr}]:${port}`;
      let fl = flows.get(id);
      if (!fl) {
        const sock = await this.dp.inNetns(this.ns, () =>
          Bun.udpSocket({
            // bound explicitly to "::": Bun's default is an IPv4 socket, which cannot connect to an IPv6 target
            hostname: "::",
            connect: { hostname: target, port: f.targetPort },
            socket: {
              data: (_s, reply) => {
                server?.send(reply, port, addr);
                touch(id);
              },
            },
          }),
        );
        fl = { sock, timer: setTimeout(() => undefined, 0) };
        flows.set(id, fl);
      }
      fl.sock.send(buf);
      touch(id);
    };
    server = await this.dp.inNetns(this.ns, () =>
      Bun.udpSocket({
        hostname: LOOPBACK,
        port: f.hostPort,
        socket: {
          data: (_s, buf, port, addr) => {
            forward(buf, port, addr).catch((e: Error) => this.onError(`[::1]:${f.hostPort}/udp: ${e.message}`));
          },
        },
      }),
    );
    const s = server;
    return {
      key: keyOf(f),
      target: targetOf(f),
      close: () => {
        s.close();
        for (const fl of flows.values()) {
          clearTimeout(fl.timer);
          fl.sock.close();
        }
        flows.clear();
      },
    };
  }
}

/** Writes `b` to `to`, queueing what it cannot take now (in order). */
function send(to: Socket<Pipe>, b: Uint8Array): void {
  if (to.data.pending.length > 0) {
    to.data.pending.push(b);
    return;
  }
  const n = to.write(b);
  if (n < b.length) to.data.pending.push(b.subarray(Math.max(n, 0)));
}

/** Ends `s` now, or once its queued bytes are written. */
function finish(s: Socket<Pipe>): void {
  if (s.data.pending.length === 0) s.end();
  else s.data.ending = true;
}

/** Relays bytes between the two sockets of a pair; either end closing ends the other. */
function pipeHandlers() {
  const gone = (s: Socket<Pipe>) => {
    if (s.data.closed) return;
    s.data.closed = true;
    if (s.data.peer) finish(s.data.peer);
  };
  return {
    data(s: Socket<Pipe>, chunk: Buffer) {
      const b = new Uint8Array(chunk);
      if (s.data.peer) send(s.data.peer, b);
      else s.data.early.push(b);
    },
    drain(s: Socket<Pipe>) {
      const q = s.data.pending;
      while (q.length > 0) {
        const head = q[0]!;
        const n = s.write(head);
        if (n < head.length) {
          q[0] = head.subarray(Math.max(n, 0));
          return;
        }
        q.shift();
      }
      if (s.data.ending) s.end();
    },
    end: gone,
    close: gone,
    error: gone,
    connectError: gone,
  };
}
