/**
 * A throwaway single-member etcd for tests: a temp data dir, free ports, on
 * 127.0.0.1 or on an address inside a named namespace (`ip netns exec`).
 * Stopped by its PID (SIGKILL for a crash, SIGTERM otherwise); `restart` starts
 * it again on the same data dir and address.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { RUN_PREFIX } from "./sandbox.ts";

export interface TestEtcd {
  /** "etcd://IP:PORT" */
  url: string;
  ip: string;
  port: number;
  proc(): Subprocess;
  logs(): string;
  kill(signal?: "SIGKILL" | "SIGTERM"): Promise<void>;
  restart(): Promise<void>;
  /** Stops it and removes its data dir. */
  stop(): Promise<void>;
}

/** A TCP port free on the loopback right now (the kernel's choice). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Whether etcd answers /health (from inside `netns` when given: the test process cannot reach it otherwise). */
async function healthy(ip: string, port: number, netns: string | undefined): Promise<boolean> {
  if (!netns) {
    return fetch(`http://${ip}:${port}/health`, { signal: AbortSignal.timeout(500) })
      .then((r) => r.ok)
      .catch(() => false);
  }
  const r = Bun.spawnSync(["ip", "netns", "exec", netns, "etcdctl", "--endpoints", `http://${ip}:${port}`, "--dial-timeout", "500ms", "endpoint", "health"], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  return r.exitCode === 0;
}

export async function startEtcd(o: { ip?: string; netns?: string; port?: number } = {}): Promise<TestEtcd> {
  const ip = o.ip ?? "127.0.0.1";
  const port = o.port ?? (await freePort());
  const peerPort = o.netns ? port + 1 : await freePort();
  const dir = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}etcd-`));
  const argv = [
    "etcd",
    "--name", "t",
    "--data-dir", join(dir, "data"),
    "--listen-client-urls", `http://${ip}:${port}`,
    "--advertise-client-urls", `http://${ip}:${port}`,
    "--listen-peer-urls", `http://${ip}:${peerPort}`,
    "--initial-advertise-peer-urls", `http://${ip}:${peerPort}`,
    "--initial-cluster", `t=http://${ip}:${peerPort}`,
    "--log-level", "warn",
    "--logger", "zap",
  ];
  let proc: Subprocess<"ignore", "ignore", "pipe"> | undefined;
  let logText = "";
  const spawn = async () => {
    proc = Bun.spawn(o.netns ? ["ip", "netns", "exec", o.netns, ...argv] : argv, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    const p = proc;
    void (async () => {
      const dec = new TextDecoder();
      for await (const c of p.stderr as ReadableStream<Uint8Array>) logText += dec.decode(c, { stream: true });
    })();
    for (let i = 0; i < 200; i++) {
      if (p.exitCode !== null) throw new Error(`etcd exited: ${logText}`);
      const ok = await healthy(ip, port, o.netns);
      if (ok) return;
      await Bun.sleep(50);
    }
    p.kill("SIGKILL");
    throw new Error(`etcd did not come up on ${ip}:${port}: ${logText}`);
  };
  const kill = async (signal: "SIGKILL" | "SIGTERM" = "SIGTERM") => {
    if (!proc || proc.exitCode !== null) return;
    proc.kill(signal);
    await proc.exited;
  };
  await spawn();
  return {
    url: `etcd://${ip}:${port}`,
    ip,
    port,
    proc: () => proc as Subprocess,
    logs: () => logText,
    kill,
    restart: spawn,
    async stop() {
      await kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
