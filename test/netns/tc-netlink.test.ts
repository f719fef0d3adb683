/**
 * Traffic control over rtnetlink (src/dataplane/tc.ts with netlink/tc-messages.ts)
 * against the real kernel, side by side with the spawned `tc`/`ip` path
 * (BERTH_DATAPLANE=ip backend): the same tbf read back by `tc -j -d qdisc show`
 * for several rate/burst/latency values, the same ingress redirect read back by
 * `tc -j filter show ... ingress`, deletion, the ifb helpers and the errors for
 * missing devices.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import * as tc from "../../src/dataplane/tc.ts";
import { MAC } from "../../src/net/index.ts";
import { assertRootUntouched, createSandbox, ipJson, type Sandbox } from "../harness/sandbox.ts";

assertRootUntouched();

let sb: Sandbox;
let nl: Dataplane;
let ip: Dataplane;

function sh(ns: string, ...argv: string[]): string {
  const r = Bun.spawnSync(["ip", "netns", "exec", ns, ...argv], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}
function tcJson<T = Record<string, unknown>[]>(...args: string[]): T {
  return JSON.parse(sh(sb.host, "tc", "-j", ...args) || "[]") as T;
}
/** A veth pair in the sandbox host, both ends up. */
function veth(a: string, b: string): void {
  sh(sb.host, "ip", "link", "add", a, "type", "veth", "peer", "name", b);
  sh(sb.host, "ip", "link", "set", a, "up");
  sh(sb.host, "ip", "link", "set", b, "up");
}
function ifbDev(name: string): void {
  sh(sb.host, "ip", "link", "add", name, "type", "ifb");
  sh(sb.host, "ip", "link", "set", name, "up");
}

beforeAll(() => {
  sb = createSandbox("tcnl");
  nl = new Dataplane({ hostNs: sb.host, linkBackend: "netlink" });
  ip = new Dataplane({ hostNs: sb.host, linkBackend: "ip" });
  veth("na0", "na1");
  veth("sa0", "sa1");
  ifbDev("nifb");
  ifbDev("sifb");
});
afterAll(async () => {
  await sb.cleanup();
});

describe("tbf over netlink reads back like the spawned tc", () => {
  const cases: tc.TbfSpec[] = [
    { rateBits: 1_000_000, burstBytes: 12_500, latencyMs: 25 },
    { rateBits: 10_000_000, burstBytes: 32_768 },
    { rateBits: 123_456_789, burstBytes: 100_003, latencyMs: 50 },
    { rateBits: 8_001, burstBytes: 1_600, latencyMs: 10 },
    { rateBits: 999_999_999, burstBytes: 1_234_567, latencyMs: 7.5 },
    // above 2^32 bytes/s: TCA_TBF_RATE64
    { rateBits: 40e9, burstBytes: 1_000_000 },
    { rateBits: 100e9, burstBytes: 536_870_912, latencyMs: 1 },
  ];
  for (const spec of cases) {
    test(`rate ${spec.rateBits} bit/s, burst ${spec.burstBytes} B, latency ${spec.latencyMs ?? 25} ms`, async () => {
      await tc.setRootTbf(nl, sb.host, "na0", spec);
      await tc.setRootTbf(ip, sb.host, "sa0", spec);
      const viaNl = tcJson("-d", "qdisc", "show", "dev", "na0");
      const viaTc = tcJson("-d", "qdisc", "show", "dev", "sa0");
      expect(viaNl).toEqual(viaTc);
      expect(viaNl.find((q) => q.kind === "tbf")).toBeDefined();
      // both readers decode the same rate and burst from either
      const a = await tc.qdiscs(nl, sb.host, "na0");
      expect(a).toEqual(await tc.qdiscs(ip, sb.host, "na0"));
      expect(await tc.qdiscs(nl, sb.host, "sa0")).toEqual(await tc.qdiscs(ip, sb.host, "sa0"));
      expect(a?.find((q) => q.root)?.rateBytes).toBe(Math.trunc(spec.rateBits / 8));
    });
  }

  test("replace over an existing tbf, then delete (twice: a missing qdisc is success)", async () => {
    await tc.setRootTbf(nl, sb.host, "na0", { rateBits: 2e6, burstBytes: 5000 });
    expect((await tc.qdiscs(nl, sb.host, "na0"))?.find((q) => q.root)?.rateBytes).toBe(250_000);
    await tc.clearRootQdisc(nl, sb.host, "na0");
    await tc.clearRootQdisc(nl, sb.host, "na0");
    await tc.clearRootQdisc(ip, sb.host, "sa0");
    expect(tcJson("qdisc", "show", "dev", "na0")).toEqual(tcJson("qdisc", "show", "dev", "sa0"));
    expect(tcJson<{ kind: string }[]>("qdisc", "show", "dev", "na0").map((q) => q.kind)).toEqual(["noqueue"]);
  });
});

