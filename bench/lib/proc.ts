/** Process helpers for the benchmarks: timed spawns, namespaces, memory, the tcpbench helper. */
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Run {
  code: number;
  out: string;
  err: string;
  /** Wall time of spawn + wait, in ms. */
  ms: number;
}

export function sh(argv: string[], o: { stdin?: string; env?: Record<string, string> } = {}): Run {
  const t0 = performance.now();
  const r = Bun.spawnSync(argv, {
    stdin: o.stdin === undefined ? "ignore" : new TextEncoder().encode(o.stdin),
    stdout: "pipe",
    stderr: "pipe",
    ...(o.env ? { env: { ...process.env, ...o.env } } : {}),
  });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString(), ms: performance.now() - t0 };
}

export function must(argv: string[], o: { stdin?: string; env?: Record<string, string> } = {}): Run {
  const r = sh(argv, o);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: exit ${r.code}: ${(r.err || r.out).trim()}`);
  return r;
}

/** `ip -n NS ...` that must succeed. */
export function ipn(ns: string, ...args: string[]): string {
  return must(["ip", "-n", ns, ...args]).out;
}

/** Resident set size of a process in KiB. */
export function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN);
}

export function loadAverage(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

export function haveCommand(cmd: string): boolean {
  return cmd.startsWith("/") ? existsSync(cmd) : sh(["sh", "-c", `command -v ${cmd}`]).code === 0;
}

/**
 * Runs a benchmark worker (a bun script) inside a namespace, as a runtime inside
 * that host would, and returns its JSON output (the worker prints one JSON value
 * on stdout; progress on stderr is passed through).
 */
export async function runWorker<T>(ns: string, script: string, job: unknown): Promise<T> {
  const p = Bun.spawn(["ip", "netns", "exec", ns, process.execPath, script, JSON.stringify(job)], { stdout: "pipe", stderr: "inherit" });
  const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  if (code !== 0) throw new Error(`worker ${script} failed (exit ${code})`);
  return JSON.parse(out) as T;
}

const TCPBENCH_SRC = join(import.meta.dir, "..", "tools", "tcpbench.c");

/** Compiles bench/tools/tcpbench.c (a C connect/RR client and accept server) once per source change. */
export function tcpbench(): string {
  const dir = join(tmpdir(), "berth-bench-tools");
  mkdirSync(dir, { recursive: true });
  const bin = join(dir, "tcpbench");
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(TCPBENCH_SRC).mtimeMs) {
    must(["gcc", "-O2", "-Wall", "-o", bin, TCPBENCH_SRC]);
  }
  return bin;
}

export interface ConnectStats {
  rate: number;
  p50: number;
  p90: number;
  p99: number;
  failures: number;
}

/** `tcpbench connect` from a namespace: COUNT sequential TCP connects (RST close). */
export function tcpConnect(ns: string, ip: string, port: number, count: number): ConnectStats {
  const r = must(["ip", "netns", "exec", ns, tcpbench(), "connect", ip, String(port), String(count)]);
  const num = (k: string) => Number(new RegExp(`${k}=([0-9.]+)`).exec(r.out)?.[1] ?? Number.NaN);
  return { rate: num("rate"), p50: num("p50_us"), p90: num("p90_us"), p99: num("p99_us"), failures: num("failures") };
}

/** Starts `tcpbench server` (accept and close) in a namespace; the caller kills it by the returned process. */
export async function tcpServer(ns: string, ip: string, port: number): Promise<Bun.Subprocess> {
  const p = Bun.spawn(["ip", "netns", "exec", ns, tcpbench(), "server", ip, String(port)], { stdout: "ignore", stderr: "ignore" });
  for (let i = 0; i < 100; i++) {
    const ss = sh(["ip", "netns", "exec", ns, "ss", "-Hltn", `sport = :${port}`]);
    if (ss.out.trim() !== "") return p;
    await Bun.sleep(20);
  }
  p.kill("SIGKILL");
  throw new Error(`tcpbench server in ${ns} did not listen on ${port}`);
}

/**
 * One iperf3 TCP run (1 stream) from `ns`; returns received bits/s. Unlike the test
 * harness's helper it never hangs: connect timeout 3 s, whole run killed after
 * seconds + 15 s. "Server busy" / not listening yet is retried a few times.
 */
export async function iperf(ns: string, host: string, port: number, seconds: number, omit = 1): Promise<number> {
  let last = "";
  for (let attempt = 0; attempt < 12; attempt++) {
    const r = Bun.spawnSync(
      ["ip", "netns", "exec", ns, "iperf3", "-c", host, "-p", String(port), "-t", String(seconds), "-O", String(omit), "-J", "--connect-timeout", "3000"],
      { stdout: "pipe", stderr: "pipe", timeout: (seconds + 15) * 1000 },
    );
    let j: { error?: string; end?: { sum_received?: { bits_per_second: number } } } = {};
    try {
      j = JSON.parse(r.stdout.toString());
    } catch {
      /* no JSON: an error below */
    }
    const bps = j.end?.sum_received?.bits_per_second;
    if (r.exitCode === 0 && bps !== undefined) return bps;
    last = j.error ?? (r.stderr.toString().trim() || `exit ${r.exitCode ?? "killed"}`);
    if (!/busy|refused/i.test(last)) break;
    await Bun.sleep(250);
  }
  throw new Error(`iperf3 from ${ns} to ${host}:${port} failed: ${last}`);
}
