/**
 * Berth's `ipvlan` CNI plugin, run as a runtime runs it, against a kernel that
 * has ipvlan. This machine's kernel lacks it, so this file runs inside
 * /work/shared/tools/run-in-vm.sh (test/netns/ipvlan-vm.test.ts starts that VM
 * once for the whole test/vm folder, with BERTH_CNI_BIN pointing at the compiled
 * plugins when they are built); run directly on a kernel without ipvlan it skips
 * with a message.
 *
 * l2 (containers and a LAN peer on one master), l3 and l3s (one dummy master
 * per mode: the kernel keeps one mode per master), CHECK/DEL, bad input leaving
 * nothing behind, and the same l2 configuration through the reference ipvlan
 * plugin giving the same result and container state.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertRootUntouched, canPing, createSandbox, ipJson, RUN_PREFIX, type Sandbox, reachable } from "../harness/sandbox.ts";
import { addrState, type CniCall, cni, type Impl, linkState, normaliseResult, ok, routeState } from "../netns/cni-util.ts";

const probe = Bun.spawnSync(["unshare", "--net", "--", "sh", "-c", "ip link add d0 type dummy && ip link add link d0 name i0 type ipvlan mode l2"], {
  stdout: "pipe",
  stderr: "pipe",
});
const HAVE_IPVLAN = probe.exitCode === 0;
if (!HAVE_IPVLAN) console.error(`[cni-ipvlan] skipped: this kernel has no ipvlan (${probe.stderr.toString().trim()}); run it through run-in-vm.sh`);

assertRootUntouched();

/** Generous: under TCG emulation every process start costs ~0.5-2 s. */
const T = 240_000;

