/**
 * `tuning` (chained): adjusts the interface CNI_IFNAME in the container
 * namespace and passes the previous result on (with the new MAC / MTU).
 * Keys: sysctl (map; only net.* keys, which belong to the container's network
 * namespace), mac (also runtimeConfig.mac / args.cni.mac / CNI_ARGS MAC), mtu,
 * promisc, allmulti, txQLen, dataDir (default /run/cni/tuning).
 *
 * Before changing anything it reads the current values (a sysctl that does not
 * exist is an error and nothing changes) and saves them under
 * `<dataDir>/<network>/<containerID>-<ifname>.json`; DEL puts them back (for
 * devices that outlive the container, e.g. host-device) and forgets them, GC
 * forgets those of attachments that are gone.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Dataplane, type LinkInfo } from "../../dataplane/dataplane.ts";
import { MAC } from "../../net/index.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import { type CniEnv, type CniPlugin, isNetnsPath, prevResultOf } from "../skel.ts";
import type { CniResult, NetConf } from "../types.ts";
import { mtuField, type Obj, optBool, optInt, optObject, optString, requestedMac, validAttachments } from "./common.ts";

export const DEFAULT_TUNING_DIR = "/run/cni/tuning";

export interface TuningConf {
  sysctl: Record<string, string>;
  mac?: MAC;
  mtu?: number;
  promisc?: boolean;
  allmulti?: boolean;
  txQLen?: number;
  dataDir: string;
}

interface Saved {
  mac?: string;
  mtu?: number;
  promisc?: boolean;
  allmulti?: boolean;
  txQLen?: number;
  sysctl: Record<string, string>;
}

const invalidConf = (msg: string) => cniError(CNI_ERR.invalidConfig, msg);

/** A sysctl key tuning may set: net.* (dotted or slash form), no empty or ".." parts, no whitespace or "=". */
export function checkSysctlKey(k: string): void {
  const parts = k.includes("/") ? k.replace(/^\/+/, "").split("/") : k.split(".");
  if (parts[0] !== "net" || parts.length < 2) {
    throw invalidConf(`tuning: sysctl ${JSON.stringify(k)} is not allowed: only net.* keys, which belong to the container's network namespace`);
  }
  if (/[\s=]/.test(k) || parts.some((p) => p === "" || p === "." || p === "..")) throw invalidConf(`tuning: invalid sysctl key ${JSON.stringify(k)}`);
}

export function parseTuning(conf: NetConf, env: CniEnv): TuningConf {
  const o = conf as Obj;
  const sys = optObject(o, "sysctl") ?? {};
  const sysctl: Record<string, string> = {};
  for (const [k, v] of Object.entries(sys)) {
    checkSysctlKey(k);
    if (typeof v !== "string" && typeof v !== "number") throw invalidConf(`tuning: sysctl ${k} must be a string, got ${JSON.stringify(v)}`);
    if (/[\s=]/.test(String(v))) throw invalidConf(`tuning: invalid value ${JSON.stringify(v)} for sysctl ${k}`);
    sysctl[k] = String(v);
  }
  const c: TuningConf = { sysctl, dataDir: optString(o, "dataDir") ?? DEFAULT_TUNING_DIR };
  if (!c.dataDir.startsWith("/")) throw invalidConf(`tuning: dataDir must be an absolute path, got ${JSON.stringify(c.dataDir)}`);
  const own = optString(o, "mac");
  const mac = requestedMac(conf, env) ?? (own ? parseMacAt(own) : undefined);
  if (mac) c.mac = mac;
  const mtu = mtuField(o);
  if (mtu) c.mtu = mtu;
  const promisc = optBool(o, "promisc");
  if (promisc !== undefined) c.promisc = promisc;
  const allmulti = optBool(o, "allmulti");
  if (allmulti !== undefined) c.allmulti = allmulti;
  const q = optInt(o, "txQLen", 0, 0x7fffffff);
  if (q !== undefined) c.txQLen = q;
  return c;
}

