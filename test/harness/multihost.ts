/**
 * A multi-host topology inside sandbox namespaces: an underlay "switch" namespace
 * (a bridge, 192.168.50.250/24, which also runs etcd and stands for the outside
 * world), and N host namespaces wired to it by veths (`eth0`, 192.168.50.<i>/24),
 * each with a real berthd (`--store etcd://... --host-name h<i> --advertise-addr
 * 192.168.50.<i>`), run with its network namespace switched to the host
 * (nsenter --net, so it reaches etcd on the underlay; the mount namespace stays
 * shared, so the container namespaces it makes are visible to the test).
 */
import { join } from "node:path";
import { type StartDaemonOptions, startDaemon, type TestDaemon } from "./daemon.ts";
import { startEtcd, type TestEtcd } from "./etcd.ts";
import { createSandbox, type Sandbox } from "./sandbox.ts";

export const UNDERLAY_PREFIX = "192.168.50";
export const UNDERLAY_SWITCH_IP = `${UNDERLAY_PREFIX}.250`;

function sh(...argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

export interface TestHost {
  name: string;
  sb: Sandbox;
  /** Underlay address. */
  ip: string;
  daemon: TestDaemon;
  /** SIGKILLs berthd (by PID): a crashed host agent. Containers keep running. */
  kill(): Promise<void>;
  /** Starts berthd again on the same state, socket and container prefix. */
  restart(): Promise<void>;
}

export interface Multihost {
  underlay: Sandbox;
  etcd: TestEtcd;
  hosts: TestHost[];
  /** Runs a command inside the underlay namespace. */
  underlayExec(...argv: string[]): { code: number; out: string; err: string };
  cleanup(): Promise<void>;
}

export interface MultihostOptions {
  hostTtl?: number;
  extra?: string[];
  /** Runs in each host's sandbox before its berthd starts (e.g. a dockerd); returns extra berthd arguments. */
  beforeDaemon?: (name: string, sb: Sandbox) => Promise<string[]>;
}

export async function createMultihost(n = 3, o: MultihostOptions = {}): Promise<Multihost> {
  const underlay = createSandbox("ul");
  const hosts: TestHost[] = [];
  let etcd: TestEtcd | undefined;
  const cleanup = async () => {
    for (const h of hosts) {
      // containers first (their namespaces and cgroups are the daemon's), then the daemon
      if (h.daemon.proc.exitCode === null) {
        const ids = h.daemon.cli("ps", "-a", "-q").out.trim().split("\n").filter(Boolean);
        if (ids.length > 0) h.daemon.cli("rm", "-f", ...ids);
        await h.daemon.stop().catch(() => undefined);
      }
    }
    await etcd?.stop();
    for (const h of hosts) await h.sb.cleanup();
    await underlay.cleanup();
  };
  try {
    sh("ip", "-n", underlay.host, "link", "add", "ulbr", "type", "bridge", "stp_state", "0", "forward_delay", "0");
    sh("ip", "-n", underlay.host, "addr", "add", `${UNDERLAY_SWITCH_IP}/24`, "dev", "ulbr");
    sh("ip", "-n", underlay.host, "link", "set", "ulbr", "up");
    etcd = await startEtcd({ ip: UNDERLAY_SWITCH_IP, netns: underlay.host, port: 2379 });
    for (let i = 1; i <= n; i++) {
      const name = `h${i}`;
      const sb = createSandbox(name);
      const ip = `${UNDERLAY_PREFIX}.${i}`;
      const port = `u${i}`;
      sh("ip", "-n", sb.host, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", underlay.host);
      sh("ip", "-n", sb.host, "addr", "add", `${ip}/24`, "dev", "eth0");
      sh("ip", "-n", sb.host, "link", "set", "eth0", "up");
      sh("ip", "-n", sb.host, "route", "add", "default", "via", UNDERLAY_SWITCH_IP);
      sh("ip", "-n", underlay.host, "link", "set", port, "master", "ulbr");
      sh("ip", "-n", underlay.host, "link", "set", port, "up");
      const args = [
        "--store", etcd.url, "--host-name", name, "--advertise-addr", ip, "--host-ttl", String(o.hostTtl ?? 3),
        "--dns-upstream", `${UNDERLAY_SWITCH_IP}:53`, ...(o.extra ?? []), ...(o.beforeDaemon ? await o.beforeDaemon(name, sb) : []),
      ];
      const so: StartDaemonOptions = { argvPrefix: ["nsenter", `--net=/run/netns/${sb.host}`, "--"] };
      const h: TestHost = {
        name,
        sb,
        ip,
        daemon: await startDaemon(sb, args, so),
        async kill() {
          h.daemon.proc.kill("SIGKILL");
          await h.daemon.proc.exited;
        },
        async restart() {
          h.daemon = await startDaemon(sb, args, { ...so, netnsPrefix: h.daemon.netnsPrefix });
        },
      };
      hosts.push(h);
    }
  } catch (e) {
    await cleanup();
    throw e;
  }
  return {
    underlay,
    etcd,
    hosts,
    underlayExec(...argv: string[]) {
      const r = Bun.spawnSync(["ip", "netns", "exec", underlay.host, ...argv], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ETCDCTL_API: "3" } });
      return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
    },
    cleanup,
  };
}

/** State dir of a host's daemon (for logs in failures). */
export function stateDirOf(h: TestHost): string {
  return join(h.sb.stateDir, "state");
}
