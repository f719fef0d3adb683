/**
 * A synchronous netlink request/ack client on one socket (NETLINK_ROUTE unless asked
 * for another protocol, e.g. NETLINK_NETFILTER for nftables.ts).
 *
 * A netlink socket talks to the namespace it was created in, so `open(nsPath)`
 * creates it inside a setns window (netns-ffi.ts) and the socket then stays
 * bound there while the thread goes back. Every call blocks the JS thread until
 * the kernel answers (bounded by SO_RCVTIMEO); nothing else can interleave on
 * the socket, so one socket can serve any number of sequential requests.
 */
import { withNetnsPath } from "../netns-ffi.ts";
import { type MsgWriter, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, type NlMsg, parseError, splitMessages } from "./codec.ts";
import {
  AF_NETLINK,
  EAGAIN,
  EINTR,
  NETLINK_EXT_ACK,
  NETLINK_GET_STRICT_CHK,
  NETLINK_ROUTE,
  SO_RCVBUF,
  SO_RCVTIMEO,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
  strerror,
  sys,
} from "./sys.ts";

/** Seconds a request may wait for the kernel's answer before it fails with EAGAIN. */
const RECV_TIMEOUT_S = 10;
const RECV_BUF = 256 * 1024;

/** A request the kernel refused (or a socket call that failed): errno, its text and the kernel's own message. */
export class NetlinkError extends Error {
  readonly errno: number;
  readonly extack: string | undefined;
  constructor(errno: number, extack?: string, what?: string) {
    super(`${what ? `${what}: ` : ""}${strerror(errno)}${extack ? ` (${extack})` : ""}`);
    this.name = "NetlinkError";
    this.errno = errno;
    this.extack = extack;
  }
}

let nextSeq = (Date.now() & 0xffff) << 8;

