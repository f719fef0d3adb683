/**
 * A namespace's link notifications: an rtnetlink socket subscribed to the
 * RTNLGRP_LINK multicast group, to which the kernel sends an RTM_NEWLINK for every
 * link created or changed (flags, master, name, ...) and an RTM_DELLINK for every
 * link deleted or moved out, as the change is made (queued before the call making
 * it returns). Read without blocking: `drain()` answers what arrived since the last
 * call, or "lost" when the socket's buffer overflowed and some were dropped.
 *
 * The socket keeps its namespace alive while it is open: close it when done.
 */
import { withNetnsPath } from "../netns-ffi.ts";
import { type NlMsg, RTM_DELLINK, RTM_NEWLINK, splitMessages } from "./codec.ts";
import { NetlinkError } from "./socket.ts";
import { AF_NETLINK, EAGAIN, EINTR, NETLINK_ROUTE, SO_RCVBUF, SOCK_CLOEXEC, SOCK_RAW, SOL_SOCKET, sys } from "./sys.ts";

const RTMGRP_LINK = 1;
const SO_RCVBUFFORCE = 33;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
const ENOBUFS = 105;
/** Room for bursts (a connect makes a few notifications of ~1.5 KiB each). */
const RCVBUF = 8 * 1024 * 1024;

export class LinkEvents {
  private fd: number;
  private readonly buf = new Uint8Array(64 * 1024);

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Subscribes to the link notifications of the namespace at `nsPath` (undefined: the thread's own). */
  static open(nsPath?: string): LinkEvents {
    return nsPath === undefined ? LinkEvents.create() : withNetnsPath(nsPath, () => LinkEvents.create());
  }

  private static create(): LinkEvents {
    const s = sys();
    const fd = s.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) throw new NetlinkError(s.errno(), undefined, "netlink socket");
    const w = new LinkEvents(fd);
    try {
      const size = new Uint8Array(4);
      new DataView(size.buffer).setUint32(0, RCVBUF, true);
      // beyond rmem_max needs CAP_NET_ADMIN (berthd has it); else whatever the system allows
      if (s.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) !== 0) s.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
      // struct sockaddr_nl { sa_family_t nl_family; unsigned short nl_pad; __u32 nl_pid; __u32 nl_groups; }
      const addr = new Uint8Array(12);
      const dv = new DataView(addr.buffer);
      dv.setUint16(0, AF_NETLINK, true);
      dv.setUint32(8, RTMGRP_LINK, true);
      if (s.bind(fd, addr, addr.length) !== 0) throw new NetlinkError(s.errno(), undefined, "netlink bind");
    } catch (e) {
      w.close();
      throw e;
    }
    return w;
  }

  /** The link notifications (RTM_NEWLINK, RTM_DELLINK) received since the last call, in order; "lost" when some were dropped. */
  drain(): NlMsg[] | "lost" {
    if (this.fd < 0) throw new Error("link notification socket is closed");
    const s = sys();
    const out: NlMsg[] = [];
    let lost = false;
    for (;;) {
      const n = s.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        const e = s.errno();
        if (e === EINTR) continue;
        if (e === ENOBUFS) {
          lost = true; // the queue overflowed: what is still queued is read (and dropped) too
          continue;
        }
        if (e === EAGAIN) break;
        throw new NetlinkError(e, undefined, "netlink recv");
      }
      if (n > this.buf.length) {
        lost = true; // a notification larger than the buffer: cut, so unusable
        continue;
      }
      for (const m of splitMessages(this.buf.subarray(0, n))) if (m.type === RTM_NEWLINK || m.type === RTM_DELLINK) out.push({ ...m, body: m.body.slice() });
    }
    return lost ? "lost" : out;
  }

  close(): void {
    if (this.fd >= 0) sys().close(this.fd);
    this.fd = -1;
  }
}
