/**
 * Running a synchronous piece of code with the calling thread inside another
 * network namespace: setns(2) through bun:ffi.
 *
 * Used to open sockets that live in a container's namespace (the embedded DNS
 * resolver on 127.0.0.11) or in Berth's host namespace (upstream forwarding)
 * from the daemon's own event loop. A socket stays in the namespace it was
 * created in, so only the creation needs the window.
 *
 * Rules (runtime.md, risk 4):
 * - the window is synchronous: `fn` runs with the thread in the target
 *   namespace up to its first `await`; nothing else can run on the JS thread
 *   meanwhile, so no other code ever sees the foreign namespace;
 * - the original namespace is always restored (finally); if restoring fails the
 *   process aborts, because every later socket or spawned tool would silently
 *   act in the wrong namespace;
 * - setns(CLONE_NEWNET) affects only the calling thread, so Bun's other
 *   threads are not disturbed. Measured: ~0.05 ms per window.
 *
 * Only Bun APIs that create their socket synchronously may be used inside
 * (`Bun.udpSocket`, `Bun.listen`, `Bun.connect`); node:dgram binds later, in
 * whatever namespace the thread is in by then.
 */
import { dlopen, FFIType, read } from "bun:ffi";
import { closeSync, openSync } from "node:fs";
import { notFound, systemError } from "../errors.ts";

const CLONE_NEWNET = 0x40000000;

type Libc = {
  setns(fd: number, nstype: number): number;
  errno(): number;
};

let libc: Libc | undefined;

function lib(): Libc {
  if (libc) return libc;
  const l = dlopen("libc.so.6", {
    setns: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  libc = {
    setns: (fd, t) => l.symbols.setns(fd, t),
    errno: () => {
      const p = l.symbols.__errno_location();
      return p === null ? 0 : read.i32(p, 0);
    },
  };
  return libc;
}

/**
 * Runs `fn` with the calling thread in the network namespace at `nsPath`
 * (e.g. /run/netns/NAME or /proc/PID/ns/net) and returns its result.
 */
export function withNetnsPath<T>(nsPath: string, fn: () => T): T {
  const l = lib();
  let target: number;
  try {
    target = openSync(nsPath, "r");
  } catch (e) {
    throw notFound("netns-not-found", `network namespace ${nsPath} cannot be opened: ${(e as Error).message}`, "netns");
  }
  let self: number;
  try {
    self = openSync("/proc/thread-self/ns/net", "r");
  } catch (e) {
    closeSync(target);
    throw systemError("netns-self", `cannot open this thread's network namespace: ${(e as Error).message}`);
  }
  try {
    if (l.setns(target, CLONE_NEWNET) !== 0) {
      throw systemError("setns", `setns into ${nsPath} failed (errno ${l.errno()})`);
    }
    try {
      return fn();
    } finally {
      if (l.setns(self, CLONE_NEWNET) !== 0) {
        console.error(`berth: FATAL: cannot restore the network namespace after entering ${nsPath} (errno ${l.errno()}); aborting`);
        process.abort();
      }
    }
  } finally {
    closeSync(target);
    closeSync(self);
  }
}
