/**
 * A real dockerd (Debian docker.io 20.10, containerd, runc) using Berth as its
 * remote network driver and IPAM driver "berth". dockerd runs in the sandbox's
 * host namespace with a private mount namespace (see test/harness/dockerd.ts);
 * berthd runs for the same namespace and serves its plugin socket in the
 * directory dockerd sees as /run/docker/plugins. Real containers from a busybox
 * image built from /bin/busybox; real packets.
 *
 * dockerd runs with --iptables=false: with its iptables rules the FORWARD
 * policy is DROP with br_netfilter on, which drops bridged container traffic on
 * Berth's bridges in iptables' own chain (pitfall 6). Berth does NAT, isolation
 * and port publishing for its networks itself.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { startDockerd, type TestDockerd } from "../harness/dockerd.ts";
import { addExternalClient, assertRootUntouched, createSandbox, ipJson, reachable, type Sandbox } from "../harness/sandbox.ts";
import { addSegment } from "../harness/segment.ts";

assertRootUntouched();

const IMAGE = "berthtest/busybox:latest";
const MARKER = "served-by-a-docker-container-on-berth";

interface DockerNet {
  Id: string;
  Driver: string;
  IPAM: { Driver: string; Config: { Subnet: string; Gateway?: string; IPRange?: string }[] };
  Containers: Record<string, { Name: string; IPv4Address: string; MacAddress: string }>;
}

describe("dockerd with Berth as remote network + IPAM plugin", () => {
  let sb: Sandbox;
  let d: TestDaemon;
  let dk: TestDockerd;
  let ext: { ns: string; hostIP: string };
  const timings: Record<string, number> = {};
  const timed = <T>(what: string, f: () => T): T => {
    const t0 = performance.now();
    const r = f();
    timings[what] = Math.round(performance.now() - t0);
    return r;
  };
  const docker = (...args: string[]) => dk.docker(...args);
  const ok = (...args: string[]): string => {
    const r = docker(...args);
    if (r.code !== 0) throw new Error(`docker ${args.join(" ")} -> ${r.code}: ${r.err}`);
    return r.out.trim();
  };
  const inspectNet = (n: string): DockerNet => JSON.parse(ok("network", "inspect", n))[0];
  const ipOf = (c: string, net: string): string => ok("inspect", "-f", `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, c);
  const ping = (from: string, ip: string): boolean => docker("exec", from, "ping", "-c", "1", "-W", "1", ip).code === 0;
  const berthLinks = (): string[] =>
    ipJson<{ ifname: string }[]>(sb.host, "link", "show").map((l) => l.ifname).filter((n) => /^(vb|vc)/.test(n));

  beforeAll(async () => {
    sb = createSandbox("dk");
    const t0 = performance.now();
    dk = await startDockerd(sb);
    timings["dockerd start"] = Math.round(performance.now() - t0);
    d = await startDaemon(sb, ["--plugin-socket", join(dk.pluginDir, "berth.sock")]);
    timed("image import", () => dk.importBusybox(IMAGE, MARKER));
    ext = addExternalClient(sb);
  }, 60_000);

  afterAll(async () => {
    // dockerd first (it calls Berth to tear its networks down), then berthd
    const t0 = performance.now();
    if (dk) await dk.stop();
    timings["dockerd stop + cleanup"] = Math.round(performance.now() - t0);
    if (d) await d.stop();
    await sb?.cleanup();
    console.log(`dockerd-plugin timings (ms): ${JSON.stringify(timings)}`);
    if (!dk) return;
    // nothing dockerd/containerd made is left: processes, cgroups, temp dir, mounts
    expect(existsSync(dk.dir)).toBe(false);
    const cgroups = readdirSync("/sys/fs/cgroup").filter((c) => existsSync(join("/sys/fs/cgroup", c, dk.cgroupParent)));
    expect(cgroups).toEqual([]);
    expect(readFileSync("/proc/mounts", "utf8")).not.toContain(dk.dir);
    expect(existsSync("/run/containerd")).toBe(false);
    expect(existsSync("/run/docker")).toBe(false);
  }, 60_000);

  test("plugin discovery: only Berth's socket is in dockerd's plugin dir", () => {
    expect(readdirSync(dk.pluginDir)).toEqual(["berth.sock"]);
    // nothing was created in the real /run/docker/plugins
    expect(existsSync(join("/run/docker/plugins", "berth.sock"))).toBe(false);
  });

  test("docker network create -d berth; two containers ping each other by address and by name", () => {
    const id = timed("network create", () => ok("network", "create", "-d", "berth", "--subnet", "10.210.0.0/24", "bn1"));
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    // Berth holds it under Docker's id, managed by docker
    const [bn] = JSON.parse(d.cli("network", "inspect", id).out);
    expect(bn.Name).toBe(`docker-${id.slice(0, 12)}`);
    expect(bn.IPAM.Config[0]).toEqual({ Subnet: "10.210.0.0/24", Gateway: "10.210.0.1" });
    const rm = d.cli("network", "rm", id);
    expect(rm.code).not.toBe(0);
    expect(rm.err).toContain("managed by docker");

    timed("run -d (1st)", () => ok("run", "-d", "--name", "c1", "--network", "bn1", IMAGE, "sleep", "600"));
    timed("run -d (2nd)", () => ok("run", "-d", "--name", "c2", "--network", "bn1", IMAGE, "sleep", "600"));
    const ip1 = ipOf("c1", "bn1");
    const ip2 = ipOf("c2", "bn1");
    expect(ip1).toBe("10.210.0.2");
    expect(ip2).toBe("10.210.0.3");
    // eth0 carries Docker's address; the default route is Berth's gateway
    expect(ok("exec", "c1", "ip", "-4", "-o", "addr", "show", "eth0")).toContain("10.210.0.2/24");
    expect(ok("exec", "c1", "ip", "route")).toContain("default via 10.210.0.1 dev eth0");
    expect(timed("ping by address", () => ping("c1", ip2))).toBe(true);
    expect(ping("c2", ip1)).toBe(true);
    expect(ping("c1", "10.210.0.1")).toBe(true);
    // dockerd's embedded DNS works on remote-driver networks
    expect(ping("c1", "c2")).toBe(true);
    // inspect shapes on both sides
    const n = inspectNet("bn1");
    expect(n.Driver).toBe("berth");
    expect(Object.values(n.Containers).map((c) => c.Name).sort()).toEqual(["c1", "c2"]);
    const [bn2] = JSON.parse(d.cli("network", "inspect", id).out);
    expect(Object.values(bn2.Containers as Record<string, { IPv4Address: string }>).map((c) => c.IPv4Address).sort()).toEqual([
      "10.210.0.2/24",
      "10.210.0.3/24",
    ]);
    // the host ends of the veth pairs sit on Berth's bridge
    const bridge = bn2.BerthDriverState.bridge as string;
    const ports = ipJson<{ ifname: string; master?: string }[]>(sb.host, "link", "show", "master", bridge);
    expect(ports.length).toBe(2);
  }, 60_000);

  test("two berth networks are isolated from each other", () => {
    ok("network", "create", "-d", "berth", "--subnet", "10.211.0.0/24", "bn2");
    ok("run", "-d", "--name", "c3", "--network", "bn2", IMAGE, "sleep", "600");
    const ip3 = ipOf("c3", "bn2");
    expect(ip3).toBe("10.211.0.2");
    expect(ping("c3", "10.211.0.1")).toBe(true);
    expect(ping("c1", ip3)).toBe(false);
    expect(ping("c3", ipOf("c1", "bn1"))).toBe(false);
  }, 60_000);

  test("-p publishes through Berth's firewall: reachable from another namespace (ProgramExternalConnectivity)", () => {
    timed("run -d -p", () => ok("run", "-d", "--name", "web", "--network", "bn1", "-p", "8080:80", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"));
    const web = ipOf("web", "bn1");
    // an HTTP client in the external namespace (Bun's fetch; busybox-static's wget crashes outside a container)
    const script = `const r = await fetch("http://${ext.hostIP}:8080/", { signal: AbortSignal.timeout(2000) }); process.stdout.write(await r.text());`;
    const fetch = () => Bun.spawnSync(["nsenter", `--net=/run/netns/${ext.ns}`, "--", process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    let r = fetch();
    for (let i = 0; i < 20 && r.exitCode !== 0; i++) {
      Bun.sleepSync(100); // httpd may still be starting
      r = fetch();
    }
    expect(r.stdout.toString().trim()).toBe(MARKER);
    const elems = JSON.stringify(JSON.parse(Bun.spawnSync(["ip", "netns", "exec", sb.host, "nft", "-j", "list", "map", "inet", "berth", "ports4"]).stdout.toString()));
    expect(elems).toContain(web);
    expect(elems).toContain("8080");
    // removing the container revokes the mapping
    ok("rm", "-f", "web");
    const after = JSON.stringify(JSON.parse(Bun.spawnSync(["ip", "netns", "exec", sb.host, "nft", "-j", "list", "map", "inet", "berth", "ports4"]).stdout.toString()));
    expect(after).not.toContain("8080");
  }, 60_000);

  test("--ipam-driver berth: pools from Berth's IPAM, gateway, ip-range", () => {
    ok("network", "create", "-d", "berth", "--ipam-driver", "berth", "bn3");
    const n3 = inspectNet("bn3");
    expect(n3.IPAM.Driver).toBe("berth");
    // the daemon's default pool is 10.124.0.0/16:24 and 10.124.0.0/24 is Berth's own default bridge
    expect(n3.IPAM.Config).toEqual([{ Subnet: "10.124.1.0/24", Gateway: "10.124.1.1" }]);
    ok("run", "-d", "--name", "c4", "--network", "bn3", IMAGE, "sleep", "600");
    expect(ipOf("c4", "bn3")).toBe("10.124.1.2");
    expect(ping("c4", "10.124.1.1")).toBe(true);

    ok("network", "create", "-d", "berth", "--ipam-driver", "berth", "--subnet", "10.215.0.0/24", "--gateway", "10.215.0.254",
      "--ip-range", "10.215.0.128/25", "bn4");
    ok("run", "-d", "--name", "c5", "--network", "bn4", IMAGE, "sleep", "600");
    expect(ipOf("c5", "bn4")).toBe("10.215.0.128");
    expect(ok("exec", "c5", "ip", "route")).toContain("default via 10.215.0.254");
    expect(ping("c5", "10.215.0.254")).toBe(true);
    // Berth's own networks cannot take a pool Docker holds
    const clash = d.cli("network", "create", "--subnet", "10.215.0.0/25", "native-clash");
    expect(clash.code).not.toBe(0);
    expect(clash.err).toContain("Pool overlaps");
  }, 60_000);

  test("refusals surface as docker errors and leave nothing behind", () => {
    const nets = d.cli("network", "ls", "-q").out;
    const links = ipJson<{ ifname: string }[]>(sb.host, "link", "show").length;
    const bad = docker("network", "create", "-d", "berth", "-o", "no.such.option=1", "bad1");
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("remote: unknown bridge option");
    // an overlay needs berthd on a shared store: refused by name, nothing made
    const ovl = docker("network", "create", "-d", "berth", "-o", "berth.driver=overlay", "--subnet", "10.218.0.0/24", "bad3");
    expect(ovl.code).toBe(1);
    expect(ovl.err).toContain("overlay networks need a shared store");
    expect(d.cli("network", "create", "--subnet", "10.216.0.0/24", "native1").code).toBe(0);
    const over = docker("network", "create", "-d", "berth", "--subnet", "10.216.0.0/24", "bad2");
    expect(over.code).toBe(1);
    expect(over.err).toContain("Pool overlaps");
    expect(d.cli("network", "rm", "native1").code).toBe(0);
    expect(d.cli("network", "ls", "-q").out).toBe(nets);
    expect(ipJson<{ ifname: string }[]>(sb.host, "link", "show").length).toBe(links);
    expect(docker("network", "ls", "-q", "--filter", "name=bad").out.trim()).toBe("");
  }, 60_000);

  test("-o berth.driver=macvlan: containers on a LAN parent get their own MACs and reach each other and a LAN peer", () => {
    const lan = addSegment(sb, "dkup0", "10.217.0.254/24");
    ok("network", "create", "-d", "berth", "-o", "berth.driver=macvlan", "-o", "parent=dkup0", "--subnet", "10.217.0.0/24", "--gateway", "10.217.0.254", "mv1");
    const [bm] = JSON.parse(d.cli("network", "inspect", inspectNet("mv1").Id).out);
    expect(bm.Driver).toBe("macvlan");
    expect(bm.BerthDriverState).toEqual({ parent: "dkup0", mode: "bridge" });
    timed("run -d (macvlan)", () => ok("run", "-d", "--name", "m1", "--network", "mv1", IMAGE, "sleep", "600"));
    ok("run", "-d", "--name", "m2", "--network", "mv1", IMAGE, "sleep", "600");
    const ip1 = ipOf("m1", "mv1");
    const ip2 = ipOf("m2", "mv1");
    expect([ip1, ip2]).toEqual(["10.217.0.1", "10.217.0.2"]);
    // eth0 inside the container is a macvlan child of the parent, with a MAC of its own
    const pid = ok("inspect", "-f", "{{.State.Pid}}", "m1");
    const link = Bun.spawnSync(["nsenter", `--net=/proc/${pid}/ns/net`, "--", "ip", "-j", "-d", "link", "show", "eth0"], { stdout: "pipe" });
    const [eth0] = JSON.parse(link.stdout.toString()) as { address: string; linkinfo?: { info_kind?: string; info_data?: { mode?: string } } }[];
    expect(eth0?.linkinfo?.info_kind).toBe("macvlan");
    expect(eth0?.linkinfo?.info_data?.mode).toBe("bridge");
    const mac1 = ok("inspect", "-f", '{{(index .NetworkSettings.Networks "mv1").MacAddress}}', "m1");
    const mac2 = ok("inspect", "-f", '{{(index .NetworkSettings.Networks "mv1").MacAddress}}', "m2");
    const parentMac = ipJson<{ address: string }[]>(sb.host, "link", "show", "dev", "dkup0")[0]!.address;
    expect(new Set([mac1, mac2, parentMac]).size).toBe(3);
    expect(eth0?.address).toBe(mac1);
    expect(ok("exec", "m1", "ip", "route")).toContain("default via 10.217.0.254 dev eth0");
    expect(ping("m1", ip2)).toBe(true);
    expect(ping("m1", lan.ip)).toBe(true);
    expect(reachable(lan.ns, ip2)).toBe(true);
    // the LAN peer sees each container under its own MAC
    const neigh = ipJson<{ dst: string; lladdr?: string }[]>(lan.ns, "neigh", "show");
    expect(neigh.find((n) => n.dst === ip2)?.lladdr).toBe(mac2);
    // no path from the macvlan network to a Berth bridge network
    expect(ping("m1", ipOf("c1", "bn1"))).toBe(false);
    // the host keeps no macvlan child once the containers are gone
    ok("rm", "-f", "m1", "m2");
    ok("network", "rm", "mv1");
    const children = ipJson<{ ifname: string; linkinfo?: { info_kind?: string } }[]>(sb.host, "-d", "link", "show").filter((l) => l.linkinfo?.info_kind === "macvlan");
    expect(children).toEqual([]);
  }, 60_000);

  test("teardown through docker removes every Berth object (endpoints, networks, pools)", async () => {
    timed("rm -f 5 containers", () => ok("rm", "-f", "c1", "c2", "c3", "c4", "c5"));
    expect(berthLinks()).toEqual([]);
    timed("network rm 4", () => ok("network", "rm", "bn1", "bn2", "bn3", "bn4"));
    const st = await d.api<{ Name: string }[]>("GET", "/networks");
    expect(st.map((n) => n.Name).sort()).toEqual(["bridge", "host", "none"]);
    expect(ipJson<{ ifname: string; linkinfo?: { info_kind?: string } }[]>(sb.host, "-d", "link", "show").filter((l) => l.linkinfo?.info_kind === "bridge").map((l) => l.ifname)).toEqual([
      "berth0",
    ]);
    // the IPAM pools went back too: the same automatic subnet is handed out again
    ok("network", "create", "-d", "berth", "--ipam-driver", "berth", "bn5");
    expect(inspectNet("bn5").IPAM.Config[0]!.Subnet).toBe("10.124.1.0/24");
    ok("network", "rm", "bn5");
  }, 60_000);
});
