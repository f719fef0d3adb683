/**
 * Berth's CNI runtime against fake plugins (sh wrappers around a Bun script in a
 * temp CNI_PATH): conflist loading, version negotiation, capability injection,
 * chaining, the libcni cache format, DEL/CHECK/GC/STATUS and name validation.
 */
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CniError } from "../../src/cni/errors.ts";
import { cachePath, decodeConfig } from "../../src/cni/runtime/cache.ts";
import { containerIdFor } from "../../src/cni/runtime/cli.ts";
import { loadConfList, parseConfList, type NetworkConfigList } from "../../src/cni/runtime/conflist.ts";
import { buildRequest, CniRuntime, parseArgs } from "../../src/cni/runtime/runtime.ts";
import { assertRootUntouched, RUN_PREFIX } from "../harness/sandbox.ts";

assertRootUntouched();

const root = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}cnirt-`));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const FAKE = join(import.meta.dir, "..", "fixtures", "fake-cni-plugin.ts");
const log = join(root, "calls.log");

interface Call {
  type: string;
  cmd: string;
  env: Record<string, string>;
  conf: Record<string, unknown>;
}

function fakePlugin(dir: string, type: string, versions = "0.3.0,0.3.1,0.4.0,1.0.0,1.1.0"): void {
  mkdirSync(dir, { recursive: true });
  const p = join(dir, type);
  writeFileSync(p, `#!/bin/sh\nFAKE_TYPE=${type} FAKE_VERSIONS=${versions} FAKE_LOG=${log} exec ${process.execPath} ${FAKE}\n`);
  chmodSync(p, 0o755);
}

function calls(): Call[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Call);
}
const nonVersion = () => calls().filter((c) => c.cmd !== "VERSION");

const bin = join(root, "bin");
fakePlugin(bin, "alpha");
fakePlugin(bin, "beta");
fakePlugin(bin, "gamma");
fakePlugin(bin, "old", "0.3.0,0.3.1,0.4.0,1.0.0");

function list(plugins: unknown[], extra: Record<string, unknown> = {}): NetworkConfigList {
  return parseConfList(JSON.stringify({ cniVersion: "1.1.0", name: "unet", plugins, ...extra }), "test.conflist");
}

let cacheDir = "";
let rt: CniRuntime;
let n = 0;
beforeEach(() => {
  rmSync(log, { force: true });
  n++;
  cacheDir = join(root, `cache${n}`);
  rt = new CniRuntime({ path: [join(root, "nothing-here"), bin], cacheDir });
});

const rtc = (over: Record<string, unknown> = {}) => ({ containerId: "ctr1", netns: "/run/netns/fake", ifname: "eth0", ...over });