function parseMacAt(s: string): MAC {
  try {
    return MAC.parse(s, "mac");
  } catch (e) {
    throw invalidConf(`tuning: mac: ${(e as Error).message}`);
  }
}

function statePath(c: TuningConf, conf: NetConf, env: CniEnv): string {
  return join(c.dataDir, conf.name, `${env.containerId}-${env.ifname}.json`);
}

function changes(c: TuningConf): boolean {
  return (
    Object.keys(c.sysctl).length > 0 ||
    c.mac !== undefined ||
    c.mtu !== undefined ||
    c.promisc !== undefined ||
    c.allmulti !== undefined ||
    c.txQLen !== undefined
  );
}

/** Applies link settings (MAC needs the link down for most drivers). */
async function applyLink(dp: Dataplane, netns: string, ifname: string, cur: LinkInfo, s: Omit<Saved, "sysctl"> & { mac?: string }): Promise<void> {
  const b = dp.batch(netns);
  if (s.mac !== undefined && (!cur.mac || !MAC.parse(s.mac).equals(cur.mac))) {
    if (cur.up) b.setDown(ifname);
    b.setMac(ifname, MAC.parse(s.mac));
    if (cur.up) b.setUp(ifname);
  }
  if (s.mtu !== undefined && s.mtu !== cur.mtu) b.setMtu(ifname, s.mtu);
  if (s.promisc !== undefined && s.promisc !== cur.promisc) b.setPromisc(ifname, s.promisc);
  if (s.allmulti !== undefined && s.allmulti !== cur.allmulti) b.setAllmulticast(ifname, s.allmulti);
  if (s.txQLen !== undefined && s.txQLen !== cur.txqlen) b.setTxQueueLen(ifname, s.txQLen);
  await dp.apply(b);
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const c = parseTuning(conf, env);
    const prev = prevResultOf(conf);
    if (!prev) throw invalidConf("tuning: must be called as a chained plugin (prevResult missing)");
    if (!changes(c)) return prev;
    const dp = new Dataplane();
    const keys = Object.keys(c.sysctl);
    const [cur, orig] = await Promise.all([dp.link(env.netns, env.ifname), dp.sysctlRead(env.netns, keys)]);
    if (!cur) throw cniError(CNI_ERR.invalidConfig, `tuning: interface ${env.ifname} not found in ${env.netns}`);
    const missing = keys.filter((k) => !orig.has(k));
    if (missing.length > 0) throw invalidConf(`tuning: sysctl ${missing.join(", ")} does not exist in the container's network namespace`);
    const saved: Saved = {
      sysctl: Object.fromEntries(keys.map((k) => [k, orig.get(k) ?? ""])),
      ...(c.mac && cur.mac ? { mac: cur.mac.toString() } : {}),
      ...(c.mtu !== undefined ? { mtu: cur.mtu } : {}),
      ...(c.promisc !== undefined ? { promisc: cur.promisc ?? false } : {}),
      ...(c.allmulti !== undefined ? { allmulti: cur.allmulti ?? false } : {}),
      ...(c.txQLen !== undefined && cur.txqlen !== undefined ? { txQLen: cur.txqlen } : {}),
    };
    const path = statePath(c, conf, env);
    try {
      mkdirSync(join(c.dataDir, conf.name), { recursive: true, mode: 0o700 });
      writeFileSync(path, JSON.stringify(saved), { mode: 0o600 });
    } catch (e) {
      throw cniError(CNI_ERR.ioFailure, `tuning: cannot save the original settings to ${path}: ${(e as Error).message}`);
    }
    try {
      if (keys.length > 0) await dp.sysctlSet(env.netns, c.sysctl);
      await applyLink(dp, env.netns, env.ifname, cur, {
        ...(c.mac ? { mac: c.mac.toString() } : {}),
        ...(c.mtu !== undefined ? { mtu: c.mtu } : {}),
        ...(c.promisc !== undefined ? { promisc: c.promisc } : {}),
        ...(c.allmulti !== undefined ? { allmulti: c.allmulti } : {}),
        ...(c.txQLen !== undefined ? { txQLen: c.txQLen } : {}),
      });
    } catch (e) {
      await restore(dp, env, saved).catch(() => undefined);
      rmSync(path, { force: true });
      throw e;
    }
    const r: CniResult = { ...prev, interfaces: prev.interfaces.map((i) => ({ ...i })) };
    for (const i of r.interfaces) {
      if (i.name !== env.ifname || !i.sandbox) continue;
      if (c.mac) i.mac = c.mac;
      if (c.mtu) i.mtu = c.mtu;
    }
    r.cniVersion = conf.cniVersion;
    return r;
  },

  async del(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseTuning(conf, env);
    const path = statePath(c, conf, env);
    if (!existsSync(path)) return;
    if (env.netns && isNetnsPath(env.netns)) {
      let saved: Saved | undefined;
      try {
        saved = JSON.parse(readFileSync(path, "utf8")) as Saved;
      } catch {
        saved = undefined; // unreadable: nothing to restore
      }
      if (saved) await restore(new Dataplane(), env, saved);
    }
    rmSync(path, { force: true });
  },

  async check(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseTuning(conf, env);
    if (!prevResultOf(conf)) throw invalidConf("tuning: must be called as a chained plugin (prevResult missing)");
    const dp = new Dataplane();
    const keys = Object.keys(c.sysctl);
    const [cur, vals] = await Promise.all([dp.link(env.netns, env.ifname), dp.sysctlRead(env.netns, keys)]);
    const fail = (m: string) => cniError(CNI_ERR.checkFailed, `tuning: ${m}`);
    if (!cur) throw fail(`interface ${env.ifname} not found in ${env.netns}`);
    if (c.mac && !cur.mac?.equals(c.mac)) throw fail(`${env.ifname} has MAC ${cur.mac}, expected ${c.mac}`);
    if (c.mtu !== undefined && cur.mtu !== c.mtu) throw fail(`${env.ifname} has MTU ${cur.mtu}, expected ${c.mtu}`);
    if (c.promisc !== undefined && cur.promisc !== c.promisc) throw fail(`${env.ifname} promisc is ${cur.promisc ? "on" : "off"}, expected ${c.promisc ? "on" : "off"}`);
    if (c.allmulti !== undefined && cur.allmulti !== c.allmulti) throw fail(`${env.ifname} allmulticast is ${cur.allmulti ? "on" : "off"}, expected ${c.allmulti ? "on" : "off"}`);
    if (c.txQLen !== undefined && cur.txqlen !== undefined && cur.txqlen !== c.txQLen) throw fail(`${env.ifname} txqueuelen is ${cur.txqlen}, expected ${c.txQLen}`);
    for (const k of keys) {
      if (vals.get(k) !== c.sysctl[k]) throw fail(`sysctl ${k} is ${JSON.stringify(vals.get(k))}, expected ${JSON.stringify(c.sysctl[k])}`);
    }
  },

  async status(conf: NetConf, env: CniEnv): Promise<void> {
    parseTuning(conf, env);
  },

  async gc(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseTuning(conf, env);
    const keep = validAttachments(conf);
    const dir = join(c.dataDir, conf.name);
    let files: string[] = [];
    try {
      files = readdirSync(dir);
    } catch {
      return;
    }
    for (const f of files) {
      if (!f.endsWith(".json")) continue;
      const base = f.slice(0, -5);
      // "<containerID>-<ifname>": container IDs may contain "-", ifnames may too; keep the file if any split is valid
      let live = false;
      for (let i = base.indexOf("-"); i > 0; i = base.indexOf("-", i + 1)) {
        if (keep.has(`${base.slice(0, i)}/${base.slice(i + 1)}`)) live = true;
      }
      if (!live) rmSync(join(dir, f), { force: true });
    }
  },
};

async function restore(dp: Dataplane, env: CniEnv, s: Saved): Promise<void> {
  const cur = await dp.link(env.netns, env.ifname);
  if (!cur) return;
  if (Object.keys(s.sysctl).length > 0) await dp.sysctlSet(env.netns, s.sysctl);
  await applyLink(dp, env.netns, env.ifname, cur, s);
}
