/**
 * podman 4.3 (CNI backend, libcni) drives Berth's compiled CNI plugins (dist/cni):
 * a container on a Berth network publishes a port that an external client reaches
 * with its source address preserved, and a second container reaches the first.
 *
 * Set-up as in shared/reference/real-clients.md section C: a holder process in a
 * sandbox namespace with its own mount namespace (cgroup hierarchies re-mounted
 * without the cgroup2 "unified" one, for crun), every podman command run through
 * `nsenter -t HOLDER -m -n`, configuration through CONTAINERS_CONF /
 * CONTAINERS_STORAGE_CONF, default_ulimits, cgroupfs, an imported busybox rootfs.
 * Global state stays private: /run and /var/lib are tmpfs inside the holder's
 * mount namespace (podman's netns files, libcni's cache, crun state), storage
 * lives in the sandbox's state dir, and containers run with --cgroups=disabled so
 * no cgroup directory is created anywhere.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { addExternalClient, assertRootUntouched, createSandbox, nftJson, type Sandbox, tcpRoundTrip } from "../harness/sandbox.ts";

assertRootUntouched();

const REPO = join(import.meta.dir, "..", "..");
const PLUGIN_DIR = join(REPO, "dist", "cni");
const SUBNET = "10.89.0";

function sh(argv: string[], timeoutMs = 60_000): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: timeoutMs });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

const HOLDER = `set -e
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=755 tmpfs /var/lib
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do mkdir -p /sys/fs/cgroup/$c; mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c || true; done
mkdir -p /sys/fs/cgroup/systemd; mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
echo ready
exec sleep infinity
`;

/** A busybox root filesystem (httpd with a CGI that prints the client address, wget). */
function busyboxTar(dir: string): string {
  const root = join(dir, "rootfs");
  for (const d of ["bin", "www/cgi-bin", "etc", "tmp", "proc", "sys", "dev"]) mkdirSync(join(root, d), { recursive: true });
  const r = sh(["cp", "/bin/busybox", join(root, "bin", "busybox")]);
  if (r.code !== 0) throw new Error(`busybox: ${r.err}`);
  for (const a of ["sh", "httpd", "wget", "sleep", "cat", "echo", "ip", "hostname"]) symlinkSync("busybox", join(root, "bin", a));
  writeFileSync(join(root, "www", "index.html"), "hello from busybox\n");
  writeFileSync(join(root, "www", "cgi-bin", "ip"), '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "from:$REMOTE_ADDR"\n');
  chmodSync(join(root, "www", "cgi-bin", "ip"), 0o755);
  const tar = join(dir, "busybox.tar");
  const t = sh(["tar", "-C", root, "-cf", tar, "."]);
  if (t.code !== 0) throw new Error(`tar: ${t.err}`);
  return tar;
}

