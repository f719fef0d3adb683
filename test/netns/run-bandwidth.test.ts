// berth run bandwidth limits: tc on the host side, verified with iperf3 (within 10%).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseRate } from "../../src/runtime/bandwidth.ts";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { assertRootUntouched, iperf3Near, ipJson } from "../harness/sandbox.ts";

assertRootUntouched();

describe("berth run --ingress-rate/--egress-rate", () => {
  let b: TestBerth;
  let srvIp = "";
  let cliNs = "";
  let hostVeth = "";
  let ifb = "";

  beforeAll(async () => {
    b = await createTestBerth("bw");
    await b.ctl.syncFirewall();
    await b.ctl.ensurePredefined();
    await b.ctl.createNetwork({ name: "bwnet", ipam: { config: [{ subnet: "10.254.9.0/24" }] } });
    const srv = await b.rt.run({ name: "srv", command: ["iperf3", "-s", "-p", "5201"], networks: [{ network: "bwnet" }] });
    srvIp = srv.endpoints[0]!.addresses[0]!.ip.toString();
    const cli = await b.rt.run({ name: "cli", command: ["sleep", "120"], networks: [{ network: "bwnet" }], limits: { ingressRate: 20e6, egressRate: 10e6 } });
    cliNs = cli.netns;
    hostVeth = (cli.endpoints[0]!.driverState as { hostIfname: string }).hostIfname;
    ifb = `bw${cli.endpoints[0]!.id.slice(0, 11)}`;
    await Bun.sleep(300); // iperf3 server up
  });
  afterAll(async () => {
    await b.close();
  });

  test("tc objects exist on the host side: tbf on the veth, ifb with tbf for egress", () => {
    const q = JSON.parse(Bun.spawnSync(["ip", "netns", "exec", b.sb.host, "tc", "-j", "qdisc", "show", "dev", hostVeth]).stdout.toString()) as { kind: string }[];
    expect(q.some((x) => x.kind === "tbf")).toBe(true);
    expect(q.some((x) => x.kind === "ingress")).toBe(true);
    expect(ipJson<{ ifname: string }[]>(b.sb.host, "link", "show", "dev", ifb)[0]?.ifname).toBe(ifb);
  });

  test("egress (container -> server) holds at 10 Mbit/s within 10%", async () => {
    const bps = await iperf3Near(cliNs, srvIp, 5201, 10e6);
    expect(bps).toBeGreaterThan(9e6);
    expect(bps).toBeLessThan(11e6);
  }, 60_000);

  test("ingress (server -> container) holds at 20 Mbit/s within 10%", async () => {
    const bps = await iperf3Near(cliNs, srvIp, 5201, 20e6, { reverse: true });
    expect(bps).toBeGreaterThan(18e6);
    expect(bps).toBeLessThan(22e6);
  }, 60_000);

  test("removing the container removes the ifb device", async () => {
    await b.rt.remove("cli", true);
    const r = Bun.spawnSync(["ip", "-n", b.sb.host, "link", "show", "dev", ifb], { stderr: "pipe" });
    expect(r.exitCode).not.toBe(0);
  });

  test("bad limits are refused before anything is created", async () => {
    const before = (await b.store.containers.list()).length;
    await expect(b.rt.run({ name: "x1", command: ["true"], networks: [{ network: "bwnet" }], limits: { ingressRate: 10 } })).rejects.toThrow(/ingressRate/);
    await expect(b.rt.run({ name: "x2", command: ["true"], networks: [{ network: "none" }], limits: { egressRate: 1e6 } })).rejects.toThrow(/bridge network/);
    expect((await b.store.containers.list()).length).toBe(before);
    expect(() => parseRate("fast", "ingress-rate")).toThrow(/invalid rate/);
    expect(parseRate("20mbit", "x")).toBe(20e6);
    expect(parseRate("1.5gbit", "x")).toBe(1.5e9);
  });
});
