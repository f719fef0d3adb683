// berthd + `berth run` end to end: a container's /etc/resolv.conf points at the embedded resolver,
// names of its network resolve from inside, other names go to the upstream given with
// --dns-upstream (a fake server in a sandbox namespace), and the counters are served by the API.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { addExternalClient, assertRootUntouched, createSandbox, type Sandbox } from "../harness/sandbox.ts";

assertRootUntouched();
setDefaultTimeout(60_000);

const QUERY = join(import.meta.dir, "..", "fixtures", "dns-query.ts");
const UPSTREAM = join(import.meta.dir, "..", "fixtures", "dns-upstream.ts");

describe("embedded DNS through berthd and berth run", () => {
  let sb: Sandbox;
  let d: TestDaemon;
  beforeAll(async () => {
    sb = createSandbox("dnse");
    const ext = addExternalClient(sb);
    const up = Bun.spawn(["nsenter", `--net=/run/netns/${ext.ns}`, "--", process.execPath, UPSTREAM, `${ext.clientIP}:53:answer:198.51.100.9`], {
      stdout: "pipe",
      stderr: "inherit",
    });
    sb.track(up);
    const r = up.stdout.getReader();
    expect(new TextDecoder().decode((await r.read()).value)).toContain("listening");
    r.releaseLock();
    d = await startDaemon(sb, ["--dns-upstream", ext.clientIP]);
  });
  afterAll(async () => {
    for (const id of d.cli("ps", "-a", "-q").out.split("\n").filter(Boolean)) d.cli("rm", "-f", id);
    await d.stop();
    await sb.cleanup();
  });

  test("resolv.conf points at 127.0.0.11; a container name and an upstream name resolve from inside", async () => {
    expect(d.cli("network", "create", "--subnet", "10.126.0.0/24", "apps").code).toBe(0);
    const srv = d.cli("run", "-d", "--name", "srv", "--network", "apps", "--", "sleep", "60");
    expect(srv.code).toBe(0);
    const inspect = JSON.parse(d.cli("inspect", "srv").out)[0] as { ResolvConfPath: string; Networks: { Addresses: string[] }[] };
    expect(inspect.ResolvConfPath).toMatch(/\.resolv\.conf$/);
    expect(readFileSync(inspect.ResolvConfPath, "utf8")).toContain("nameserver 127.0.0.11\n");
    const srvIP = inspect.Networks[0]!.Addresses[0]!.split("/")[0]!;
    // berth exec joins the container's mount namespace too, so it sees the same resolv.conf
    const ex = d.cli("exec", "srv", "--", "cat", "/etc/resolv.conf");
    expect(ex.code).toBe(0);
    expect(ex.out).toMatch(/^nameserver 127\.0\.0\.11$/m);

    // the foreground run prints the container's output: what it sees as /etc/resolv.conf, then two lookups
    const script = `cat /etc/resolv.conf; ${process.execPath} ${QUERY} 127.0.0.11 53 srv A udp 5000; ${process.execPath} ${QUERY} 127.0.0.11 53 www.example A udp 5000`;
    const run = d.cli("run", "--rm", "--name", "client", "--network", "apps", "--", "sh", "-c", script);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/^nameserver 127\.0\.0\.11$/m);
    expect(run.out).not.toContain("10.255.255.53");
    const replies = run.out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { rcode: string; answers: { data: string }[] });
    expect(replies.map((x) => x.answers.map((a) => a.data))).toEqual([[srvIP], ["198.51.100.9"]]);

    const stats = (await (await fetch("http://berth/berth/dns/stats", { unix: d.socket })).json()) as Record<string, number>;
    expect(stats.queries).toBeGreaterThanOrEqual(2);
    expect(stats.answeredLocally).toBeGreaterThanOrEqual(1);
    expect(stats.forwarded).toBeGreaterThanOrEqual(1);
    expect(stats.forwardFailures).toBe(0);
    expect(stats).toHaveProperty("nxdomain");
    const metrics = await (await fetch("http://berth/metrics", { unix: d.socket })).text();
    expect(metrics).toMatch(/^berth_dns_queries_total\{outcome="all"\} \d+$/m);
  });

  test("a container name that is not a DNS label is refused with a clear error", () => {
    const r = d.cli("run", "-d", "--name", "bad.name", "--network", "apps", "--", "sleep", "1");
    expect(r.code).toBe(2);
    expect(r.err).toContain('container name "bad.name" cannot be used: containers are resolvable by name');
  });

  test("bad --dns-upstream values stop berthd at start", () => {
    const r = Bun.spawnSync([process.execPath, join(import.meta.dir, "..", "..", "src", "main.ts"), "berthd", "--dns-upstream", "resolver.example"], { stdout: "pipe", stderr: "pipe" });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toContain("is not an IP address");
  });
});
