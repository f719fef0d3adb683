/**
 * nftables in-process: libnftables (the library the `nft` binary is a thin
 * wrapper around) through bun:ffi, instead of spawning `nft` (optionally under
 * nsenter). Same parser, same netlink transaction, same messages; it saves the
 * fork+exec of nft (and nsenter), ~10-20 ms per call.
 *
 * `nftInProcess(nsPath, args, stdin)` takes the argv `nft` would get (without
 * "nft") and answers what `nft` would have: exit code 0/1, stdout, stderr.
 * Understood: leading `-j`/`--json` and `-f -` (the script in `stdin`), then a
 * command. Anything else, or when the library cannot be used, it answers
 * `undefined` and the caller spawns nft as before (Dataplane.nft does that).
 *
 * Mapping to nft's own main():
 * - `nft [-j] CMD...`  -> nft_run_cmd_from_buffer("CMD ...") (nft joins argv with spaces too);
 * - `nft [-j] -f -`    -> nft_run_cmd_from_filename on a memfd holding the script:
 *   the file path (not the buffer one) because nftables 1.0.6's buffer input
 *   reports errors without the line number and quotes the script's first line
 *   instead of the failing one. The memfd's name in messages is replaced by
 *   "/dev/stdin", so they read exactly as `nft -f -` prints them.
 *
 * Namespaces: the context's netfilter netlink socket is opened by nft_ctx_new
 * (verified with nftables 1.0.6: a context created in namespace A and run while
 * the thread is in B changes A), and interface names are resolved at run time
 * in whatever namespace the thread is in. So a context is created, used and
 * freed inside one synchronous setns window (netns-ffi.ts): ~0.1 ms for the
 * window plus context, against the 10-20 ms of a spawn. Contexts are never
 * cached or kept alive across calls: nftables 1.0.6 keeps some tables in
 * globals that nft_ctx_new sets up and nft_ctx_free tears down.
 *
 * Risk handled: libnftables calls exit() when it cannot open its netlink socket
 * (kernel without nf_tables). The first use probes a NETLINK_NETFILTER socket
 * itself and, when that fails, leaves nft to the spawned binary, which reports
 * the problem as an error instead of ending the process.
 *
 * The call blocks the JS thread for its duration (parse + kernel commit; 0.2-3 ms
 * typically, longer for large rulesets); spawning did not. That is the trade.
 *
 * Debug aid: BERTH_NFT=spawn in the environment forces the old path (spawn
 * `nft`), e.g. to compare behaviour or rule out this layer.
 */
import { CString, dlopen, FFIType, type Pointer } from "bun:ffi";
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BerthError, systemError } from "../errors.ts";
import type { RunOptions, RunResult } from "./exec.ts";
import { withNetnsPath } from "./netns-ffi.ts";

/** include/nftables/libnftables.h (nftables 1.0.6). */
const NFT_CTX_DEFAULT = 0;
const NFT_CTX_OUTPUT_JSON = 1 << 4;

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_NETFILTER = 12;
const MFD_CLOEXEC = 1;

export interface NftOutcome {
  exitCode: number;
  stdout: string;
  stderr: string;
}

interface NftLib {
  ctxNew(flags: number): Pointer | null;
  ctxFree(ctx: Pointer): void;
  bufferOutput(ctx: Pointer): number;
  bufferError(ctx: Pointer): number;
  setOutputFlags(ctx: Pointer, flags: number): void;
  /** C strings are passed as NUL-terminated Buffers (bun:ffi hands a typed array over as its pointer). */
  runBuffer(ctx: Pointer, buf: Uint8Array): number;
  runFile(ctx: Pointer, path: Uint8Array): number;
  outputBuffer(ctx: Pointer): Pointer | null;
  errorBuffer(ctx: Pointer): Pointer | null;
  memfd(name: Uint8Array, flags: number): number;
}

/** undefined: not tried yet; null: cannot be used in this process. */
let loaded: NftLib | null | undefined;
let loadError = "";

/** A NUL-terminated copy of `s` for a `const char *` argument. */
function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

const MEMFD_NAME = cstr("berth-nft");

