/**
 * The few libc calls a netlink client needs, through bun:ffi: socket, bind,
 * sendto, recv, setsockopt, close, errno and strerror. Synchronous: every call
 * blocks the JS thread for the kernel's answer (tens to hundreds of µs for
 * rtnetlink), bounded by SO_RCVTIMEO so a lost answer cannot hang the daemon.
 */
import { dlopen, FFIType, read } from "bun:ffi";

export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const NETLINK_ROUTE = 0;
export const NETLINK_NETFILTER = 12;
export const SOL_SOCKET = 1;
export const SO_RCVTIMEO = 20;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SOL_NETLINK = 270;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_GET_STRICT_CHK = 12;

export const EINTR = 4;
export const EAGAIN = 11;
export const ENODEV = 19;
export const ENOENT = 2;
export const EEXIST = 17;
export const ESRCH = 3;
export const EADDRNOTAVAIL = 99;

type Libc = {
  socket(domain: number, type: number, proto: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  sendto(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array, alen: number): number;
  recv(fd: number, buf: Uint8Array, len: number, flags: number): number;
  setsockopt(fd: number, level: number, name: number, val: Uint8Array, len: number): number;
  close(fd: number): number;
  errno(): number;
  strerror(errno: number): string;
};

let libc: Libc | undefined;

export function sys(): Libc {
  if (libc) return libc;
  const l = dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
    recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
  });
  const s = l.symbols;
  libc = {
    socket: (d, t, p) => s.socket(d, t, p),
    bind: (fd, a, n) => s.bind(fd, a, n),
    sendto: (fd, b, n, f, a, an) => Number(s.sendto(fd, b, n, f, a, an)),
    recv: (fd, b, n, f) => Number(s.recv(fd, b, n, f)),
    setsockopt: (fd, lv, nm, v, n) => s.setsockopt(fd, lv, nm, v, n),
    close: (fd) => s.close(fd),
    errno: () => {
      const p = s.__errno_location();
      return p === null ? 0 : read.i32(p, 0);
    },
    strerror: (e) => String(s.strerror(e)),
  };
  return libc;
}

/** The C library's text for an errno ("File exists", "No such device", ...), as iproute2 prints it. */
export function strerror(errno: number): string {
  return sys().strerror(errno);
}
