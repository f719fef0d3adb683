// Dataplane.sysctlSet writes /proc/sys inside a setns window (no `nsenter sysctl` process): the value
// lands in the namespace given and nowhere else, keys are read as sysctl(8) reads them (a slash in a
// dotted key stands for a dot in an interface name), and a bad key or namespace is a clear error.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { assertRootUntouched, createSandbox, type Sandbox } from "../harness/sandbox.ts";

assertRootUntouched();

const dp = new Dataplane();
const read = (ns: string, file: string) => Bun.spawnSync(["ip", "netns", "exec", ns, "cat", `/proc/sys/${file}`]).stdout.toString().trim();

describe("sysctl in a namespace", () => {
  let sb: Sandbox;
  let a: string;
  let b: string;
  beforeAll(() => {
    sb = createSandbox("sctl");
    a = sb.host;
    b = sb.netns("sctlb");
    Bun.spawnSync(["ip", "-n", a, "link", "add", "v.1", "type", "veth", "peer", "name", "v.2"]);
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  test("the value lands in the namespace given, not in another one or the root", async () => {
    const rootBefore = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
    await dp.sysctlSet(a, { "net.ipv4.ip_forward": 1 });
    expect(read(a, "net/ipv4/ip_forward")).toBe("1");
    expect(read(b, "net/ipv4/ip_forward")).toBe("0");
    expect(readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim()).toBe(rootBefore);
  });

  test("keys as sysctl(8) reads them: dotted with a slash for a dot in a name, or slash-separated", async () => {
    await dp.sysctlSet(a, { "net.ipv4.conf.v/1.route_localnet": 1, "net/ipv4/conf/v.2/route_localnet": 1 });
    expect(read(a, "net/ipv4/conf/v.1/route_localnet")).toBe("1");
    expect(read(a, "net/ipv4/conf/v.2/route_localnet")).toBe("1");
  });

  test("a missing key or namespace is an error naming it", async () => {
    await expect(dp.sysctlSet(a, { "net.ipv4.conf.nosuchif.route_localnet": 1 })).rejects.toThrow(/net\.ipv4\.conf\.nosuchif\.route_localnet=1 \(netns .*\): .*no such file/i);
    await expect(dp.sysctlSet(`${a}-gone`, { "net.ipv4.ip_forward": 1 })).rejects.toThrow(/Cannot open network namespace/);
    await expect(dp.sysctlSet(a, { "net/../kernel/hostname": "x" })).rejects.toThrow(/invalid sysctl key/);
  });
});