describe("ingress redirect over netlink", () => {
  // the ifb's name and the action's index (the kernel numbers mirred actions per namespace) differ by construction
  const filters = (dev: string) =>
    JSON.stringify(tcJson("filter", "show", "dev", dev, "ingress"))
      .replaceAll(`"to_dev":"${dev.startsWith("n") ? "nifb" : "sifb"}"`, '"to_dev":"IFB"')
      .replace(/"index":\d+/g, '"index":N');

  test("reads back like the spawned tc -batch (u32 match-all, mirred egress redirect, stolen)", async () => {
    await tc.redirectIngress(nl, sb.host, "na0", "nifb");
    await tc.redirectIngress(ip, sb.host, "sa0", "sifb");
    expect(filters("na0")).toEqual(filters("sa0"));
    const f = tcJson<{ kind: string; options?: { actions?: { kind: string; mirred_action: string; direction: string; to_dev: string; control_action: { type: string } }[] } }[]>(
      "filter",
      "show",
      "dev",
      "na0",
      "ingress",
    );
    const act = f.flatMap((x) => x.options?.actions ?? [])[0];
    expect(f.every((x) => x.kind === "u32")).toBe(true);
    expect(act).toMatchObject({ kind: "mirred", mirred_action: "redirect", direction: "egress", to_dev: "nifb", control_action: { type: "stolen" } });
    expect(tcJson<{ kind: string }[]>("qdisc", "show", "dev", "na0", "ingress").map((q) => q.kind)).toEqual(["ingress"]);
    expect(await tc.ingressRedirectTarget(nl, sb.host, "na0")).toBe("nifb");
    expect(await tc.ingressRedirectTarget(ip, sb.host, "na0")).toBe("nifb");
    expect(await tc.ingressRedirectTarget(nl, sb.host, "sa0")).toBe("sifb");
  });

  test("redirecting again replaces the redirect", async () => {
    await tc.redirectIngress(nl, sb.host, "na0", "sifb");
    expect(await tc.ingressRedirectTarget(nl, sb.host, "na0")).toBe("sifb");
    await tc.redirectIngress(nl, sb.host, "na0", "nifb");
    expect(await tc.ingressRedirectTarget(nl, sb.host, "na0")).toBe("nifb");
    expect(tcJson<unknown[]>("filter", "show", "dev", "na0", "ingress").length).toBe(tcJson<unknown[]>("filter", "show", "dev", "sa0", "ingress").length);
  });

  test("clearIngress removes qdisc and filter; a second call and a missing device are success", async () => {
    await tc.clearIngress(nl, sb.host, "na0");
    await tc.clearIngress(nl, sb.host, "na0");
    await tc.clearIngress(nl, sb.host, "nosuchdev");
    await tc.clearRootQdisc(nl, sb.host, "nosuchdev");
    expect(tcJson("qdisc", "show", "dev", "na0", "ingress")).toEqual([]);
    expect(await tc.ingressRedirectTarget(nl, sb.host, "na0")).toBeUndefined();
    expect(await tc.qdiscs(nl, sb.host, "nosuchdev")).toBeUndefined();
    await tc.clearIngress(ip, sb.host, "sa0");
  });
});

describe("errors for missing devices keep tc's wording", () => {
  test("setRootTbf", async () => {
    const err = await tc.setRootTbf(nl, sb.host, "nosuchdev", { rateBits: 1e6, burstBytes: 5000 }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/Cannot find device "nosuchdev"/);
    const viaTc = await tc.setRootTbf(ip, sb.host, "nosuchdev", { rateBits: 1e6, burstBytes: 5000 }).catch((e: Error) => e);
    expect((err as Error).message).toBe((viaTc as Error).message);
  });
  test("redirectIngress: missing device or ifb", async () => {
    await expect(tc.redirectIngress(nl, sb.host, "nosuchdev", "nifb")).rejects.toThrow(/Cannot find device "nosuchdev"/);
    await expect(tc.redirectIngress(nl, sb.host, "na0", "nosuchifb")).rejects.toThrow(/Cannot find device "nosuchifb"/);
    await tc.clearIngress(nl, sb.host, "na0");
  });
  test("a missing namespace", async () => {
    const gone = new Dataplane({ linkBackend: "netlink" });
    await expect(tc.setRootTbf(gone, `${sb.host}-missing`, "na0", { rateBits: 1e6, burstBytes: 5000 })).rejects.toThrow(/Cannot open network namespace/);
  });
});

