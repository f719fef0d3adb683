/** Starts a real berthd process for a sandbox and runs the real berth CLI against it. */
import { join } from "node:path";
import type { Subprocess } from "bun";
import { RUN_PREFIX, type Sandbox, uniqueName } from "./sandbox.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");

export interface TestDaemon {
  socket: string;
  proc: Subprocess;
  netnsPrefix: string;
  cgroupParent: string;
  /** Runs `berth ARGS` and returns exit code and output. */
  cli(...args: string[]): { code: number; out: string; err: string };
  stop(): Promise<void>;
}

export async function startDaemon(sb: Sandbox, extra: string[] = []): Promise<TestDaemon> {
  const socket = join(sb.stateDir, "berth.sock");
  const netnsPrefix = uniqueName("d");
  const cgroupParent = `${RUN_PREFIX}dcg${netnsPrefix.slice(-2)}`;
  const proc = Bun.spawn(
    [process.execPath, MAIN, "berthd", "--socket", socket, "--state-dir", join(sb.stateDir, "state"), "--host-netns", sb.host,
      "--netns-prefix", netnsPrefix, "--cgroup-parent", cgroupParent, "--default-pool", "10.124.0.0/16:24", ...extra],
    { stdout: "pipe", stderr: "pipe" },
  );
  sb.track(proc);
  const cli = (...args: string[]) => {
    const r = Bun.spawnSync([process.execPath, MAIN, "--socket", socket, ...args], { stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
  };
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`berthd exited: ${await new Response(proc.stderr as ReadableStream).text()}`);
    if (cli("network", "ls", "-q").code === 0) break;
    if (i > 100) throw new Error(`berthd did not start: ${cli("network", "ls", "-q").err}`);
    await Bun.sleep(50);
  }
  return {
    socket,
    proc,
    netnsPrefix,
    cgroupParent,
    cli,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
