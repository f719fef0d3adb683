// icc=false, internal networks and `berth trace`: every verdict of trace is checked against a real TCP connection.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { addExternalClient, assertRootUntouched, createSandbox, type Sandbox, startEchoServer, tcpRoundTrip } from "../harness/sandbox.ts";

assertRootUntouched();

describe("policy and trace", () => {
  let sb: Sandbox;
  let d: TestDaemon;
  let ext: { ns: string; hostIP: string; clientIP: string };
  const ctr = new Map<string, { netns: string; ip: string }>();

  beforeAll(async () => {
    sb = createSandbox("pol");
    ext = addExternalClient(sb);
    d = await startDaemon(sb);
    expect(d.cli("network", "create", "--subnet", "10.252.1.0/24", "pub").code).toBe(0);
    expect(d.cli("network", "create", "--subnet", "10.252.2.0/24", "-o", "com.docker.network.bridge.enable_icc=false", "iso").code).toBe(0);
    expect(d.cli("network", "create", "--subnet", "10.252.3.0/24", "--internal", "int").code).toBe(0);
    const run = (name: string, net: string, ...extra: string[]) => {
      const r = d.cli("run", "-d", "--network", net, "--name", name, ...extra, "sleep", "300");
      expect(r.code).toBe(0);
      const [c] = JSON.parse(d.cli("inspect", name).out);
      ctr.set(name, { netns: c.NetnsName, ip: (c.Networks[0].Addresses[0] as string).split("/")[0]! });
    };
    run("p1", "pub", "-p", "8080:7000");
    run("p2", "pub");
    run("i1", "iso");
    run("i2", "iso");
    run("n1", "int");
    for (const name of ["p1", "p2", "i2", "n1"]) await startEchoServer(sb, ctr.get(name)!.netns, "0.0.0.0", 7000);
    await startEchoServer(sb, ext.ns, "0.0.0.0", 7000);
  });

  afterAll(async () => {
    d.cli("rm", "-f", "p1", "p2", "i1", "i2", "n1");
    await d.stop();
    await sb.cleanup();
  });

  const trace = (src: string, dst: string, port: string) => {
    const r = d.cli("trace", src, dst, port);
    return { allowed: r.code === 0, text: r.out };
  };
  const ns = (n: string) => (n === "outside" ? ext.ns : ctr.get(n)!.netns);
  const ip = (n: string) => (n === "outside" ? ext.clientIP : ctr.get(n)!.ip);

  const cases: [string, string, boolean, string][] = [
    ["p1", "p2", true, "both are on network pub"],
    ["i1", "i2", false, "icc=false"],
    ["p1", "i2", false, "share no network"],
    ["n1", "outside", false, "internal"],
    ["p1", "outside", true, "masquerade"],
    ["outside", "p1", false, "publish a port instead"],
  ];
  for (const [src, dst, allowed, why] of cases) {
    test(`${src} -> ${dst}:7000 is ${allowed ? "allowed" : "dropped"} (${why}), and trace says so`, () => {
      const party = (n: string) => (n === "outside" ? ext.clientIP : n);
      const t = trace(party(src), party(dst), "7000");
      expect(t.text).toContain(why);
      expect(t.allowed).toBe(allowed);
      const reply = tcpRoundTrip(ns(src), ip(dst), 7000, "x", 800);
      expect(reply !== undefined).toBe(allowed);
    });
  }

  test("outbound traffic is masqueraded: the outside sees the host's uplink address", () => {
    expect(tcpRoundTrip(ns("p1"), ext.clientIP, 7000)).toContain(`from:${ext.hostIP}`);
  });

  test("a published port is allowed from outside with the client address preserved, and trace shows the DNAT", () => {
    const t = trace(ext.clientIP, ext.hostIP, "8080");
    expect(t.allowed).toBe(true);
    expect(t.text).toContain("DNAT");
    expect(tcpRoundTrip(ext.ns, ext.hostIP, 8080)).toContain(`from:${ext.clientIP}`);
  });

  test("icc=false isolates the bridge ports in the kernel", () => {
    const [n] = JSON.parse(d.cli("network", "inspect", "iso").out);
    const out = Bun.spawnSync(["ip", "-n", sb.host, "-j", "-d", "link", "show", "master", n.BerthDriverState.bridge]).stdout.toString();
    const ports = JSON.parse(out) as { linkinfo: { info_slave_data: { isolated: boolean } } }[];
    expect(ports.length).toBe(2);
    expect(ports.every((p) => p.linkinfo.info_slave_data.isolated)).toBe(true);
  });

  test("trace rejects unknown parties and bad ports with a clear error", () => {
    const r = d.cli("trace", "nosuch", "p1", "80");
    expect(r.code).toBe(2);
    expect(r.err).toContain("neither a container nor an IP address");
    expect(d.cli("trace", "p1", "p2", "70000").err).toContain("70000");
  });
});
