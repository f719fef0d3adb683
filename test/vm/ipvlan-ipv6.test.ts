/**
 * IPv6-only ipvlan networks with real IPv6 packets (l2 with a router on the
 * segment, l3 routed by the parent). Like ipvlan.test.ts this needs a kernel with
 * ipvlan: it runs only inside the VM (BERTH_IN_VM=1, see test/netns/ipvlan-vm.test.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { EndpointRecord } from "../../src/store/types.ts";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { assertRootUntouched, ipJson, reachable } from "../harness/sandbox.ts";
import { addSegment } from "../harness/segment.ts";

const IN_VM = process.env.BERTH_IN_VM === "1";
const T = 120_000;

assertRootUntouched();

const v6 = (e: EndpointRecord): string => e.addresses.find((a) => a.ip.family === 6)!.ip.toString();

function must(...argv: string[]): void {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString().trim()}`);
}

if (!IN_VM) {
  test.skip("IPv6 ipvlan networks: run only inside the VM (BERTH_IN_VM=1, see test/netns/ipvlan-vm.test.ts)", () => {});
} else {
  describe("IPv6-only ipvlan networks (Debian kernel in a VM)", () => {
    let b: TestBerth;
    afterAll(async () => {
      await b?.close();
    }, T);

    test(
      "l2 and l3: containers and the segment router ping each other over IPv6 right after connect; no IPv4 anywhere",
      async () => {
        b = await createTestBerth("iv6");
        const seg = addSegment(b.sb, "uplink6", "192.0.2.98/24");
        must("ip", "-n", seg.ns, "addr", "add", "fd00:68::1/64", "dev", "port0", "nodad");
        await b.ctl.createNetwork({
          name: "l2v6",
          driver: "ipvlan",
          enableIPv6: true,
          enableIPv4: false,
          options: { parent: "uplink6" },
          ipam: { config: [{ subnet: "fd00:68::/64", gateway: "fd00:68::1" }] },
        });
        // ping only: every extra Bun process costs seconds under TCG emulation
        const [c1, c2] = [b.containerNs(), b.containerNs()];
        const e1 = await b.ctl.connect({ network: "l2v6", containerId: "v1", netns: c1 });
        const e2 = await b.ctl.connect({ network: "l2v6", containerId: "v2", netns: c2 });
        expect(e1.addresses.map(String)).toEqual(["fd00:68::2/64"]);
        expect(reachable(c2, v6(e1))).toBe(true);
        expect(reachable(c1, v6(e2))).toBe(true);
        expect(reachable(c1, "fd00:68::1")).toBe(true);
        expect(ipJson<unknown[]>(c1, "-4", "addr", "show", "dev", "eth0").flatMap((l) => (l as { addr_info: unknown[] }).addr_info)).toEqual([]);

        addSegment(b.sb, "uplink7", "192.0.2.97/24");
        await b.ctl.createNetwork({
          name: "l3v6",
          driver: "ipvlan",
          enableIPv6: true,
          enableIPv4: false,
          options: { parent: "uplink7", ipvlan_mode: "l3" },
          ipam: { config: [{ subnet: "fd00:69::/64" }] },
        });
        const [c3, c4] = [b.containerNs(), b.containerNs()];
        const e3 = await b.ctl.connect({ network: "l3v6", containerId: "v3", netns: c3 });
        const e4 = await b.ctl.connect({ network: "l3v6", containerId: "v4", netns: c4 });
        expect(reachable(c3, v6(e4))).toBe(true);
        expect(reachable(c4, v6(e3))).toBe(true);
        const def = ipJson<{ dst: string; dev?: string; gateway?: string }[]>(c3, "-6", "route", "show").find((r) => r.dst === "default");
        expect(def?.dev).toBe("eth0");
        expect(def?.gateway).toBeUndefined();
      },
      T,
    );
  });
}
