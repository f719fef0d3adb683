/**
 * A real dockerd (Debian docker.io 20.10) + containerd + runc for one test file,
 * inside a sandbox's host namespace, following shared/reference/real-clients.md
 * sections A and B:
 *
 *  - `ip netns exec HOST` gives a private mount namespace (slave to the root's,
 *    so nothing propagates back); in it the cgroup v1 hierarchies are mounted
 *    again (inns.sh: `ip netns exec` hides them) and a tmpfs covers /run, so
 *    the state dockerd/containerd/runc write to hard-coded paths
 *    (/run/containerd/s, /run/containerd/runc, /run/docker/libnetwork, ...)
 *    lives and dies with that namespace;
 *  - /run/docker/plugins is a bind mount of this run's plugin directory: the
 *    only plugins dockerd sees are the sockets put there (Berth's);
 *  - containerd starts from the same shell, so it shares dockerd's mount
 *    namespace (it must see the overlay rootfs dockerd mounts), and dockerd gets
 *    `--containerd` explicitly (never a system containerd);
 *  - every data/exec root, socket and pid file is in a temp dir named with the
 *    test run's prefix (cleanStale removes it after a crash);
 *  - containers go under a cgroup parent named with the run's prefix, removed
 *    from every hierarchy at stop.
 *
 * `--iptables=false`: dockerd's iptables mode sets the FORWARD policy to DROP
 * and turns on br_netfilter in the namespace (pitfall 6); then bridged traffic
 * between two containers on a Berth bridge passes through iptables' FORWARD
 * chain and is dropped there, whatever Berth's own nftables table accepts (a
 * drop in any base chain at a hook is final, and Berth never edits tables it
 * does not own, such as DOCKER-USER). Remote-driver networks do not need
 * dockerd's iptables rules: Berth does NAT, isolation and port publishing.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { pidAlive, RUN_PREFIX, type Sandbox } from "./sandbox.ts";

export interface TestDockerd {
  /** The temp dir holding everything (data, exec root, sockets, logs). */
  dir: string;
  /** Put plugin sockets here: dockerd sees it as /run/docker/plugins. */
  pluginDir: string;
  /** unix:///.../docker.sock */
  dockerHost: string;
  cgroupParent: string;
  /** Runs the docker CLI against this daemon. */
  docker(...args: string[]): { code: number; out: string; err: string };
  /** Imports a busybox image (from /bin/busybox) as `name`; has /www/index.html with `marker`. */
  importBusybox(name: string, marker: string): void;
  log(): string;
  stop(): Promise<void>;
}

const CGROUP_CONTROLLERS = ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"];

const START_SCRIPT = `set -e
D="$1"
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
for c in ${CGROUP_CONTROLLERS.join(" ")}; do mkdir -p /sys/fs/cgroup/$c; mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c; done
mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/docker/plugins
mount --bind "$D/plugins" /run/docker/plugins
containerd -c "$D/containerd.toml" >"$D/containerd.log" 2>&1 &
echo $! >"$D/containerd.pid"
i=0; while [ ! -S "$D/containerd/containerd.sock" ]; do i=$((i+1)); [ $i -gt 200 ] && exit 97; sleep 0.05; done
exec dockerd --config-file "$D/daemon.json" -H "unix://$D/docker.sock" --data-root "$D/data" --exec-root "$D/exec" \\
  --pidfile "$D/docker.pid" --containerd "$D/containerd/containerd.sock" --storage-driver overlay2 \\
  --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "/$2" --iptables=false --ip6tables=false --bridge=none \\
  --userland-proxy=false --log-level debug
`;

function sh(argv: string[], env?: Record<string, string>): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", ...(env ? { env: { ...process.env, ...env } } : {}) });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}


async function waitGone(pid: number, ms: number): Promise<boolean> {
  for (let t = 0; t < ms; t += 50) {
    if (!pidAlive(pid)) return true;
    await Bun.sleep(50);
  }
  return !pidAlive(pid);
}

