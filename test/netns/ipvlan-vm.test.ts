/**
 * ipvlan in the normal suite.
 *
 * This machine's kernel has no ipvlan, so:
 *  1. on the host: creating an ipvlan network is refused as `unavailable`, and nothing
 *     changes (store, links, firewall);
 *  2. the real ipvlan tests (test/vm/, skipped unless BERTH_IN_VM=1) run inside a VM
 *     booting Debian's stock kernel: ONE VM for the whole test/vm folder, through
 *     ../shared/tools/run-in-vm.sh (shared/ sits beside the repository in CI too).
 *     The first use installs qemu and fetches the kernel (~30 s); a run then takes
 *     several minutes under TCG emulation (ipvlan driver, its DNS and IPv6, the
 *     isolation matrix with ipvlan, and the ipvlan CNI plugin).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { assertRootUntouched } from "../harness/sandbox.ts";
import { addSegment } from "../harness/segment.ts";
import { expectBerthError, linkNames, nftTableText } from "./util.ts";

assertRootUntouched();

const repoRoot = join(import.meta.dir, "..", "..");
const runInVm = join(repoRoot, "..", "shared", "tools", "run-in-vm.sh");
// five files under TCG emulation: about 400 s on a loaded 2-core machine
const VM_TIMEOUT_MS = 900_000;
// the CNI plugin tests in test/vm use the compiled plugins when they are built (scripts/build.sh): start-up under
// emulation is several times faster than running them from source
const CNI_BIN = join(repoRoot, "dist", "cni");

describe("ipvlan on this machine's kernel", () => {
  let b: TestBerth;
  beforeAll(async () => {
    b = await createTestBerth("ivh");
    addSegment(b.sb, "uplink0", "10.240.0.1/24");
    // Berth's (empty) table exists from the start, as under berthd: a refused create re-syncs it
    await b.ctl.syncFirewall();
  });
  afterAll(async () => {
    await b?.close();
  });

  test("bad options are refused before the kernel is asked; without ipvlan support the network is refused as unavailable; nothing changes", async () => {
    const snapshot = async () => ({
      networks: (await b.store.networks.list()).map((n) => n.name).sort(),
      hostLinks: linkNames(b.sb.host),
      nft: nftTableText(b.sb.host),
    });
    const before = await snapshot();
    const net = (options: Record<string, string>) => ({ name: "iv", driver: "ipvlan", options, ipam: { config: [{ subnet: "10.240.0.0/24" }] } });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "uplink0", ipvlan_mode: "l4" })), { kind: "invalid", field: "Options.ipvlan_mode", message: "l2, l3, l3s" });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "uplink0", ipvlan_flag: "open" })), { kind: "invalid", field: "Options.ipvlan_flag", message: "bridge, private, vepa" });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "uplink0", mode: "l2" })), { kind: "invalid", code: "unknown-option", field: "Options.mode" });
    await expectBerthError(b.ctl.createNetwork(net({ parent: "nosuch0" })), { kind: "not-found", code: "parent-not-found", field: "Options.parent" });
    if (!(await b.dp.linkKindSupported("ipvlan"))) {
      await expectBerthError(b.ctl.createNetwork(net({ parent: "uplink0" })), { kind: "unavailable", code: "ipvlan-unsupported", message: "ipvlan" });
    }
    expect(await snapshot()).toEqual(before);
  });
});

describe("ipvlan under a full Debian kernel (run-in-vm.sh)", () => {
  test(
    "test/vm passes inside the VM",
    async () => {
      expect(existsSync(runInVm)).toBe(true);
      const p = Bun.spawn(["bash", runInVm, "-t", String(VM_TIMEOUT_MS / 1000 - 30), "--", "node_modules/.bin/bun", "test", "--timeout", "300000", "test/vm/"], {
        cwd: repoRoot,
        env: { ...process.env, BERTH_IN_VM: "1", ...(existsSync(join(CNI_BIN, "ipvlan")) ? { BERTH_CNI_BIN: CNI_BIN } : {}) },
        stdout: "pipe",
        stderr: "pipe",
      });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      const all = `${out}\n${err}`;
      const pass = Number(/^\s*(\d+) pass$/m.exec(all)?.[1] ?? 0);
      const fail = Number(/^\s*(\d+) fail$/m.exec(all)?.[1] ?? -1);
      if (code !== 0 || fail !== 0) console.error(all.slice(-8000));
      expect({ code, fail }).toEqual({ code: 0, fail: 0 });
      expect(pass).toBeGreaterThanOrEqual(6);
    },
    VM_TIMEOUT_MS,
  );
});
