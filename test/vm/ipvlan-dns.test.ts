/**
 * Embedded DNS on ipvlan networks (l2 and l3), inside the VM like the other ipvlan tests
 * (skipped unless BERTH_IN_VM=1; test/netns/ipvlan-vm.test.ts runs this folder in the VM).
 * ipvlan children share their parent's MAC and the host cannot reach them through the
 * parent, so a resolver on a host or gateway address (aardvark-dns's design) could not
 * serve them; Berth's resolver sits on each container's own loopback.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { IP } from "../../src/net/index.ts";
import type { ContainerView } from "../../src/runtime/containers.ts";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { assertRootUntouched } from "../harness/sandbox.ts";
import { addSegment } from "../harness/segment.ts";

const IN_VM = process.env.BERTH_IN_VM === "1";
const T = 120_000;
const QUERY = join(import.meta.dir, "..", "fixtures", "dns-query.ts");

assertRootUntouched();

/** A records for `name`, asked from inside `ns` at 127.0.0.11. */
async function addrs(ns: string, name: string): Promise<string[]> {
  const p = Bun.spawn(["nsenter", `--net=/run/netns/${ns}`, "--", process.execPath, QUERY, "127.0.0.11", "53", name, "A", "udp", "20000"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`dns-query ${name} failed (${code}): ${err}`);
  return (JSON.parse(out) as { answers: { type: string; data: string }[] }).answers.filter((a) => a.type === "A").map((a) => a.data);
}

function vmOnly(name: string, body: () => void): void {
  if (IN_VM) describe(name, body);
  else test.skip(`${name}: runs only inside the VM (BERTH_IN_VM=1, see test/netns/ipvlan-vm.test.ts)`, () => {});
}

vmOnly("embedded DNS on ipvlan networks (Debian kernel in a VM)", () => {
  let b: TestBerth;
  const c: Record<string, ContainerView> = {};
  const ipOf = (name: string) => c[name]!.endpoints[0]!.addresses[0]!.ip.toString();

  beforeAll(async () => {
    // no upstream is ever reached: the names asked are all local
    b = await createTestBerth("ivd", { dns: { upstreams: [{ ip: IP.parse("192.0.2.9"), port: 53 }], forwardTimeoutMs: 300 } });
    addSegment(b.sb, "dnsup0", "10.226.0.1/24");
    addSegment(b.sb, "dnsup1", "10.227.0.1/24");
    await b.ctl.ensurePredefined();
    await b.ctl.createNetwork({ name: "ivl2", driver: "ipvlan", options: { parent: "dnsup0" }, ipam: { config: [{ subnet: "10.226.0.0/24" }] } });
    await b.ctl.createNetwork({ name: "ivl3", driver: "ipvlan", options: { parent: "dnsup1", ipvlan_mode: "l3" }, ipam: { config: [{ subnet: "10.227.0.0/24" }] } });
    c.a = await b.rt.run({ name: "a", command: ["sleep", "300"], networks: [{ network: "ivl2" }] });
    c.b = await b.rt.run({ name: "b", command: ["sleep", "300"], networks: [{ network: "ivl2", aliases: ["ivweb"] }] });
    c.x = await b.rt.run({ name: "x", command: ["sleep", "300"], networks: [{ network: "ivl3" }] });
    c.y = await b.rt.run({ name: "y", command: ["sleep", "300"], networks: [{ network: "ivl3" }] });
  }, T);
  afterAll(async () => {
    await b?.close();
  }, T);

  test(
    "l2 and l3: names and aliases of the same network resolve; names of the other network do not",
    async () => {
      expect(await addrs(c.a!.netns, "b")).toEqual([ipOf("b")]);
      expect(await addrs(c.a!.netns, "ivweb")).toEqual([ipOf("b")]);
      expect(await addrs(c.x!.netns, "y")).toEqual([ipOf("y")]);
      expect(await addrs(c.x!.netns, "a")).toEqual([]);
      expect(await addrs(c.a!.netns, "x")).toEqual([]);
    },
    T,
  );
});