function load(): NftLib | null {
  if (loaded !== undefined) return loaded;
  try {
    const nft = dlopen("libnftables.so.1", {
      nft_ctx_new: { args: [FFIType.u32], returns: FFIType.ptr },
      nft_ctx_free: { args: [FFIType.ptr], returns: FFIType.void },
      nft_ctx_buffer_output: { args: [FFIType.ptr], returns: FFIType.i32 },
      nft_ctx_buffer_error: { args: [FFIType.ptr], returns: FFIType.i32 },
      nft_ctx_output_set_flags: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.void },
      nft_run_cmd_from_buffer: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
      nft_run_cmd_from_filename: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
      nft_ctx_get_output_buffer: { args: [FFIType.ptr], returns: FFIType.ptr },
      nft_ctx_get_error_buffer: { args: [FFIType.ptr], returns: FFIType.ptr },
    });
    const libc = dlopen("libc.so.6", {
      socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
      close: { args: [FFIType.i32], returns: FFIType.i32 },
      memfd_create: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    });
    // libnftables exit()s the process when this socket cannot be opened: find out first
    const fd = libc.symbols.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0) {
      loadError = "cannot open a NETLINK_NETFILTER socket";
      loaded = null;
      return null;
    }
    libc.symbols.close(fd);
    const s = nft.symbols;
    loaded = {
      ctxNew: (f) => s.nft_ctx_new(f) as Pointer | null,
      ctxFree: (c) => s.nft_ctx_free(c),
      bufferOutput: (c) => s.nft_ctx_buffer_output(c),
      bufferError: (c) => s.nft_ctx_buffer_error(c),
      setOutputFlags: (c, f) => s.nft_ctx_output_set_flags(c, f),
      runBuffer: (c, b) => s.nft_run_cmd_from_buffer(c, b),
      runFile: (c, p) => s.nft_run_cmd_from_filename(c, p),
      outputBuffer: (c) => s.nft_ctx_get_output_buffer(c) as Pointer | null,
      errorBuffer: (c) => s.nft_ctx_get_error_buffer(c) as Pointer | null,
      memfd: (n, f) => libc.symbols.memfd_create(n, f),
    };
  } catch (e) {
    loadError = (e as Error).message;
    loaded = null;
  }
  return loaded ?? null;
}

/** Whether nft calls can run in-process here (library loadable, netfilter netlink available, not forced off). */
export function nftInProcessAvailable(): boolean {
  return !spawnForced() && load() !== null;
}

/** Why the in-process path is not used ("" when it is). */
export function nftInProcessUnavailableReason(): string {
  if (spawnForced()) return "BERTH_NFT=spawn";
  return load() === null ? loadError : "";
}

/** BERTH_NFT=spawn: always spawn `nft` (debug aid; read on every call so it can be flipped at run time). */
function spawnForced(): boolean {
  return process.env.BERTH_NFT === "spawn";
}

interface Parsed {
  json: boolean;
  /** `-f -`: the script comes from stdin. */
  script: boolean;
  command: string;
}

/** The subset of nft's command line handled in-process; undefined for anything else. */
function parseArgs(args: readonly string[], stdin: string | undefined): Parsed | undefined {
  let json = false;
  let script = false;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "-j" || a === "--json") json = true;
    else if (a === "-f" || a === "--file") {
      if (args[i + 1] !== "-") return undefined;
      script = true;
      i++;
    } else break;
  }
  const rest = args.slice(i);
  // nft's getopt would take any later "-x" as an option: leave such argv to nft itself
  if (rest.some((a) => a.startsWith("-"))) return undefined;
  if (script) return rest.length === 0 && stdin !== undefined ? { json, script, command: "" } : undefined;
  if (rest.length === 0 || stdin !== undefined) return undefined;
  return { json, script, command: rest.join(" ") };
}

/**
 * Runs `nft ARGS` (with `stdin` for `-f -`) in-process, in the namespace at
 * `nsPath` (null: the thread's current one). undefined when it cannot be done
 * in-process: the caller spawns nft instead.
 */
export function nftInProcess(nsPath: string | null, args: readonly string[], stdin?: string): NftOutcome | undefined {
  if (spawnForced()) return undefined;
  const p = parseArgs(args, stdin);
  if (!p) return undefined;
  const lib = load();
  if (!lib) return undefined;
  // a missing namespace: let nsenter report it the way callers already expect
  if (nsPath !== null && !existsSync(nsPath)) return undefined;

  let memfd = -1;
  if (p.script) {
    memfd = lib.memfd(MEMFD_NAME, MFD_CLOEXEC);
    if (memfd >= 0) {
      try {
        writeAll(memfd, stdin ?? "");
      } catch (e) {
        closeSync(memfd);
        throw e;
      }
    }
  }
  try {
    const go = (): NftOutcome => runCtx(lib, p, memfd, stdin ?? "", nsPath === null);
    return withLowFds(() => {
      if (nsPath === null) return go();
      try {
        return withNetnsPath(nsPath, go);
      } catch (e) {
        // the namespace went away between the check and setns
        if (e instanceof BerthError && e.code === "netns-not-found") return undefined;
        throw e;
      }
    });
  } finally {
    if (memfd >= 0) closeSync(memfd);
  }
}

/**
 * libnftables 1.0.6 waits on its netlink socket with select(2), whose fd_set only
 * holds descriptors below FD_SETSIZE (1024): glibc aborts the whole process on a
 * higher one ("bit out of range 0 - FD_SETSIZE on fd_set"). berthd holds a few
 * descriptors per container (its pidfd, the DNS resolver's sockets), so past a few
 * hundred containers a new socket would get one above 1023. So a few low
 * descriptors (/dev/null) are reserved at the first call and released just before
 * the context is made: a new descriptor is always the lowest free one, so the
 * window's and the context's take them. When even the lowest free descriptor is
 * too high, `fn` is not run (undefined: nft is spawned instead).
 */
const FD_SETSIZE = 1024;
const RESERVED_FDS = 6;
let reservedFds: number[] | undefined;