describe("shapeNew, ifb and link helpers: netlink equal to the spawned iproute2", () => {
  const mac = MAC.parse("02:42:ac:11:00:07");
  const mac2 = MAC.parse("02:42:ac:11:00:08");
  test("shapeNew makes the same ifb, tbfs and redirect; a repeat returns false", async () => {
    veth("nb0", "nb1");
    veth("sb0", "sb1");
    const spec = (dev: string, ifb: string, m: MAC): tc.ShapeSpec => ({
      dev,
      ingress: { rateBits: 20e6, burstBytes: 40_000 },
      egress: { ifb, alias: `berth-bw net/${dev}/eth0`, mac: m, mtu: 1400, tbf: { rateBits: 10e6, burstBytes: 30_000 } },
    });
    expect(await tc.shapeNew(nl, sb.host, spec("nb0", "nbifb", mac))).toBe(true);
    expect(await tc.shapeNew(ip, sb.host, spec("sb0", "sbifb", mac2))).toBe(true);
    const link = (n: string) => ipJson<{ ifname: string; mtu: number; address: string; ifalias: string; flags: string[]; linkinfo: { info_kind: string } }[]>(sb.host, "-d", "link", "show", "dev", n)[0]!;
    const a = link("nbifb");
    const b = link("sbifb");
    expect(a).toMatchObject({ mtu: 1400, address: mac.toString(), ifalias: "berth-bw net/nb0/eth0", linkinfo: { info_kind: "ifb" } });
    expect(b).toMatchObject({ mtu: 1400, address: mac2.toString(), ifalias: "berth-bw net/sb0/eth0", linkinfo: { info_kind: "ifb" } });
    expect(a.flags.includes("UP")).toBe(true);
    expect(tcJson("-d", "qdisc", "show", "dev", "nb0")).toEqual(tcJson("-d", "qdisc", "show", "dev", "sb0"));
    expect(tcJson("-d", "qdisc", "show", "dev", "nbifb")).toEqual(tcJson("-d", "qdisc", "show", "dev", "sbifb"));
    expect(await tc.ingressRedirectTarget(nl, sb.host, "nb0")).toBe("nbifb");
    expect(await tc.shapeNew(nl, sb.host, spec("nb0", "nbifb", mac))).toBe(false);
  });

  test("shapeNew on a missing device fails with tc's wording and leaves no ifb behind", async () => {
    const err = await tc
      .shapeNew(nl, sb.host, { dev: "nosuchdev", egress: { ifb: "nxifb", alias: "berth-bw x", mac, tbf: { rateBits: 1e6, burstBytes: 5000 } } })
      .catch((e: Error) => e);
    expect((err as Error).message).toMatch(/Cannot find device "nosuchdev"/);
    expect(ipJson<{ ifname: string }[]>(sb.host, "link", "show", "type", "ifb").map((l) => l.ifname)).not.toContain("nxifb");
  });

  test("ensureIfb creates or reuses; linksByAlias, linksNamed, peerIndex, routeDev agree with the ip backend", async () => {
    await tc.ensureIfb(nl, sb.host, "neifb", "berth-bw own/1", 1300);
    await tc.ensureIfb(nl, sb.host, "neifb", "berth-bw own/2");
    expect(ipJson<{ mtu: number; ifalias: string; flags: string[] }[]>(sb.host, "link", "show", "dev", "neifb")[0]).toMatchObject({ mtu: 1300, ifalias: "berth-bw own/2" });
    for (const prefix of ["berth-bw ", "berth-bw own", "nothing"]) {
      expect(await tc.linksByAlias(nl, sb.host, "ifb", prefix)).toEqual(await tc.linksByAlias(ip, sb.host, "ifb", prefix));
    }
    expect((await tc.linksByAlias(nl, sb.host, "ifb", "berth-bw ")).map((l) => l.name).sort()).toEqual(["nbifb", "neifb", "sbifb"]);
    const names = ["na0", "nbifb", "nosuchdev", "lo"];
    expect(await tc.linksNamed(nl, sb.host, names)).toEqual(await tc.linksNamed(ip, sb.host, names));
    for (const d of ["na0", "lo", "nbifb", "nosuchdev"]) expect(await tc.peerIndex(nl, sb.host, d)).toEqual(await tc.peerIndex(ip, sb.host, d));
    expect(await tc.peerIndex(nl, sb.host, "na0")).toBe(ipJson<{ ifindex: number }[]>(sb.host, "link", "show", "dev", "na1")[0]!.ifindex);
    sh(sb.host, "ip", "addr", "add", "10.77.0.1/24", "dev", "na0");
    for (const dst of ["10.77.0.9", "10.77.0.1", "127.0.0.1", "203.0.113.1"]) expect(await tc.routeDev(nl, sb.host, dst)).toEqual(await tc.routeDev(ip, sb.host, dst));
    expect(await tc.routeDev(nl, sb.host, "10.77.0.9")).toBe("na0");
  });
});