describe("conflist loading", () => {
  test("lexical order: the first *.conflist with the name wins; others are ignored", () => {
    const d = join(root, "confdir1");
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "20-b.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "beta" }] }));
    writeFileSync(join(d, "10-a.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "alpha" }] }));
    writeFileSync(join(d, "05-other.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "other", plugins: [{ type: "gamma" }] }));
    writeFileSync(join(d, "01-n.conf"), JSON.stringify({ cniVersion: "1.0.0", name: "n", type: "gamma" }));
    const l = loadConfList(d, "n");
    expect(l.plugins.map((p) => p.type)).toEqual(["alpha"]);
    expect(l.source.endsWith("10-a.conflist")).toBe(true);
    expect(loadConfList(d, "other").plugins[0]!.type).toBe("gamma");
  });

  test("falls back to single *.conf / *.json configs, up-converted to a list", () => {
    const d = join(root, "confdir2");
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "10-x.json"), JSON.stringify({ cniVersion: "0.4.0", name: "single", type: "beta", custom: { keep: 1 } }));
    const l = loadConfList(d, "single");
    expect(l.cniVersion).toBe("0.4.0");
    expect(l.plugins).toHaveLength(1);
    expect(l.plugins[0]!.type).toBe("beta");
    expect(l.plugins[0]!.custom).toEqual({ keep: 1 });
  });

  test("appends <dir>/<name>/*.conf unless loadOnlyInlinedPlugins; string booleans are accepted", () => {
    const d = join(root, "confdir3");
    mkdirSync(join(d, "agg"), { recursive: true });
    writeFileSync(join(d, "agg.conflist"), JSON.stringify({ cniVersion: "1.1.0", name: "agg", disableCheck: "true", plugins: [{ type: "alpha" }] }));
    writeFileSync(join(d, "agg", "2.conf"), JSON.stringify({ type: "gamma" }));
    writeFileSync(join(d, "agg", "1.conf"), JSON.stringify({ type: "beta" }));
    const l = loadConfList(d, "agg");
    expect(l.plugins.map((p) => p.type)).toEqual(["alpha", "beta", "gamma"]);
    expect(l.disableCheck).toBe(true);
    writeFileSync(join(d, "agg.conflist"), JSON.stringify({ cniVersion: "1.1.0", name: "agg", loadOnlyInlinedPlugins: true, plugins: [{ type: "alpha" }] }));
    expect(loadConfList(d, "agg").plugins.map((p) => p.type)).toEqual(["alpha"]);
  });

  test("rejects bad names, bad types, missing networks and loadOnlyInlinedPlugins without plugins", () => {
    expect(() => parseConfList(JSON.stringify({ cniVersion: "1.0.0", name: "bad/name", plugins: [] }))).toThrow(/invalid network name/);
    expect(() => parseConfList(JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "../x" }] }))).toThrow(/invalid plugin type/);
    expect(() => parseConfList(JSON.stringify({ cniVersion: "1.0.0", name: "n", loadOnlyInlinedPlugins: true }))).toThrow(/loadOnlyInlinedPlugins/);
    expect(() => parseConfList("{nope")).toThrow(/invalid JSON/);
    expect(() => loadConfList(join(root, "confdir1"), "missing")).toThrow(/no net configuration with name "missing"/);
  });
});

describe("version negotiation", () => {
  test("highest of cniVersion ∪ cniVersions that every plugin supports", async () => {
    expect(await rt.negotiate(list([{ type: "alpha" }, { type: "beta" }], { cniVersion: "1.0.0", cniVersions: ["0.4.0", "1.1.0"] }))).toBe("1.1.0");
    expect(await rt.negotiate(list([{ type: "alpha" }, { type: "old" }], { cniVersion: "1.0.0", cniVersions: ["0.4.0", "1.1.0"] }))).toBe("1.0.0");
    // versions Berth does not know are ignored, not fatal
    expect(await rt.negotiate(list([{ type: "alpha" }], { cniVersion: "", cniVersions: ["1.0.0", "9.9.9"] }))).toBe("1.0.0");
  });

  test("no common version: CNI error 1 naming the plugin", async () => {
    const e = await rt.negotiate(list([{ type: "old" }], { cniVersion: "1.1.0" })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CniError);
    expect((e as CniError).code).toBe(1);
    expect((e as CniError).message).toContain('plugin type="old"');
  });

  test("VERSION is asked with the list's version and only CNI_COMMAND set meaningfully", async () => {
    await rt.validate(list([{ type: "alpha" }], { cniVersion: "1.0.0" }));
    const v = calls().find((c) => c.cmd === "VERSION")!;
    expect(v.conf).toEqual({ cniVersion: "1.0.0" });
    expect(v.env.CNI_COMMAND).toBe("VERSION");
  });

  test("VERSION answers are remembered per binary (path, size, mtime) across runtime instances", async () => {
    const l = list([{ type: "alpha" }, { type: "beta" }], { cniVersion: "1.0.0" });
    await rt.negotiate(l);
    expect(calls().filter((c) => c.cmd === "VERSION")).toHaveLength(2);
    rmSync(log, { force: true });
    await new CniRuntime({ path: [bin], cacheDir }).negotiate(l);
    expect(calls()).toHaveLength(0);
    // a replaced binary is asked again
    const d = join(root, "bin-versions");
    fakePlugin(d, "alpha");
    fakePlugin(d, "beta");
    await new CniRuntime({ path: [d], cacheDir }).negotiate(l);
    rmSync(log, { force: true });
    fakePlugin(d, "beta", "0.4.0,1.0.0");
    await new CniRuntime({ path: [d], cacheDir }).negotiate(l);
    expect(calls().map((c) => `${c.cmd} ${c.type}`)).toEqual(["VERSION beta"]);
  });

  test("a plugin missing from CNI_PATH is a clear error", async () => {
    const e = await rt.negotiate(list([{ type: "nosuch" }])).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/failed to find plugin "nosuch" in path/);
  });
});

