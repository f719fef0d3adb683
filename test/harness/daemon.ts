/** Starts a real berthd process for a sandbox and runs the real berth CLI against it. */
import { join } from "node:path";
import type { Subprocess } from "bun";
import { removeCgroupTree, RUN_PREFIX, type Sandbox, uniqueName } from "./sandbox.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");

export interface TestDaemon {
  socket: string;
  proc: Subprocess;
  netnsPrefix: string;
  cgroupParent: string;
  /** Everything berthd wrote to stderr so far (drained continuously so the pipe never fills). */
  logs(): string;
  /** Runs `berth ARGS` and returns exit code and output. */
  cli(...args: string[]): { code: number; out: string; err: string };
  /** One API call on the daemon's socket; throws unless 2xx. */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  stop(): Promise<void>;
}

export interface StartDaemonOptions {
  /** Runs berthd under this command (e.g. nsenter --net=... so that it reaches addresses inside the sandbox). */
  argvPrefix?: string[];
  /** Re-use a previous daemon's container netns prefix (and so cgroup parent): a restart of the same host. */
  netnsPrefix?: string;
}

export async function startDaemon(sb: Sandbox, extra: string[] = [], o: StartDaemonOptions = {}): Promise<TestDaemon> {
  const socket = join(sb.stateDir, "berth.sock");
  const netnsPrefix = o.netnsPrefix ?? uniqueName("d");
  const cgroupParent = `${RUN_PREFIX}dcg${netnsPrefix.slice(-2)}`;
  const proc = Bun.spawn(
    [...(o.argvPrefix ?? []), process.execPath, MAIN, "berthd", "--socket", socket, "--state-dir", join(sb.stateDir, "state"), "--host-netns", sb.host,
      "--netns-prefix", netnsPrefix, "--cgroup-parent", cgroupParent, "--default-pool", "10.124.0.0/16:24",
      // no Docker plugin socket unless asked for: the default path is the real /run/docker/plugins
      ...(extra.includes("--plugin-socket") ? [] : ["--plugin-socket", ""]),
      // the CNI operation log inside the sandbox, not the real /run/berth
      ...(extra.includes("--cni-oplog") ? [] : ["--cni-oplog", join(sb.stateDir, "cni-ops.log")]), ...extra],
    { stdout: "ignore", stderr: "pipe" },
  );
  sb.track(proc);
  let logText = "";
  const drained = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) logText += dec.decode(chunk, { stream: true });
  })();
  const cli = (...args: string[]) => {
    const r = Bun.spawnSync([process.execPath, MAIN, "--socket", socket, ...args], { stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
  };
  // a daemon that never came up must not outlive the failed test
  const giveUp = async (msg: string): Promise<never> => {
    proc.kill("SIGKILL");
    await proc.exited;
    throw new Error(msg);
  };
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) {
      await drained;
      throw new Error(`berthd exited: ${logText}`);
    }
    if (cli("network", "ls", "-q").code === 0) break;
    if (i > 100) await giveUp(`berthd did not start: ${cli("network", "ls", "-q").err}`);
    await Bun.sleep(50);
  }
  return {
    socket,
    proc,
    netnsPrefix,
    cgroupParent,
    cli,
    api: <T>(method: string, path: string, body?: unknown) => socketApi<T>(socket, method, path, body),
    logs: () => logText,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      await drained;
      // the daemon's cgroup parent outlives it (as in production); tests remove it with whatever
      // containers the test left in it (their processes are killed)
      for (const c of ["memory", "cpu", "pids", "cpuacct", "blkio", ""]) removeCgroupTree(join("/sys/fs/cgroup", c, cgroupParent));
    },
  };
}

/** One JSON request to berthd's API on its unix socket; a non-2xx answer throws with its body. */
export async function socketApi<T>(socket: string, method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(`http://berthd${path}`, {
    unix: socket,
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } }),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}
