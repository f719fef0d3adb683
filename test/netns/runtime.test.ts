/**
 * The container runtime (`berth run`): the process really runs inside its own
 * network namespace and cgroup, the limits hold for real (pids, memory), `rm`
 * removes everything, host-network containers share the sandbox host's stack,
 * and containers started by run reach each other.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { assertRootUntouched, canPing, pidAlive, RUN_PREFIX, startEchoServer, tcpRoundTrip, reachable } from "../harness/sandbox.ts";
import type { ContainerView } from "../../src/runtime/containers.ts";
import { addrsOf, eventually, expectBerthError, linkNames } from "./util.ts";

assertRootUntouched();

const MiB = 1024 * 1024;

/** The network namespace inode a process is in. */
function procNetns(pid: number): number | undefined {
  try {
    const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/net`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
const nsInode = (name: string): number => statSync(`/run/netns/${name}`).ino;


/** The directory of one controller's cgroup (v1) or the single cgroup dir (v2), found by a file it holds. */
function cgroupFileDir(b: TestBerth, cgroup: string, file: string): string {
  const d = b.rt.cgroups.dirs(cgroup).find((x) => existsSync(join(x, file)));
  if (!d) throw new Error(`no ${file} under ${b.rt.cgroups.dirs(cgroup).join(", ")}`);
  return d;
}

/** OOM kills recorded for a cgroup (v2 memory.events, v1 memory.oom_control). */
function oomKills(b: TestBerth, cgroup: string): number {
  if (b.rt.cgroups.mode === "v2") {
    const ev = readFileSync(join(cgroupFileDir(b, cgroup, "memory.events"), "memory.events"), "utf8");
    return Number(/^oom_kill (\d+)/m.exec(ev)?.[1] ?? 0);
  }
  const d = cgroupFileDir(b, cgroup, "memory.oom_control");
  const kills = Number(/^oom_kill (\d+)/m.exec(readFileSync(join(d, "memory.oom_control"), "utf8"))?.[1] ?? 0);
  const failcnt = Number(readFileSync(join(d, "memory.failcnt"), "utf8"));
  return kills > 0 ? kills : failcnt > 0 ? 1 : 0;
}

describe("container runtime", () => {
  let b: TestBerth;
  const ipOf = (v: ContainerView): string => v.endpoints[0]!.addresses[0]!.ip.toString();

  beforeAll(async () => {
    b = await createTestBerth("rt");
    await b.ctl.ensurePredefined();
    await b.ctl.createNetwork({ name: "n1", ipam: { config: [{ subnet: "10.250.0.0/24" }] } });
  });
  afterAll(async () => {
    await b?.close();
  });

  test("run: the process runs inside its netns and cgroup, with its limits", async () => {
    const v = await b.rt.run({
      name: "limited",
      command: ["sleep", "30"],
      networks: [{ network: "n1" }],
      limits: { memoryBytes: 64 * MiB, cpus: 0.5, pids: 20 },
    });
    try {
      expect(v.state).toBe("running");
      expect(v.pid).toBeGreaterThan(0);
      expect(v.netns).toStartWith(RUN_PREFIX);
      expect(existsSync(v.netnsPath)).toBe(true);
      const pid = v.pid!;
      // the trampoline joins the cgroup, then nsenter execs into the namespace under the same pid
      expect(await eventually(() => procNetns(pid) === nsInode(v.netns))).toBe(true);
      expect(procNetns(pid)).not.toBe(nsInode(b.sb.host));
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, 2)).toEqual(["sleep", "30"]);
      expect(b.rt.cgroups.pids(v.cgroup!)).toContain(pid);
      // in every controller's cgroup, not just one
      for (const f of v.cgroupProcs) expect(readFileSync(f, "utf8").split("\n")).toContain(String(pid));
      expect(b.rt.cgroups.readLimits(v.cgroup!)).toEqual({ memoryBytes: 64 * MiB, cpus: 0.5, pids: 20 });
      // and its network is configured
      expect(v.endpoints.length).toBe(1);
      expect(addrsOf(v.netns, "eth0")).toEqual([v.endpoints[0]!.addresses[0]!.toString()]);
    } finally {
      await b.rt.remove("limited", true);
    }
  });

  test("pids limit holds: forks beyond it fail", async () => {
    const v = await b.rt.run({
      name: "forker",
      command: ["sh", "-c", "for i in $(seq 1 30); do sleep 5 & done; wait"],
      networks: [{ network: "n1" }],
      limits: { pids: 5 },
    });
    try {
      const pidsDir = cgroupFileDir(b, v.cgroup!, "pids.max");
      expect(readFileSync(join(pidsDir, "pids.max"), "utf8").trim()).toBe("5");
      let most = 0;
      const failed = await eventually(() => {
        most = Math.max(most, b.rt.cgroups.pids(v.cgroup!).length);
        return /fork|Resource temporarily unavailable/i.test(readFileSync(v.logPath, "utf8"));
      }, 5000, 20);
      expect(failed).toBe(true);
      expect(most).toBeGreaterThan(1);
      expect(most).toBeLessThanOrEqual(5);
      if (existsSync(join(pidsDir, "pids.current"))) {
        expect(Number(readFileSync(join(pidsDir, "pids.current"), "utf8"))).toBeLessThanOrEqual(5);
      }
      if (existsSync(join(pidsDir, "pids.events"))) {
        expect(Number(/max (\d+)/.exec(readFileSync(join(pidsDir, "pids.events"), "utf8"))?.[1] ?? 0)).toBeGreaterThan(0);
      }
    } finally {
      await b.rt.remove("forker", true);
    }
  });

  test("memory limit holds: allocating far beyond it gets the container OOM-killed", async () => {
    // ~100 MB held in one shell variable; "survived <length>" only if it all fitted
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
    const hog = 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo "survived ${#x}"';
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
    const small = 'x=$(head -c 10000000 /dev/zero | tr "\\0" a); echo "survived ${#x}"';
    const v = await b.rt.run({ name: "hog", command: ["sh", "-c", hog], networks: [{ network: "n1" }], limits: { memoryBytes: 32 * MiB } });
    // control: the same command with a tenth of the data fits under a 64 MB limit
    const ok = await b.rt.run({ name: "fits", command: ["sh", "-c", small], networks: [{ network: "n1" }], limits: { memoryBytes: 64 * MiB } });
    try {
      const timeout = Bun.sleep(15000).then(() => "timeout" as const);
      const code = await Promise.race([b.rt.wait("hog"), timeout]);
      expect(code).not.toBe("timeout");
      expect(code).not.toBe(0);
      expect(readFileSync(v.logPath, "utf8")).not.toContain("survived 100000000");
      expect(oomKills(b, v.cgroup!)).toBeGreaterThan(0);
      expect((await b.rt.inspect("hog")).state).toBe("exited");
      expect(await Promise.race([b.rt.wait("fits"), timeout])).toBe(0);
      expect(readFileSync(ok.logPath, "utf8")).toContain("survived 10000000");
      expect(oomKills(b, ok.cgroup!)).toBe(0);
    } finally {
      await b.rt.remove("hog", true);
      await b.rt.remove("fits", true);
    }
  });

  test("rm removes the netns, the veth, the cgroup dirs and the store records", async () => {
    const v = await b.rt.run({ name: "doomed", command: ["sleep", "30"], networks: [{ network: "n1" }], limits: { pids: 10 } });
    const hostIf = (v.endpoints[0]!.driverState as { hostIfname: string }).hostIfname;
    const dirs = b.rt.cgroups.dirs(v.cgroup!);
    expect(linkNames(b.sb.host)).toContain(hostIf);
    for (const d of dirs) expect(existsSync(d)).toBe(true);
    expect(pidAlive(v.pid!)).toBe(true);
    // a running container needs force
    await expectBerthError(b.rt.remove("doomed"), { kind: "conflict", code: "container-running" });
    await b.rt.remove("doomed", true);
    expect(pidAlive(v.pid!)).toBe(false);
    expect(existsSync(v.netnsPath)).toBe(false);
    expect(b.dp.netnsList()).not.toContain(v.netns);
    expect(linkNames(b.sb.host)).not.toContain(hostIf);
    for (const d of dirs) expect(existsSync(d)).toBe(false);
    expect(await b.store.containers.get(v.id)).toBeUndefined();
    expect(await b.store.endpoints.listByContainer(v.id)).toEqual([]);
    expect(await b.store.allocations.list({ containerId: v.id })).toEqual([]);
    await expectBerthError(b.rt.inspect("doomed"), { kind: "not-found" });
  });

  test("a container on the host network runs in the sandbox host's namespace", async () => {
    const v = await b.rt.run({ name: "hostnet", command: ["sleep", "30"], networks: [{ network: "host" }] });
    try {
      expect(v.netns).toBe(b.sb.host);
      // no addresses of its own: it uses the host's stack
      expect(v.endpoints.flatMap((e) => e.addresses)).toEqual([]);
      expect(await eventually(() => procNetns(v.pid!) === nsInode(b.sb.host))).toBe(true);
      expect(b.rt.cgroups.pids(v.cgroup!)).toContain(v.pid!);
    } finally {
      await b.rt.remove("hostnet", true);
    }
    // removing it must not remove the host's namespace
    expect(existsSync(`/run/netns/${b.sb.host}`)).toBe(true);
    expect(linkNames(b.sb.host)).toContain("lo");
  });

  test("two containers started by run on one network reach each other", async () => {
    const a = await b.rt.run({ name: "alpha", command: ["sleep", "30"], networks: [{ network: "n1" }] });
    const z = await b.rt.run({ name: "omega", command: ["sleep", "30"], networks: [{ network: "n1" }] });
    try {
      expect(ipOf(a)).not.toBe(ipOf(z));
      expect(reachable(a.netns, ipOf(z))).toBe(true);
      expect(reachable(z.netns, ipOf(a))).toBe(true);
      const srv = await startEchoServer(b.sb, z.netns, "0.0.0.0", 7300);
      try {
        expect(tcpRoundTrip(a.netns, ipOf(z), 7300, "rt")).toBe(`echo:rt from:${ipOf(a)}`);
      } finally {
        await srv.stop();
      }
      // the default bridge network works for run too
      const d = await b.rt.run({ name: "deflt", command: ["sleep", "30"], networks: [{ network: "bridge" }] });
      expect(linkNames(b.sb.host)).toContain("berth0");
      expect(reachable(d.netns, "10.123.0.1")).toBe(true);
      // different networks stay isolated
      expect(canPing(d.netns, ipOf(a))).toBe(false);
      await b.rt.remove("deflt", true);
    } finally {
      await b.rt.remove("alpha", true);
      await b.rt.remove("omega", true);
    }
  });

  test("a name that is a prefix of several ids is still a free name (containers and networks)", async () => {
    // two records whose ids start with the name: `find(name)` alone answers "ambiguous"
    for (const tail of ["1", "2"]) {
      await b.ctl.store.containers.create({
        id: `c56${tail}${"0".repeat(60)}`, name: `holder${tail}`, netns: "", command: ["true"], state: "exited", limits: {}, created: new Date().toISOString(), labels: {},
      });
      await b.ctl.createNetwork({ id: `ab12${tail}${"0".repeat(59)}`, name: `idholder${tail}`, ipam: { config: [{ subnet: `10.233.${tail}.0/24` }] } });
    }
    const v = await b.rt.run({ name: "c56", command: ["sleep", "30"], networks: [{ network: "none" }] });
    expect(v.name).toBe("c56");
    const n = await b.ctl.createNetwork({ name: "ab12", ipam: { config: [{ subnet: "10.233.3.0/24" }] } });
    expect(n.name).toBe("ab12");
    // and a taken name is still refused
    await expectBerthError(b.rt.run({ name: "c56", command: ["true"], networks: [{ network: "none" }] }), { kind: "conflict", code: "container-exists" });
    await b.rt.remove("c56", true);
    for (const tail of ["1", "2"]) await b.ctl.store.containers.delete(`c56${tail}${"0".repeat(60)}`);
    for (const x of ["ab12", "idholder1", "idholder2"]) await b.ctl.deleteNetwork(x);
  });

  test("a fault before spawn rolls back the netns, the cgroup, the endpoint and the record", async () => {
    const parents = [...new Set(b.rt.cgroups.dirs("probe").map((d) => dirname(d)))];
    const snap = async () => ({
      containers: (await b.store.containers.list()).map((c) => c.id).sort(),
      allocations: (await b.store.allocations.list()).map((a) => `${a.containerId}/${a.address}`).sort(),
      netns: b.dp.netnsList().filter((n) => n.startsWith(RUN_PREFIX)).sort(),
      hostLinks: linkNames(b.sb.host),
      cgroups: parents.flatMap((p) => (existsSync(p) ? readdirSync(p, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(p, e.name)) : [])).sort(),
    });
    const before = await snap();
    b.faults.arm("run:before-spawn");
    await expectBerthError(b.rt.run({ name: "never", command: ["sleep", "30"], networks: [{ network: "n1" }], limits: { pids: 5 } }), {
      kind: "system",
      code: "injected-fault",
    });
    expect(await snap()).toEqual(before);
    // the name is free again and a normal run works
    const v = await b.rt.run({ name: "never", command: ["sleep", "30"], networks: [{ network: "n1" }] });
    expect(v.state).toBe("running");
    await b.rt.remove("never", true);
    expect(await snap()).toEqual(before);
  });
});
