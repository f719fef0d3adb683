/**
 * [::1] port mappings for the `portmap` plugin: a small userland forwarder
 * process per attachment (the kernel cannot DNAT IPv6 loopback traffic to a
 * container: see src/proxy/loopback6.ts, whose relay it runs).
 *
 * A CNI plugin exits after each call, so ADD starts the forwarder detached
 * (`setsid -f`, stdio closed: the runtime never waits for it) in the plugin's
 * namespace (the host's). It binds its ports first and then reports in its state
 * file `/run/berth/cni-portmap/<netns inode>-<hash(owner tag)>.json`: its pid,
 * or the bind error, which fails the ADD. DEL/GC stop it by that pid after
 * checking that /proc/<pid>/cmdline still names the same state file (no stray
 * kill after pid reuse). It also exits by itself once the container's network
 * namespace is gone (a runtime that never called DEL).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Dataplane } from "../../dataplane/dataplane.ts";
import { IP } from "../../net/index.ts";
import { type LoopbackForward, Loopback6Proxy } from "../../proxy/loopback6.ts";
import { shortHash } from "../chained.ts";
import { CNI_ERR, cniError } from "../errors.ts";

export const FORWARDER_DIR = "/run/berth/cni-portmap";
export const FORWARDER_ARG = "portmap-forwarder";
const START_TIMEOUT_MS = 5000;
const WATCH_MS = 1000;

export interface ForwardSpec {
  protocol: "tcp" | "udp" | "sctp";
  hostPort: number;
  target: string;
  targetPort: number;
}

interface Request {
  tag: string;
  /** The container's namespace path: the forwarder exits when it disappears. */
  netns: string;
  forwards: ForwardSpec[];
}

interface StateFile {
  tag: string;
  pid?: number;
  error?: string;
  forwards?: ForwardSpec[];
}

/** This process's network namespace, as the inode of its nsfs file (what keys state files per host). */
function nsKey(): string {
  return String(statSync("/proc/self/ns/net").ino);
}

function stateFile(tag: string): string {
  return join(FORWARDER_DIR, `${nsKey()}-${shortHash(tag, 16)}.json`);
}

function readState(file: string): StateFile | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as StateFile;
  } catch {
    return undefined;
  }
}

/** The pid in the state file if that process is still this forwarder. */
function livePid(file: string): number | undefined {
  const pid = readState(file)?.pid;
  if (pid === undefined) return undefined;
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return cmd.includes(FORWARDER_ARG) && cmd.includes(file) && running(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The process exists and is not a zombie (an exited forwarder whose parent, init, has not reaped it yet). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** argv that starts this program (compiled binary, or bun + the entry script) with `args`. */
function selfArgv(args: string[]): string[] {
  const script = process.argv[1];
  const fromSource = script !== undefined && /\.(ts|js)$/.test(script) && !script.startsWith("/$bunfs/");
  return [process.execPath, ...(fromSource ? [script] : []), ...args];
}

/** Starts the forwarder of one attachment (replacing a previous one); throws a CNI error when it cannot bind. */
export async function startForwarder(tag: string, netns: string, forwards: ForwardSpec[]): Promise<void> {
  await stopForwarder(tag);
  mkdirSync(FORWARDER_DIR, { recursive: true });
  const file = stateFile(tag);
  const req: Request = { tag, netns, forwards };
  const p = Bun.spawn(["setsid", "-f", ...selfArgv([FORWARDER_ARG, file, JSON.stringify(req)])], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "ignore",
  });
  if ((await p.exited) !== 0) throw cniError(CNI_ERR.ioFailure, "portmap: cannot start the [::1] forwarder (setsid failed)");
  const end = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const st = readState(file);
    if (st?.error !== undefined) {
      rmSync(file, { force: true });
      throw cniError(CNI_ERR.conflict, `portmap: ${st.error}`);
    }
    if (st?.pid !== undefined) return;
    if (Date.now() > end) {
      throw cniError(CNI_ERR.tryAgainLater, `portmap: the [::1] forwarder did not start within ${START_TIMEOUT_MS} ms`);
    }
    await Bun.sleep(10);
  }
}

/** Stops the forwarder of one attachment; none is success. */
export async function stopForwarder(tag: string): Promise<void> {
  await stopFile(stateFile(tag));
}

async function stopFile(file: string): Promise<void> {
  const pid = livePid(file);
  if (pid !== undefined) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      /* already gone */
    }
    // its sockets must be closed before a re-ADD binds the same ports
    for (let i = 0; i < 200 && running(pid); i++) await Bun.sleep(10);
  }
  rmSync(file, { force: true });
}

/** Whether the attachment's forwarder is running. */
export function forwarderRunning(tag: string): boolean {
  return livePid(stateFile(tag)) !== undefined;
}

/** Stops the forwarders (of this namespace) whose owner tag starts with `prefix` and is not in `keep`. */
export async function stopForwardersExcept(prefix: string, keep: ReadonlySet<string>): Promise<string[]> {
  let names: string[] = [];
  try {
    names = readdirSync(FORWARDER_DIR);
  } catch {
    return [];
  }
  const mine = `${nsKey()}-`;
  const stopped: string[] = [];
  for (const n of names) {
    if (!n.startsWith(mine) || !n.endsWith(".json")) continue;
    const file = join(FORWARDER_DIR, n);
    const tag = readState(file)?.tag;
    if (tag === undefined || !tag.startsWith(prefix) || keep.has(tag)) continue;
    await stopFile(file);
    stopped.push(tag);
  }
  return stopped;
}

function writeState(file: string, st: StateFile): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(st));
  renameSync(tmp, file);
}

/** The forwarder process: `portmap-forwarder STATEFILE REQUEST-JSON`. Runs until SIGTERM or its container is gone. */
export async function forwarderMain(args: string[]): Promise<number> {
  const [file, json] = args;
  if (!file || !json) {
    console.error(`usage: ${FORWARDER_ARG} STATEFILE REQUEST-JSON`);
    return 2;
  }
  const req = JSON.parse(json) as Request;
  const proxy = new Loopback6Proxy(new Dataplane(), null);
  const forwards: LoopbackForward[] = req.forwards.map((f) => ({ ...f, target: IP.parse(f.target), strict: true }));
  try {
    await proxy.sync(forwards);
  } catch (e) {
    writeState(file, { tag: req.tag, error: (e as Error).message });
    return 1;
  }
  writeState(file, { tag: req.tag, pid: process.pid, forwards: req.forwards });
  return new Promise<number>((resolve) => {
    const quit = (code: number) => {
      clearInterval(watch);
      void proxy.stop().finally(() => resolve(code));
    };
    const watch = setInterval(() => {
      if (req.netns !== "" && !existsSync(req.netns)) {
        rmSync(file, { force: true });
        quit(0);
      }
    }, WATCH_MS);
    process.on("SIGTERM", () => quit(0));
  });
}