let sb: Sandbox;
let dataDir: string;
beforeAll(() => {
  sb = createSandbox("iv");
  dataDir = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}ipvlan-`));
});
afterAll(async () => {
  await sb.cleanup();
  rmSync(dataDir, { recursive: true, force: true });
});

function sh(argv: string[]): void {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
}

function conf(name: string, master: string, mode: string, subnet: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: "1.0.0", name, type: "ipvlan", master, mode, ipam: { type: "host-local", dataDir, subnet }, ...over };
}

function call(c: Partial<CniCall> & Pick<CniCall, "command" | "conf">, s: Sandbox = sb): ReturnType<typeof cni> {
  return cni({ host: s.host, plugin: "ipvlan", ifname: "eth0", ...c });
}

function mode(ns: string): string | undefined {
  return ipJson<{ linkinfo?: { info_data?: { mode?: string } } }[]>(ns, "-d", "link", "show", "dev", "eth0")[0]?.linkinfo?.info_data?.mode;
}

describe.skipIf(!HAVE_IPVLAN)("ipvlan", () => {
  test("l2: containers and a LAN peer on one master reach each other; CHECK, DEL twice", () => {
    const lan = sb.netns("lan");
    sh(["ip", "-n", sb.host, "link", "add", "ip2m", "type", "veth", "peer", "name", "eth0", "netns", lan]);
    sh(["ip", "-n", sb.host, "link", "set", "ip2m", "up"]);
    sh(["ip", "-n", lan, "addr", "add", "10.71.0.1/24", "dev", "eth0"]);
    sh(["ip", "-n", lan, "link", "set", "eth0", "up"]);
    const c = conf("ivl2", "ip2m", "l2", "10.71.0.0/24");
    const [c1, c2] = [sb.netns("a"), sb.netns("a")];
    const r1 = ok(call({ command: "ADD", conf: c, containerId: c1, netns: c1 })).json;
    ok(call({ command: "ADD", conf: c, containerId: c2, netns: c2 }));
    const masterMac = ipJson<{ address: string }[]>(sb.host, "link", "show", "dev", "ip2m")[0]?.address;
    expect(r1.interfaces).toEqual([{ name: "eth0", mac: masterMac, sandbox: `/run/netns/${c1}` }]);
    expect(r1.ips).toEqual([{ interface: 0, address: "10.71.0.2/24", gateway: "10.71.0.1" }]);
    expect(mode(c1)).toBe("l2");
    expect(reachable(c1, "10.71.0.3")).toBe(true);
    expect(reachable(c1, "10.71.0.1")).toBe(true);
    ok(call({ command: "CHECK", conf: { ...c, prevResult: r1 }, containerId: c1, netns: c1 }));
    ok(call({ command: "DEL", conf: c, containerId: c1, netns: c1 }));
    ok(call({ command: "DEL", conf: c, containerId: c1, netns: c1 }));
    expect(call({ command: "CHECK", conf: { ...c, prevResult: r1 }, containerId: c1, netns: c1 }).json.code).toBe(102);
    ok(call({ command: "DEL", conf: c, containerId: c2, netns: c2 }));
    expect(linkState(c1)).toEqual(["lo - mtu=65536 up"]);
  }, T);

  test.each(["l3", "l3s"])("%s on a dummy master: containers route to each other", (m) => {
    const master = `ipd${m}`;
    sh(["ip", "-n", sb.host, "link", "add", master, "type", "dummy"]);
    sh(["ip", "-n", sb.host, "link", "set", master, "up"]);
    const subnet = m === "l3" ? "10.72.0.0/24" : "10.73.0.0/24";
    const c = conf(`iv${m}`, master, m, subnet, { mtu: 1400 });
    const [c1, c2] = [sb.netns("b"), sb.netns("b")];
    ok(call({ command: "ADD", conf: c, containerId: c1, netns: c1 }));
    const r2 = ok(call({ command: "ADD", conf: c, containerId: c2, netns: c2 })).json;
    expect(mode(c1)).toBe(m);
    expect(linkState(c1)).toContain(`eth0 ipvlan/${m} mtu=1400 up`);
    expect(reachable(c1, r2.ips[0].address.split("/")[0])).toBe(true);
    ok(call({ command: "DEL", conf: c, containerId: c1, netns: c1 }));
    ok(call({ command: "DEL", conf: c, containerId: c2, netns: c2 }));
  }, T);

  test("bad input changes nothing: a MAC, an unknown mode, a missing master, mtu above the master's", () => {
    sh(["ip", "-n", sb.host, "link", "add", "ipbad", "type", "dummy"]);
    const c1 = sb.netns("x");
    const before = JSON.stringify([linkState(c1), linkState(sb.host)]);
    for (const [c, code, msg] of [
      [conf("ivbad", "ipbad", "l2", "10.74.0.0/24", { runtimeConfig: { mac: "02:00:00:00:00:09" } }), 2, "MAC"],
      [conf("ivbad", "ipbad", "l4", "10.74.0.0/24"), 7, "mode"],
      [conf("ivbad", "nope0", "l2", "10.74.0.0/24"), 7, "nope0"],
      [conf("ivbad", "ipbad", "l2", "10.74.0.0/24", { mtu: 9999 }), 7, "mtu"],
    ] as [Record<string, unknown>, number, string][]) {
      const out = call({ command: "ADD", conf: c, containerId: "bad", netns: c1 });
      expect(out.json?.code).toBe(code);
      expect(out.json?.msg).toContain(msg);
      expect(JSON.stringify([linkState(c1), linkState(sb.host)])).toBe(before);
    }
  }, T);

  test("differential: the reference ipvlan plugin gives the same result and container state (l2)", async () => {
    const run = async (impl: Impl) => {
      const s = createSandbox(impl === "ref" ? "ir" : "ib");
      const dd = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}ivd-`));
      try {
        sh(["ip", "-n", s.host, "link", "add", "ipm0", "type", "dummy"]);
        sh(["ip", "-n", s.host, "link", "set", "ipm0", "up"]);
        const c = { ...conf("ivdiff", "ipm0", "l2", "10.75.0.0/24"), ipam: { type: "host-local", dataDir: dd, subnet: "10.75.0.0/24", routes: [{ dst: "0.0.0.0/0" }] } };
        const cs = [s.netns("c"), s.netns("c")];
        const results = cs.map((n) => normaliseResult(ok(call({ impl, command: "ADD", conf: c, containerId: `d${n.slice(-2)}`, netns: n }, s), impl).json));
        const state = cs.map((n) => [linkState(n), addrState(n), routeState(n)]);
        const ping = canPing(cs[0] ?? "", "10.75.0.3", 3);
        const dels = cs.map((n) => call({ impl, command: "DEL", conf: c, containerId: `d${n.slice(-2)}`, netns: n }, s).code);
        return { results, state, ping, dels, after: cs.map((n) => linkState(n)) };
      } finally {
        rmSync(dd, { recursive: true, force: true });
        await s.cleanup();
      }
    };
    const ref = await run("ref");
    const berth = await run("berth");
    expect(ref.ping).toBe(true);
    expect(berth).toEqual(ref);
  }, T);
});

test("kernel support probe ran", () => {
  expect(typeof HAVE_IPVLAN).toBe("boolean");
});