function withLowFds<T>(fn: () => T | undefined): T | undefined {
  reservedFds ??= openReserve();
  for (const fd of reservedFds) closeSync(fd);
  try {
    const probe = openSync("/dev/null", "r"); // the lowest free descriptor
    closeSync(probe);
    if (probe + RESERVED_FDS >= FD_SETSIZE) return undefined;
    return fn();
  } finally {
    reservedFds = openReserve();
  }
}

function openReserve(): number[] {
  return Array.from({ length: RESERVED_FDS }, () => openSync("/dev/null", "r"));
}

function writeAll(fd: number, s: string): void {
  const b = Buffer.from(s, "utf8");
  let off = 0;
  while (off < b.length) off += writeSync(fd, b, off, b.length - off);
}

/**
 * The context of the process's own namespace is made once and kept. Besides saving its
 * set-up, this keeps its netlink socket open: the kernel makes the release of a
 * netfilter socket wait until the objects of earlier deletions are freed (an RCU
 * grace period, 7-15 ms here), so closing right after a `delete element` stalled
 * every DEL; a kept socket is closed at exit, by when that has long happened.
 * Contexts of other namespaces are made per call (a kept socket would keep a
 * deleted namespace alive).
 */
let own: { ctx: Pointer; ns: string } | undefined;

/** The identity of the namespace this thread is in now. */
function threadNs(): string {
  const st = statSync("/proc/thread-self/ns/net");
  return `${st.dev}:${st.ino}`;
}

function newContext(lib: NftLib): Pointer {
  const ctx = lib.ctxNew(NFT_CTX_DEFAULT);
  if (ctx === null) throw systemError("nft", "libnftables: nft_ctx_new failed");
  // both buffered: nothing may reach the process's stdout (a CNI plugin's result goes there)
  if (lib.bufferOutput(ctx) !== 0 || lib.bufferError(ctx) !== 0) {
    lib.ctxFree(ctx);
    throw systemError("nft", "libnftables: cannot buffer its output");
  }
  return ctx;
}

/** Runs one nft command line or script in a context (inside the caller's namespace window). */
function runCtx(lib: NftLib, p: Parsed, memfd: number, script: string, ownNs: boolean): NftOutcome {
  let ctx: Pointer;
  let keep = false;
  if (ownNs) {
    const ns = threadNs();
    if (own === undefined) own = { ctx: newContext(lib), ns };
    keep = own.ns === ns;
  }
  ctx = keep ? own!.ctx : newContext(lib);
  try {
    lib.setOutputFlags(ctx, p.json ? NFT_CTX_OUTPUT_JSON : 0);
    let rc: number;
    let fileName: string | undefined;
    if (p.script && memfd >= 0) {
      fileName = `/proc/self/fd/${memfd}`;
      rc = lib.runFile(ctx, cstr(fileName));
    } else {
      // no memfd (should not happen on Linux >= 3.17): the buffer form, whose errors lack the line number
      rc = lib.runBuffer(ctx, cstr(p.script ? script : p.command));
    }
    // reading a buffer also rewinds it for the context's next command
    const out = lib.outputBuffer(ctx);
    const err = lib.errorBuffer(ctx);
    const stdout = out === null ? "" : new CString(out).toString();
    let stderr = err === null ? "" : new CString(err).toString();
    if (fileName !== undefined) stderr = stderr.replaceAll(`${fileName}:`, "/dev/stdin:");
    return { exitCode: rc === 0 ? 0 : 1, stdout, stderr };
  } finally {
    if (!keep) lib.ctxFree(ctx);
  }
}

/**
 * The spawned path: `nft ARGS` through `exec` (which adds nsenter for a
 * namespace), never throwing for a failing nft.
 *
 * `-j -f -` is given a regular file instead of stdin: nftables 1.0.6 with -j
 * first parses the file as JSON and, when that fails, opens it again for the nft
 * syntax; a pipe has been drained by the first attempt by then, so the script is
 * silently lost (exit 0, nothing applied, nothing listed). The file's name in
 * messages reads "/dev/stdin", as for the in-process path.
 */
export async function spawnNft(exec: (argv: string[], opts: RunOptions) => Promise<RunResult>, args: readonly string[], stdin?: string): Promise<RunResult> {
  const json = args.includes("-j") || args.includes("--json");
  const f = args.findIndex((a, i) => (a === "-f" || a === "--file") && args[i + 1] === "-");
  if (!json || f < 0 || stdin === undefined) {
    return exec(["nft", ...args], stdin === undefined ? { allowFailure: true } : { stdin, allowFailure: true });
  }
  const dir = mkdtempSync(join(tmpdir(), "berth-nft-"));
  const file = join(dir, "script.nft");
  try {
    writeFileSync(file, stdin, { mode: 0o600 });
    const argv = args.map((a, i) => (i === f + 1 ? file : a));
    const r = await exec(["nft", ...argv], { allowFailure: true });
    return { ...r, stderr: r.stderr.replaceAll(`${file}:`, "/dev/stdin:") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
