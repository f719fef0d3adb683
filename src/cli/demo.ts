/**
 * `berth demo`: a live tour on the embedded (SQLite) default, entirely inside a
 * sandbox "host" namespace so the real host's network is untouched.
 *
 * It starts berthd for the sandbox, adds an "outside" namespace on an uplink,
 * creates a public and an internal bridge network, runs busybox containers on
 * them (plus one on none and one on host), publishes a port, and prints a
 * connectivity matrix checked against what isolation promises. Everything is
 * removed on exit, also on Ctrl-C.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Cgroups } from "../dataplane/cgroup.ts";
import { Dataplane } from "../dataplane/dataplane.ts";
import { IPNet } from "../net/index.ts";
import { Client } from "./client.ts";
import type { ContainerJson } from "./commands.ts";

const BUSYBOX = ["/bin/busybox", "/usr/bin/busybox"].find((p) => existsSync(p)) ?? "busybox";
const UPLINK_HOST = IPNet.parse("192.0.2.1/24");
const UPLINK_OUTSIDE = IPNet.parse("192.0.2.2/24");

interface Target {
  name: string;
  ip: string | undefined;
}

export async function demoCommand(_argv: string[]): Promise<number> {
  const tag = `bdemo${process.pid.toString(36)}`;
  const dp = new Dataplane();
  const hostNs = `${tag}-host`;
  const outsideNs = `${tag}-outside`;
  const dir = mkdtempSync(join(tmpdir(), `${tag}-`));
  const socket = join(dir, "berth.sock");
  let daemon: Subprocess | undefined;
  let cleaned = false;
  const c = new Client(socket);
  const names: string[] = [];

  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    console.log("\n== cleaning up");
    for (const n of names.reverse()) await c.call("DELETE", `/berth/containers/${n}?force=1`).catch(() => undefined);
    for (const n of ["frontend", "backend"]) await c.call("DELETE", `/networks/${n}`).catch(() => undefined);
    if (daemon) {
      daemon.kill("SIGTERM");
      await daemon.exited;
    }
    await dp.netnsDelete(outsideNs).catch(() => undefined);
    await dp.netnsDelete(hostNs).catch(() => undefined);
    for (const ns of dp.netnsList()) if (ns.startsWith(`${tag}-`)) await dp.netnsDelete(ns).catch(() => undefined);
    new Cgroups({ parent: `${tag}-cg` }).removeParent();
    rmSync(dir, { recursive: true, force: true });
    console.log("   removed the sandbox namespaces, cgroups and state; the host network was never touched");
  };
  const onSignal = () => {
    void cleanup().then(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    console.log(`== sandbox: host namespace ${hostNs}, an "outside" machine ${outsideNs} on uplink 192.0.2.0/24`);
    await dp.netnsCreate(hostNs);
    await dp.netnsCreate(outsideNs);
    await dp.apply(
      dp.batch(hostNs).addVeth("uplink0", "eth0", { peerNetns: outsideNs }).addAddress("uplink0", UPLINK_HOST).setUp("uplink0"),
    );
    await dp.apply(dp.batch(outsideNs).addAddress("eth0", UPLINK_OUTSIDE).setUp("eth0"));

    console.log("== starting berthd (embedded SQLite store) for the sandbox");
    daemon = Bun.spawn(
      [process.execPath, join(import.meta.dir, "..", "main.ts"), "berthd", "--socket", socket, "--state-dir", join(dir, "state"),
        "--host-netns", hostNs, "--netns-prefix", `${tag}-c`, "--cgroup-parent", `${tag}-cg`, "--default-pool", "10.77.0.0/16:24",
        "--plugin-socket", "", "--cni-oplog", join(dir, "cni-ops.log")],
      { stdout: "inherit", stderr: "pipe" },
    );
    await waitForSocket(c, daemon);

    console.log("== networks");
    await c.call("POST", "/networks/create", { Name: "frontend", IPAM: { Config: [{ Subnet: "10.88.1.0/24" }] } });
    await c.call("POST", "/networks/create", { Name: "backend", Internal: true, IPAM: { Config: [{ Subnet: "10.88.2.0/24" }] } });
    for (const n of await c.call<{ Name: string; Driver: string; Internal: boolean; IPAM: { Config: { Subnet: string }[] } }[]>("GET", "/networks")) {
      console.log(`   ${n.Name.padEnd(10)} ${n.Driver.padEnd(7)} ${(n.IPAM.Config.map((p) => p.Subnet).join(",") || "-").padEnd(14)} ${n.Internal ? "internal" : ""}`);
    }

    console.log("== containers (busybox)");
    const www = join(dir, "www");
    mkdirSync(www);
    writeFileSync(join(www, "index.html"), "hello from the web container\n");
    const run = async (name: string, networks: { Network: string; Ports?: string[] }[], cmd: string[], limits = {}) => {
      const r = await c.call<ContainerJson>("POST", "/berth/containers/run", { Name: name, Networks: networks, Command: cmd, ...limits });
      names.push(name);
      const addrs = r.Networks.flatMap((n) => n.Addresses).join(", ") || "(no interfaces)";
      console.log(`   ${name.padEnd(6)} ${addrs}`);
      return r;
    };
    await run("web", [{ Network: "frontend", Ports: ["8080:80"] }], [BUSYBOX, "httpd", "-f", "-p", "80", "-h", www], { Memory: 64 * 1024 * 1024, Pids: 32 });
    await run("app", [{ Network: "frontend" }, { Network: "backend" }], [BUSYBOX, "sleep", "3600"], { Cpus: 0.5 });
    await run("db", [{ Network: "backend" }], [BUSYBOX, "sleep", "3600"]);
    await run("solo", [{ Network: "none" }], [BUSYBOX, "sleep", "3600"]);
    await run("hostc", [{ Network: "host" }], [BUSYBOX, "sleep", "3600"]);

    const list = await c.call<ContainerJson[]>("GET", "/berth/containers");
    const byName = new Map(list.map((x) => [x.Name, x]));
    const netnsOf = (n: string) => byName.get(n)!.NetnsName;
    const targets: Target[] = [];
    for (const x of list) {
      for (const n of x.Networks) for (const a of n.Addresses) targets.push({ name: `${x.Name}@${a.split("/")[0]}`, ip: a.split("/")[0] });
    }
    targets.push({ name: "outside", ip: UPLINK_OUTSIDE.ip.toString() });

    // what isolation promises: same network = reachable, different networks = not,
    // internal network = no way out, none = nothing, host = the host's own stack
    const subnetsOf = (x: ContainerJson) => x.Networks.flatMap((n) => n.Addresses.map((a) => IPNet.parse(a).prefix));
    const expect = (src: string, t: Target): boolean => {
      if (t.ip === undefined) return false;
      const s = byName.get(src)!;
      if (t.name === "outside") return src === "hostc" || src === "web" || src === "app";
      if (src === "hostc") return !t.ip.startsWith("10.88.2."); // host reaches bridges with a gateway (backend is internal)
      return subnetsOf(s).some((p) => p.contains(IPNet.parse(`${t.ip}/32`).ip));
    };

    console.log("\n== connectivity matrix (ping; ✔ reachable, · blocked; ! = differs from what isolation promises)");
    const srcs = ["web", "app", "db", "solo", "hostc"];
    const header = ["from \\ to", ...targets.map((t) => t.name)];
    const rows: string[][] = [header];
    let mismatches = 0;
    for (const s of srcs) {
      const row = [s];
      const results = await Promise.all(
        targets.map(async (t) => {
          const r = await dp.exec(netnsOf(s) || null, ["ping", "-c", "1", "-W", "1", "-q", t.ip!], { allowFailure: true });
          return r.exitCode === 0;
        }),
      );
      results.forEach((ok, i) => {
        const want = expect(s, targets[i]!);
        if (ok !== want) mismatches++;
        row.push(`${ok ? "✔" : "·"}${ok !== want ? "!" : ""}`);
      });
      rows.push(row);
    }
    const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) console.log(`   ${r.map((cell, i) => cell.padEnd(widths[i]! + 2)).join("")}`);

    console.log("\n== published port: the outside machine fetches http://192.0.2.1:8080/ (DNAT to web:80)");
    const page = await httpGet(dp, outsideNs, "192.0.2.1", 8080);
    const published = page.includes("hello from the web container");
    console.log(`   ${published ? "✔" : "✘"} ${published ? page.trim().split("\n").at(-1) : `no answer ${page}`}`);
    const webIp = byName.get("web")!.Networks[0]!.Addresses[0]!.split("/")[0]!;
    const direct = await httpGet(dp, outsideNs, webIp, 80);
    const blocked = !direct.includes("hello");
    console.log(`   ${blocked ? "✔" : "✘"} the container's own address ${webIp}:80 is not reachable from outside without publishing`);

    console.log("\n== berth ps");
    const ps = Bun.spawnSync([process.execPath, join(import.meta.dir, "..", "main.ts"), "--socket", socket, "ps"], { stdout: "pipe" });
    for (const l of ps.stdout.toString().trimEnd().split("\n")) console.log(`   ${l}`);

    const okAll = mismatches === 0 && published && blocked;
    console.log(`\n== ${okAll ? "all checks passed: containers reach exactly what they should, isolation holds" : `${mismatches} unexpected results`}`);
    return okAll ? 0 : 1;
  } catch (e) {
    console.error(`demo failed: ${(e as Error).message}`);
    return 1;
  } finally {
    await cleanup();
  }
}

/** HTTP GET with busybox nc (busybox-static's wget crashes resolving even literal addresses). */
async function httpGet(dp: Dataplane, ns: string, host: string, port: number): Promise<string> {
  const r = await dp.exec(ns, [BUSYBOX, "nc", "-w", "2", host, String(port)], {
    stdin: `GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`,
    allowFailure: true,
  });
  return r.stdout;
}

async function waitForSocket(c: Client, daemon: Subprocess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (daemon.exitCode !== null) {
      const err = daemon.stderr instanceof ReadableStream ? await new Response(daemon.stderr).text() : "";
      throw new Error(`berthd exited early: ${err}`);
    }
    try {
      await c.call("GET", "/_ping");
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error("berthd did not come up within 10 s");
}