describe("requests, chaining and capabilities", () => {
  test("runtimeConfig only for declared capabilities the runtime supplies; capabilities removed; keys kept", () => {
    const l = list([{ type: "alpha", capabilities: { portMappings: true, bandwidth: false, ips: true }, custom: [1, 2] }]);
    const req = buildRequest(l, l.plugins[0]!, "1.0.0", { ...rtc(), capabilityArgs: { portMappings: [{ hostPort: 1, containerPort: 2 }], bandwidth: { ingressRate: 1 }, mac: "x" } });
    expect(req.runtimeConfig).toEqual({ portMappings: [{ hostPort: 1, containerPort: 2 }] });
    expect(req.capabilities).toBeUndefined();
    expect(req.name).toBe("unet");
    expect(req.cniVersion).toBe("1.0.0");
    expect(req.custom).toEqual([1, 2]);
    const none = buildRequest(l, l.plugins[0]!, "1.0.0", rtc());
    expect(none.runtimeConfig).toBeUndefined();
  });

  test("ADD runs in order, passing each result on as prevResult, with the CNI_* environment", async () => {
    const l = list([{ type: "alpha", addIP: "10.1.0.5/24" }, { type: "beta", capabilities: { portMappings: true } }, { type: "gamma" }]);
    const r = await rt.add(l, { ...rtc(), args: [["K8S_POD_NAME", "p1"], ["IgnoreUnknown", "1"]], capabilityArgs: { portMappings: [] } });
    expect((r.interfaces as { name: string }[]).map((i) => i.name)).toEqual(["alpha:eth0", "beta:eth0", "gamma:eth0"]);
    const adds = nonVersion();
    expect(adds.map((c) => `${c.cmd} ${c.type}`)).toEqual(["ADD alpha", "ADD beta", "ADD gamma"]);
    expect(adds[0]!.conf.prevResult).toBeUndefined();
    expect((adds[1]!.conf.prevResult as { ips: { address: string }[] }).ips[0]!.address).toBe("10.1.0.5/24");
    expect(adds[1]!.conf.runtimeConfig).toEqual({ portMappings: [] });
    expect(adds[2]!.conf.runtimeConfig).toBeUndefined();
    expect(adds[0]!.env).toMatchObject({ CNI_COMMAND: "ADD", CNI_CONTAINERID: "ctr1", CNI_NETNS: "/run/netns/fake", CNI_IFNAME: "eth0", CNI_ARGS: "K8S_POD_NAME=p1;IgnoreUnknown=1" });
    expect(adds[0]!.env.CNI_PATH).toBe(`${join(root, "nothing-here")}:${bin}`);
  });

  test("the cache is libcni's cniCacheV1 (dir 0700, file 0600) and DEL uses it in reverse order, then removes it", async () => {
    const l = list([{ type: "alpha", addIP: "10.1.0.6/24" }, { type: "beta" }]);
    const result = await rt.add(l, { ...rtc(), args: [["A", "1"]], capabilityArgs: { x: 1 } });
    const p = cachePath(cacheDir, { network: "unet", containerId: "ctr1", ifname: "eth0" });
    expect(p).toBe(join(cacheDir, "results", "unet-ctr1-eth0"));
    expect(statSync(join(cacheDir, "results")).mode & 0o777).toBe(0o700);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    const c = JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
    expect(Object.keys(c).sort()).toEqual(["capabilityArgs", "cniArgs", "config", "containerId", "ifName", "kind", "netns", "networkName", "result"]);
    expect(c).toMatchObject({ kind: "cniCacheV1", containerId: "ctr1", ifName: "eth0", networkName: "unet", netns: "/run/netns/fake", cniArgs: [["A", "1"]], capabilityArgs: { x: 1 } });
    expect(decodeConfig(c.config as string)).toBe(l.bytes);
    expect(c.result).toEqual(result);

    rmSync(log, { force: true });
    await rt.del(l, rtc());
    const dels = nonVersion();
    expect(dels.map((d) => `${d.cmd} ${d.type}`)).toEqual(["DEL beta", "DEL alpha"]);
    expect(dels[0]!.conf.prevResult).toEqual(result);
    expect(existsSync(p)).toBe(false);
    // DEL is idempotent: again, without a cache, no prevResult
    rmSync(log, { force: true });
    await rt.del(l, rtc());
    expect(nonVersion().every((d) => d.conf.prevResult === undefined)).toBe(true);
  });

  test("ADD twice for the same attachment is refused; a failed ADD runs DEL and reports the plugin's code", async () => {
    const l = list([{ type: "alpha" }]);
    await rt.add(l, rtc());
    await expect(rt.add(l, rtc())).rejects.toThrow(/already attached/);
    rmSync(log, { force: true });
    const bad = list([{ type: "alpha" }, { type: "beta", failOn: "ADD", failCode: 11 }]);
    const e = (await rt.add(bad, rtc({ containerId: "ctr2" })).catch((x: unknown) => x)) as CniError;
    expect(e.code).toBe(11);
    expect(e.message).toContain('plugin type="beta" failed (add): fake beta failed on ADD');
    expect(nonVersion().map((c) => `${c.cmd} ${c.type}`)).toEqual(["ADD alpha", "ADD beta", "DEL beta", "DEL alpha"]);
    expect(existsSync(cachePath(cacheDir, { network: "unet", containerId: "ctr2", ifname: "eth0" }))).toBe(false);
  });

  test("CHECK passes the cached result in order; disableCheck skips it; no cache is an error", async () => {
    const l = list([{ type: "alpha" }, { type: "beta" }]);
    await expect(rt.check(l, rtc())).rejects.toThrow(/no cached result/);
    const r = await rt.add(l, rtc());
    rmSync(log, { force: true });
    await rt.check(l, rtc());
    const checks = nonVersion();
    expect(checks.map((c) => `${c.cmd} ${c.type}`)).toEqual(["CHECK alpha", "CHECK beta"]);
    expect(checks[1]!.conf.prevResult).toEqual(r);
    rmSync(log, { force: true });
    await rt.check(list([{ type: "alpha" }, { type: "beta" }], { disableCheck: true }), rtc());
    expect(nonVersion()).toHaveLength(0);
    const failing = list([{ type: "alpha", failOn: "CHECK", failCode: 110 }, { type: "beta" }]);
    const e = (await rt.check(failing, rtc()).catch((x: unknown) => x)) as CniError;
    expect(e.code).toBe(110);
  });

  test("GC: DEL for cached attachments not valid, then GC with cni.dev/valid-attachments to each plugin", async () => {
    const l = list([{ type: "alpha" }, { type: "beta" }]);
    await rt.add(l, rtc({ containerId: "keep" }));
    await rt.add(l, rtc({ containerId: "leak", netns: "/run/netns/leaked" }));
    rmSync(log, { force: true });
    const r = await rt.gc(l, [{ containerID: "keep", ifname: "eth0" }]);
    expect(r.deleted).toEqual(["leak/eth0"]);
    const c = nonVersion();
    expect(c.map((x) => `${x.cmd} ${x.type} ${x.env.CNI_CONTAINERID ?? ""}`)).toEqual(["DEL beta leak", "DEL alpha leak", "GC alpha ", "GC beta "]);
    expect(c[0]!.env.CNI_NETNS).toBe("/run/netns/leaked");
    expect(c[2]!.conf["cni.dev/valid-attachments"]).toEqual([{ containerID: "keep", ifname: "eth0" }]);
    expect(rt.attachments(l).map((a) => a.containerId)).toEqual(["keep"]);
  });

  test("GC below 1.1.0 only deletes; disableGC skips the plugin GC; errors are aggregated", async () => {
    const l10 = list([{ type: "alpha" }], { cniVersion: "1.0.0" });
    await rt.add(l10, rtc({ containerId: "a1" }));
    rmSync(log, { force: true });
    await rt.gc(l10, []);
    expect(nonVersion().map((c) => c.cmd)).toEqual(["DEL"]);
    rmSync(log, { force: true });
    await rt.gc(list([{ type: "alpha" }], { disableGC: true }), []);
    expect(nonVersion()).toHaveLength(0);
    const e = (await rt.gc(list([{ type: "alpha", failOn: "GC" }, { type: "beta", failOn: "GC" }]), []).catch((x: unknown) => x)) as CniError;
    expect(e.message).toContain('plugin type="alpha" failed (gc)');
    expect(e.message).toContain('plugin type="beta" failed (gc)');
  });

  test("STATUS: every plugin at 1.1.0, stops at the first failure; nothing below 1.1.0", async () => {
    await rt.status(list([{ type: "alpha" }, { type: "beta" }]));
    expect(nonVersion().map((c) => `${c.cmd} ${c.type}`)).toEqual(["STATUS alpha", "STATUS beta"]);
    rmSync(log, { force: true });
    const e = (await rt.status(list([{ type: "alpha", failOn: "STATUS", failCode: 50 }, { type: "beta" }])).catch((x: unknown) => x)) as CniError;
    expect(e.code).toBe(50);
    expect(nonVersion().map((c) => c.type)).toEqual(["alpha"]);
    rmSync(log, { force: true });
    await rt.status(list([{ type: "alpha" }], { cniVersion: "1.0.0" }));
    expect(nonVersion()).toHaveLength(0);
  });

  test("names are validated before any plugin runs", async () => {
    const l = list([{ type: "alpha" }]);
    await expect(rt.add(l, rtc({ containerId: "-bad" }))).rejects.toThrow(/container ID/);
    await expect(rt.add(l, rtc({ ifname: "way-too-long-ifname" }))).rejects.toThrow(/interface name/);
    await expect(rt.add(l, rtc({ ifname: "a/b" }))).rejects.toThrow(/interface name/);
    await expect(rt.del(l, rtc({ containerId: "a b" }))).rejects.toThrow(/container ID/);
    expect(calls()).toHaveLength(0);
  });

  test("CNI_ARGS parsing and cnitool-style container IDs", () => {
    expect(parseArgs("A=1;B=x=y;;")).toEqual([
      ["A", "1"],
      ["B", "x=y"],
    ]);
    expect(() => parseArgs("novalue")).toThrow(/invalid CNI_ARGS/);
    expect(containerIdFor("/run/netns/a")).toMatch(/^berth-[0-9a-f]{20}$/);
    expect(containerIdFor("/run/netns/a")).not.toBe(containerIdFor("/run/netns/b"));
  });

  test("results of another version family are converted to the list's version", async () => {
    // a 1.0.0 list whose first plugin answers in 0.4.0 shape: later plugins see 1.0.0
    const d = join(root, "bin2");
    fakePlugin(d, "alpha");
    fakePlugin(d, "beta");
    const conv = join(d, "conv");
    writeFileSync(conv, `#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = VERSION ]; then echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'; exit 0; fi\necho '{"cniVersion":"0.4.0","interfaces":[{"name":"c0","sandbox":"/x"}],"ips":[{"version":"4","address":"10.9.0.2/24","interface":0}]}'\n`);
    chmodSync(conv, 0o755);
    const r2 = new CniRuntime({ path: [d], cacheDir });
    const res = await r2.add(list([{ type: "conv" }, { type: "beta" }], { cniVersion: "1.0.0" }), rtc({ containerId: "conv1" }));
    expect(res.cniVersion).toBe("1.0.0");
    const beta = nonVersion().find((c) => c.type === "beta")!;
    const prev = beta.conf.prevResult as { cniVersion: string; ips: Record<string, unknown>[] };
    expect(prev.cniVersion).toBe("1.0.0");
    expect(prev.ips[0]).toEqual({ interface: 0, address: "10.9.0.2/24" });
  });
});