export class NetlinkSocket {
  private fd: number;
  private readonly rbuf = new Uint8Array(RECV_BUF);
  private static readonly kernelAddr = sockaddrNl();

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** A socket in the namespace at `nsPath` (undefined: this thread's own namespace); rtnetlink unless `protocol` says otherwise. */
  static open(nsPath?: string, protocol = NETLINK_ROUTE): NetlinkSocket {
    return nsPath === undefined ? NetlinkSocket.create(protocol) : withNetnsPath(nsPath, () => NetlinkSocket.create(protocol));
  }

  private static create(protocol: number): NetlinkSocket {
    const s = sys();
    const fd = s.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd < 0) throw new NetlinkError(s.errno(), undefined, "netlink socket");
    const sock = new NetlinkSocket(fd);
    try {
      const tv = new Uint8Array(16);
      new DataView(tv.buffer).setBigInt64(0, BigInt(RECV_TIMEOUT_S), true);
      if (s.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) !== 0) throw new NetlinkError(s.errno(), undefined, "setsockopt SO_RCVTIMEO");
      const one = Uint8Array.of(1, 0, 0, 0);
      // extended ack: the kernel's own words for a refusal (best effort: old kernels lack it)
      s.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
      const rcv = new Uint8Array(4);
      new DataView(rcv.buffer).setUint32(0, 1024 * 1024, true);
      s.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, rcv, 4);
      const local = sockaddrNl();
      if (s.bind(fd, local, local.length) !== 0) throw new NetlinkError(s.errno(), undefined, "netlink bind");
    } catch (e) {
      sock.close();
      throw e;
    }
    return sock;
  }

  close(): void {
    if (this.fd >= 0) sys().close(this.fd);
    this.fd = -1;
  }

  private send(msg: MsgWriter, flags: number): number {
    if (this.fd < 0) throw new Error("netlink socket is closed");
    nextSeq = (nextSeq + 1) >>> 0;
    const seq = nextSeq;
    this.sendBytes(msg.finish(seq, flags));
    return seq;
  }

  /** One datagram to the kernel (retried when a signal interrupts it). */
  private sendBytes(bytes: Uint8Array): void {
    const s = sys();
    for (;;) {
      const n = s.sendto(this.fd, bytes, bytes.length, 0, NetlinkSocket.kernelAddr, NetlinkSocket.kernelAddr.length);
      if (n >= 0) return;
      const e = s.errno();
      if (e !== EINTR) throw new NetlinkError(e, undefined, "netlink send");
    }
  }

  private recvBatch(): NlMsg[] {
    const s = sys();
    for (;;) {
      const n = s.recv(this.fd, this.rbuf, this.rbuf.length, 0);
      if (n >= 0) return splitMessages(this.rbuf.slice(0, n));
      const e = s.errno();
      if (e === EINTR) continue;
      throw new NetlinkError(e, undefined, e === EAGAIN ? "no answer from the kernel (netlink timeout)" : "netlink recv");
    }
  }

  /** Sends a request and waits for its ack; a refusal throws NetlinkError. */
  request(msg: MsgWriter): void {
    const seq = this.send(msg, NLM_F_REQUEST | NLM_F_ACK);
    for (;;) {
      for (const m of this.recvBatch()) {
        if (m.seq !== seq) continue; // a late answer to an earlier, abandoned request
        if (m.type === NLMSG_ERROR) {
          const { errno, extack } = parseError(m);
          if (errno !== 0) throw new NetlinkError(errno, extack);
          return;
        }
      }
    }
  }

  /**
   * Sends several messages in one datagram (an nfnetlink batch) and waits for the ack
   * of every one flagged `ack`; the first refusal throws NetlinkError (the kernel
   * answers every acked message, failed or not, so all answers are read first).
   */
  batch(parts: readonly { msg: MsgWriter; flags: number; ack: boolean }[]): void {
    if (this.fd < 0) throw new Error("netlink socket is closed");
    const chunks: Uint8Array[] = [];
    const waiting = new Set<number>();
    for (const p of parts) {
      nextSeq = (nextSeq + 1) >>> 0;
      if (p.ack) waiting.add(nextSeq);
      chunks.push(p.msg.finish(nextSeq, NLM_F_REQUEST | p.flags | (p.ack ? NLM_F_ACK : 0)));
    }
    const first = (nextSeq - parts.length + 1) >>> 0;
    const buf = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let off = 0;
    for (const c of chunks) {
      buf.set(c, off);
      off += c.length;
    }
    this.sendBytes(buf);
    let failure: NetlinkError | undefined;
    while (waiting.size > 0) {
      for (const m of this.recvBatch()) {
        if (m.type !== NLMSG_ERROR) continue;
        const { errno, extack } = parseError(m);
        if (errno !== 0) failure ??= new NetlinkError(errno, extack);
        // a refused commit is answered on the batch's first message, which asked no ack
        if (m.seq === first && errno !== 0) waiting.clear();
        waiting.delete(m.seq);
      }
    }
    if (failure) throw failure;
  }

  /**
   * Runs `fn` with the socket in strict-check mode (NETLINK_GET_STRICT_CHK), in which the
   * kernel validates dump requests and honours their filters (an address dump of one link).
   * A kernel without it runs `fn` unfiltered: callers filter the answer themselves too.
   */
  strictly<T>(fn: () => T): T {
    const s = sys();
    const on = Uint8Array.of(1, 0, 0, 0);
    const strict = s.setsockopt(this.fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, on, 4) === 0;
    try {
      return fn();
    } finally {
      if (strict) s.setsockopt(this.fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, new Uint8Array(4), 4);
    }
  }

  /** Sends a GET for one object and returns its reply message (NLMSG_ERROR throws). */
  get(msg: MsgWriter): NlMsg {
    const seq = this.send(msg, NLM_F_REQUEST);
    for (;;) {
      for (const m of this.recvBatch()) {
        if (m.seq !== seq || m.type === NLMSG_NOOP) continue;
        if (m.type === NLMSG_ERROR) {
          const { errno, extack } = parseError(m);
          throw new NetlinkError(errno === 0 ? 5 : errno, extack);
        }
        return m;
      }
    }
  }

  /** Sends a dump request and returns every message up to NLMSG_DONE (retried when the dump was interrupted by a change). */
  dump(msg: MsgWriter): NlMsg[] {
    for (let attempt = 0; ; attempt++) {
      const seq = this.send(msg, NLM_F_REQUEST | NLM_F_DUMP);
      const out: NlMsg[] = [];
      let interrupted = false;
      for (let done = false; !done; ) {
        for (const m of this.recvBatch()) {
          if (m.seq !== seq) continue;
          if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (m.type === NLMSG_DONE) {
            done = true;
            break;
          }
          if (m.type === NLMSG_ERROR) {
            const { errno, extack } = parseError(m);
            if (errno !== 0) throw new NetlinkError(errno, extack);
            continue;
          }
          if (m.type !== NLMSG_NOOP) out.push(m);
        }
      }
      if (!interrupted || attempt >= 5) return out;
    }
  }
}

function sockaddrNl(): Uint8Array {
  // struct sockaddr_nl { sa_family_t nl_family; unsigned short nl_pad; __u32 nl_pid; __u32 nl_groups; }
  const b = new Uint8Array(12);
  new DataView(b.buffer).setUint16(0, AF_NETLINK, true);
  return b;
}