function mountNs(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** The docker CLI: /usr/local/bin/docker when present (first in PATH), else Debian's /usr/bin/docker. */
export function dockerCli(): string | undefined {
  for (const p of ["/usr/local/bin/docker", "/usr/bin/docker"]) if (existsSync(p)) return p;
  return undefined;
}

export function haveDockerd(): boolean {
  return ["dockerd", "containerd", "runc", "containerd-shim-runc-v2"].every((c) => sh(["sh", "-c", `command -v ${c}`]).code === 0);
}

export async function startDockerd(sb: Sandbox): Promise<TestDockerd> {
  const dir = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}dockerd-`));
  const pluginDir = join(dir, "plugins");
  mkdirSync(pluginDir);
  mkdirSync(join(dir, "containerd"));
  const cgroupParent = `${RUN_PREFIX}docker`;
  writeFileSync(join(dir, "daemon.json"), "{}\n");
  writeFileSync(
    join(dir, "containerd.toml"),
    `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${dir}/containerd/containerd.sock"
`,
  );
  const cli = dockerCli();
  if (!cli) throw new Error("no docker CLI");
  const dockerHost = `unix://${join(dir, "docker.sock")}`;
  const logPath = join(dir, "dockerd.log");
  const logFd = openSync(logPath, "a");
  const proc: Subprocess = Bun.spawn(["ip", "netns", "exec", sb.host, "sh", "-c", START_SCRIPT, "sh", dir, cgroupParent], {
    stdout: logFd,
    stderr: logFd,
    stdin: "ignore",
  });
  closeSync(logFd);
  const docker = (...args: string[]) => sh([cli, ...args], { DOCKER_HOST: dockerHost });
  const log = () => {
    try {
      return readFileSync(logPath, "utf8");
    } catch {
      return "";
    }
  };
  const started = Date.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`dockerd exited (${proc.exitCode}): ${log().slice(-3000)}`);
    if (existsSync(join(dir, "docker.sock")) && docker("version", "--format", "{{.Server.Version}}").code === 0) break;
    if (Date.now() - started > 30_000) throw new Error(`dockerd did not start: ${log().slice(-3000)}`);
    await Bun.sleep(100);
  }
  // dockerd (the exec'd start script) is now surely inside its private mount namespace
  const ownNs = mountNs(process.pid);
  const dockerdNs = mountNs(proc.pid);
  const privateNs = dockerdNs !== undefined && dockerdNs !== ownNs ? dockerdNs : undefined;
  if (!privateNs) throw new Error("dockerd is not in a private mount namespace");

  const stop = async () => {
    // containers first (their shims exit with them), then the networks they used
    const ids = docker("ps", "-aq").out.split("\n").filter(Boolean);
    if (ids.length > 0) docker("rm", "-f", ...ids);
    const nets = docker("network", "ls", "-q", "--filter", "type=custom").out.split("\n").filter(Boolean);
    if (nets.length > 0) docker("network", "rm", ...nets);
    proc.kill("SIGTERM");
    if (!(await waitGone(proc.pid, 15_000))) proc.kill("SIGKILL");
    await proc.exited;
    const cpid = Number(readFileSync(join(dir, "containerd.pid"), "utf8").trim());
    if (cpid > 0 && pidAlive(cpid)) {
      process.kill(cpid, "SIGTERM");
      if (!(await waitGone(cpid, 10_000))) process.kill(cpid, "SIGKILL");
    }
    // anything still in dockerd's private mount namespace was started by these daemons (shims): stop it by pid
    for (const p of readdirSync("/proc")) {
      const pid = Number(p);
      if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
      if (mountNs(pid) === privateNs && privateNs !== ownNs) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* gone */
          }
          await waitGone(pid, 2000);
      }
    }
    for (const c of [...CGROUP_CONTROLLERS, "systemd", "unified"]) removeCgroupDir(join("/sys/fs/cgroup", c, cgroupParent));
    rmSync(dir, { recursive: true, force: true });
  };

  const importBusybox = (name: string, marker: string) => {
    const root = join(dir, "rootfs");
    for (const d of ["bin", "etc", "www", "tmp", "proc", "sys", "dev"]) mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, "bin", "busybox"), readFileSync("/bin/busybox"));
    chmodSync(join(root, "bin", "busybox"), 0o755);
    const applets = sh(["/bin/busybox", "--list"]).out.split("\n").filter((a) => a && a !== "busybox");
    for (const a of applets) if (!existsSync(join(root, "bin", a))) symlinkSync("busybox", join(root, "bin", a));
    writeFileSync(join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
    writeFileSync(join(root, "etc", "group"), "root:x:0:\nnogroup:x:65534:\n");
    writeFileSync(join(root, "www", "index.html"), `${marker}\n`);
    const tar = join(dir, "busybox-rootfs.tar");
    const t = sh(["tar", "-C", root, "-cf", tar, "."]);
    if (t.code !== 0) throw new Error(`tar: ${t.err}`);
    const r = docker("import", "--change", "CMD [\"/bin/sh\"]", tar, name);
    if (r.code !== 0) throw new Error(`docker import: ${r.err}`);
    rmSync(root, { recursive: true, force: true });
  };

  return { dir, pluginDir, dockerHost, cgroupParent, docker, importBusybox, log, stop };
}

function removeCgroupDir(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroupDir(join(dir, e.name));
  for (let i = 0; i < 40; i++) {
    if (sh(["rmdir", dir]).code === 0 || !existsSync(dir)) return;
    Bun.sleepSync(50);
  }
}
