// portmap's ADD and DEL without listing the table (src/cni/plugins/portmap-fast.ts), against the
// kernel: every conflict between owners is still refused (including the one the kernel cannot see:
// an every-address mapping over another owner's specific-address one), a DEL after a refused ADD
// leaves the other owner's mapping alone, a re-ADD replaces, rules flushed by someone are healed,
// and GC prunes the host-port index. Each outcome read back with `nft -j`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { assertRootUntouched, createSandbox, nftJson, type Sandbox } from "../harness/sandbox.ts";
import { cni, ok } from "./cni-util.ts";

assertRootUntouched();

interface Mapping {
  hostPort: number;
  containerPort: number;
  protocol?: string;
  hostIP?: string;
}

function conf(ip: string, mappings: Mapping[], extra: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.0.0",
    name: "pmf",
    type: "portmap",
    capabilities: { portMappings: true },
    runtimeConfig: { portMappings: mappings },
    prevResult: { cniVersion: "1.0.0", interfaces: [{ name: "eth0", sandbox: "/run/netns/x" }], ips: [{ address: `${ip}/24`, interface: 0 }] },
    ...extra,
  };
}

describe("portmap without listing the table", () => {
  let sb: Sandbox;
  let ctr: string;
  const call = (command: "ADD" | "DEL" | "GC", id: string, c: unknown) => cni({ plugin: "portmap", host: sb.host, command, containerId: id, netns: ctr, ifname: "eth0", conf: c });
  const elements = (set: string) =>
    nftJson(sb.host, "list", "table", "inet", "berth-portmap")
      .nftables.flatMap((o) => {
        const s = (o.set ?? o.map) as { name: string; elem?: unknown[] } | undefined;
        return s?.name === set ? (s.elem ?? []) : [];
      })
      .map((e) => JSON.stringify(e));
  const chainRules = (chain: string) => nftJson(sb.host, "list", "chain", "inet", "berth-portmap", chain).nftables.filter((o) => o.rule).length;

  beforeAll(() => {
    sb = createSandbox("pmf");
    ctr = sb.netns("pmfc");
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  test("ADD and DEL of every-address mappings: one element each, gone after DEL", () => {
    ok(call("ADD", "a", conf("10.44.0.2", [{ hostPort: 8080, containerPort: 80 }])));
    ok(call("ADD", "b", conf("10.44.0.3", [{ hostPort: 8081, containerPort: 80 }])));
    expect(elements("dnat4")).toHaveLength(2);
    ok(call("DEL", "b", conf("10.44.0.3", [{ hostPort: 8081, containerPort: 80 }])));
    const left = elements("dnat4");
    expect(left).toHaveLength(1);
    expect(left[0]).toContain("pmf/a/eth0");
    expect(elements("hairpin4").join()).not.toContain("10.44.0.3");
    expect(elements("local4").join()).not.toContain("10.44.0.3");
  });

  test("an every-address mapping over another owner's specific-address one is refused (the host-port index)", () => {
    ok(call("ADD", "spec", conf("10.44.0.4", [{ hostPort: 9000, containerPort: 80, hostIP: "127.0.0.1" }])));
    expect(elements("hostports4").join()).toContain("9000");
    const r = call("ADD", "any", conf("10.44.0.5", [{ hostPort: 9000, containerPort: 80 }]));
    expect(r.code).not.toBe(0);
    expect(r.stdout).toContain("already published by pmf/spec/eth0");
    expect(elements("dnat4").join()).not.toContain("10.44.0.5");
    // the runtime's DEL after the failed ADD (with its prevResult) leaves the other owner's mapping alone
    ok(call("DEL", "any", conf("10.44.0.5", [{ hostPort: 9000, containerPort: 80 }])));
    expect(elements("dnat4").join()).toContain("pmf/spec/eth0");
  });

  test("a specific-address mapping under another owner's every-address one is refused (the kernel's overlap check)", () => {
    const r = call("ADD", "under", conf("10.44.0.6", [{ hostPort: 8080, containerPort: 80, hostIP: "127.0.0.1" }]));
    expect(r.code).not.toBe(0);
    expect(r.stdout).toContain("already published by pmf/a/eth0");
    ok(call("DEL", "under", conf("10.44.0.6", [{ hostPort: 8080, containerPort: 80, hostIP: "127.0.0.1" }])));
    expect(elements("dnat4").join()).toContain("pmf/a/eth0");
  });

  test("a re-ADD of the same attachment replaces its elements; DEL without prevResult still finds them", () => {
    ok(call("ADD", "re", conf("10.44.0.7", [{ hostPort: 7000, containerPort: 80 }])));
    ok(call("ADD", "re", conf("10.44.0.7", [{ hostPort: 7001, containerPort: 80 }])));
    const mine = elements("dnat4").filter((e) => e.includes("pmf/re/eth0"));
    expect(mine).toHaveLength(1);
    expect(mine[0]).toContain("7001");
    const noPrev: Record<string, unknown> = conf("10.44.0.7", [{ hostPort: 7001, containerPort: 80 }]);
    delete noPrev.prevResult;
    ok(call("DEL", "re", noPrev));
    expect(elements("dnat4").join()).not.toContain("pmf/re/eth0");
    // a second DEL is fine
    ok(call("DEL", "re", conf("10.44.0.7", [{ hostPort: 7001, containerPort: 80 }])));
  });

  test("rules flushed by someone else are put back by the next ADD", () => {
    Bun.spawnSync(["ip", "netns", "exec", sb.host, "nft", "flush", "chain", "inet", "berth-portmap", "published"]);
    expect(chainRules("published")).toBe(0);
    ok(call("ADD", "heal", conf("10.44.0.8", [{ hostPort: 7100, containerPort: 80 }])));
    expect(chainRules("published")).toBe(4);
    expect(elements("dnat4").filter((e) => e.includes("pmf/heal/eth0"))).toHaveLength(1);
  });

  test("GC prunes host-port index entries no specific-address mapping uses", () => {
    ok(call("DEL", "spec", conf("10.44.0.4", [{ hostPort: 9000, containerPort: 80, hostIP: "127.0.0.1" }])));
    // DEL leaves the index entry (another owner might share the port)
    expect(elements("hostports4").join()).toContain("9000");
    ok(call("GC", "", { ...conf("10.44.0.2", []), "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }, { containerID: "heal", ifname: "eth0" }] }));
    expect(elements("hostports4").join()).not.toContain("9000");
    // the port is free for every address again, through the fast path
    ok(call("ADD", "any2", conf("10.44.0.9", [{ hostPort: 9000, containerPort: 80 }])));
    expect(elements("dnat4").join()).toContain("pmf/any2/eth0");
  });
});