describe("podman (CNI backend) with Berth's plugins", () => {
  let sb: Sandbox;
  let ext: { ns: string; hostIP: string; clientIP: string };
  let holder: Subprocess<"ignore", "pipe", "pipe"> | undefined;
  let podmanEnv: string[];
  let s1ip = "";
  let s1id = "";

  const podman = (args: string[], timeoutMs = 60_000) => {
    if (!holder) throw new Error("no holder process");
    return sh(["nsenter", "-t", String(holder.pid), "-m", "-n", "env", ...podmanEnv, "podman", ...args], timeoutMs);
  };

  beforeAll(async () => {
    const which = sh(["sh", "-c", "command -v podman && command -v crun"]);
    if (which.code !== 0) throw new Error("podman and crun are needed: run scripts/setup.sh --test");
    // the plugins podman runs are the compiled multi-call binary's links
    const build = sh(["bash", join(REPO, "scripts", "build.sh")], 300_000);
    if (build.code !== 0) throw new Error(`scripts/build.sh failed: ${build.err || build.out}`);

    sb = createSandbox("pm");
    ext = addExternalClient(sb, "192.0.2.1/24", "192.0.2.2/24");
    const dir = sb.stateDir;
    const netd = join(dir, "net.d");
    mkdirSync(netd, { recursive: true });
    mkdirSync(join(dir, "tmp"), { recursive: true });
    writeFileSync(
      join(dir, "containers.conf"),
      `[containers]
default_ulimits = ["nofile=20000:20000","nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "${join(dir, "tmp")}"
runtime = "crun"
[network]
network_backend = "cni"
cni_plugin_dirs = ["${PLUGIN_DIR}"]
network_config_dir = "${netd}"
`,
    );
    writeFileSync(join(dir, "storage.conf"), `[storage]\ndriver = "overlay"\ngraphroot = "${join(dir, "root")}"\nrunroot = "${join(dir, "runroot")}"\n`);
    writeFileSync(
      join(netd, "berthnet.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "berthnet",
        plugins: [
          {
            type: "bridge",
            bridge: "bpm0",
            isGateway: true,
            hairpinMode: true,
            ipam: { type: "host-local", dataDir: join(dir, "ipam"), ranges: [[{ subnet: `${SUBNET}.0/24`, gateway: `${SUBNET}.1` }]], routes: [{ dst: "0.0.0.0/0" }] },
          },
          { type: "portmap", capabilities: { portMappings: true } },
          { type: "firewall" },
        ],
      }),
    );
    writeFileSync(join(dir, "holder.sh"), HOLDER);
    podmanEnv = [`CONTAINERS_CONF=${join(dir, "containers.conf")}`, `CONTAINERS_STORAGE_CONF=${join(dir, "storage.conf")}`];
    const h = Bun.spawn(["ip", "netns", "exec", sb.host, "sh", join(dir, "holder.sh")], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    sb.track(h);
    holder = h;
    const reader = h.stdout.getReader();
    const first = await Promise.race([reader.read(), Bun.sleep(5000).then(() => undefined)]);
    reader.releaseLock();
    if (!first || first.done || !new TextDecoder().decode(first.value).includes("ready")) throw new Error("holder did not start");
    const imp = podman(["import", busyboxTar(dir), "localhost/berth-busybox:latest"]);
    if (imp.code !== 0) throw new Error(`podman import: ${imp.err}`);
  }, 360_000);

  afterAll(async () => {
    if (holder) {
      podman(["rm", "-af", "-t", "0"]);
      podman(["rmi", "-af"]);
    }
    await sb?.cleanup();
  }, 120_000);

  test("podman validates Berth's plugins (VERSION) and lists the network", () => {
    const r = podman(["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    expect(r.err).not.toContain("Error validating CNI config");
    expect(r.out.split("\n")).toContain("berthnet bridge");
  });

  test("a container publishes a port: an external client reaches it with its own address", async () => {
    const run = podman(["run", "-d", "--name", "s1", "--network", "berthnet", "-p", "8089:80", "--cgroups=disabled", "localhost/berth-busybox:latest", "httpd", "-f", "-p", "80", "-h", "/www"]);
    expect(run.err).toBe("");
    expect(run.code).toBe(0);
    s1id = run.out.trim();
    s1ip = podman(["inspect", "s1", "--format", "{{.NetworkSettings.Networks.berthnet.IPAddress}}"]).out.trim();
    expect(s1ip.startsWith(`${SUBNET}.`)).toBe(true);
    let reply: string | undefined;
    for (let i = 0; i < 20 && !reply; i++) {
      reply = tcpRoundTrip(ext.ns, ext.hostIP, 8089, "GET /cgi-bin/ip HTTP/1.0\r\n\r\n", 1500);
      if (!reply) await Bun.sleep(200);
    }
    expect(reply).toContain("200 OK");
    expect(reply).toMatch(/from:\[?(::ffff:)?192\.0\.2\.2\]?/);
  }, 60_000);

  test("Berth's portmap holds the mapping as one map element owned by the container", () => {
    const elems = nftJson(sb.host, "list", "map", "inet", "berth-portmap", "dnat4").nftables.flatMap((o) => (o.map as { elem?: unknown[] } | undefined)?.elem ?? []);
    expect(elems).toHaveLength(1);
    const text = JSON.stringify(elems[0]);
    expect(text).toContain(`berthnet/${s1id}/eth0`);
    expect(text).toContain(s1ip);
  });

  test("a second container reaches the first over the Berth bridge", () => {
    const r = podman(["run", "--rm", "--name", "c2", "--network", "berthnet", "--cgroups=disabled", "localhost/berth-busybox:latest", "wget", "-qO-", `http://${s1ip}/cgi-bin/ip`]);
    expect(r.err).toBe("");
    expect(r.out).toMatch(new RegExp(`from:\\[?(::ffff:)?${SUBNET.replaceAll(".", "\\.")}\\.\\d+\\]?`));
    expect(r.out).not.toContain(s1ip);
  }, 60_000);

  test("podman rm runs DEL: the published port, the map element and the veth are gone", () => {
    const r = podman(["rm", "-f", "-t", "0", "s1"]);
    expect(r.code).toBe(0);
    expect(tcpRoundTrip(ext.ns, ext.hostIP, 8089, "GET / HTTP/1.0\r\n\r\n", 800)).toBeUndefined();
    expect(JSON.stringify(nftJson(sb.host, "list", "ruleset"))).not.toContain(s1id);
    const veths = JSON.parse(sh(["ip", "-n", sb.host, "-j", "link", "show", "master", "bpm0"]).out || "[]") as unknown[];
    expect(veths).toEqual([]);
  }, 60_000);
});
