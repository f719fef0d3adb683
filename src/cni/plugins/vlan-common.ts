/**
 * What macvlan and ipvlan share: the master (parent) device, by default the
 * interface of the plugin namespace's default route, and with linkInContainer
 * looked up in the container namespace; the MTU check against it; and the ADD /
 * DEL / CHECK sequence of a child link created straight into the container
 * namespace (its name is checked there, so no temporary name is needed).
 */
import type { Dataplane, LinkInfo } from "../../dataplane/dataplane.ts";
import type { IpBatch } from "../../dataplane/ipbatch.ts";
import type { MAC } from "../../net/index.ts";
import { delegateIpam } from "../delegate.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import { type CniEnv, prevResultOf } from "../skel.ts";
import { type CniResult, emptyResult, type NetConf } from "../types.ts";
import { configureIface, containerIfIndex, delInterface, isExists, pickDns } from "./common.ts";
import { checkContainerIface, ipamAdd, ipamType, transactional } from "./link-common.ts";

export interface ChildConf {
  plugin: "macvlan" | "ipvlan";
  master?: string;
  mode: string;
  mtu?: number;
  linkInContainer: boolean;
}

export interface Master {
  name: string;
  link: LinkInfo;
  /** Where it lives: null = the plugin's namespace, else the container's. */
  ns: string | null;
}

/** The master device: given, or the default route's interface; looked up where it must be. */
export async function resolveMaster(dp: Dataplane, c: ChildConf, env: CniEnv): Promise<Master> {
  const ns = c.linkInContainer ? env.netns : null;
  let name = c.master;
  if (!name) {
    const routes = [...(await dp.routes(ns, 4)), ...(await dp.routes(ns, 6))];
    name = routes.find((r) => r.dst === "default" && r.dev)?.dev;
    if (!name) {
      throw cniError(CNI_ERR.invalidConfig, `${c.plugin}: no master given and no default route in the ${ns ? "container" : "host"} namespace to take one from`);
    }
  }
  const link = await dp.link(ns, name);
  if (!link) throw cniError(CNI_ERR.invalidConfig, `${c.plugin}: master ${JSON.stringify(name)} not found in the ${ns ? "container" : "host"} namespace`);
  if (c.mtu !== undefined && c.mtu > link.mtu) {
    throw cniError(CNI_ERR.invalidConfig, `${c.plugin}: invalid mtu ${c.mtu}: must be at most the master ${name}'s MTU ${link.mtu}`);
  }
  return { name, link, ns };
}

export interface ChildOps {
  /** Adds the creation line: in `b` (the master's namespace); `netns` is where the child must land, or undefined when b is there already. */
  create(b: IpBatch, master: Master, netns: string | undefined): void;
  /** The child's MAC when known without reading it back. */
  mac(master: Master): MAC | undefined;
  /** Settings of the container namespace before the link goes up (e.g. arp_notify). */
  sysctls?(ifname: string): Record<string, string | number>;
}

export async function addChild(dp: Dataplane, conf: NetConf, env: CniEnv, c: ChildConf, ops: ChildOps): Promise<CniResult> {
  const ipam = ipamType(conf, env, false, c.plugin);
  const master = await resolveMaster(dp, c, env);
  return transactional(async (undo) => {
    const b = dp.batch(master.ns);
    ops.create(b, master, master.ns === null ? env.netns : undefined);
    try {
      await dp.apply(b);
    } catch (e) {
      if (isExists(e)) throw cniError(CNI_ERR.conflict, `${c.plugin}: interface ${JSON.stringify(env.ifname)} already exists in ${env.netns}`);
      throw e;
    }
    undo.push(() => dp.deleteLinks(env.netns, [env.ifname]));
    const sysctls = ops.sysctls?.(env.ifname) ?? {};
    const [ir] = await Promise.all([
      ipam ? ipamAdd(conf, env, c.plugin) : Promise.resolve(undefined),
      Object.keys(sysctls).length > 0 ? dp.sysctlSet(env.netns, sysctls) : Promise.resolve(),
    ]);
    if (ir) undo.push(() => delegateIpam("DEL", conf, env));
    const r = emptyResult(conf.cniVersion);
    let mac = ops.mac(master);
    if (!mac) mac = (await dp.link(env.netns, env.ifname))?.mac;
    r.interfaces.push({ name: env.ifname, ...(mac ? { mac } : {}), sandbox: env.netns, ...(c.mtu ? { mtu: c.mtu } : {}) });
    if (ir) {
      r.ips = ir.ips.map((ip) => ({ ...ip, interface: 0 }));
      r.routes = [...ir.routes];
    }
    r.dns = pickDns(conf, ir?.dns);
    const cb = dp.batch(env.netns);
    configureIface(cb, env.ifname, r, 0);
    await dp.apply(cb);
    return r;
  });
}

export async function delChild(dp: Dataplane, conf: NetConf, env: CniEnv, plugin: string): Promise<void> {
  await delInterface(dp, conf, env, plugin);
}

export async function checkChild(dp: Dataplane, conf: NetConf, env: CniEnv, c: ChildConf): Promise<void> {
  const ipam = ipamType(conf, env, false, c.plugin);
  const prev = prevResultOf(conf);
  if (!prev) throw cniError(CNI_ERR.invalidConfig, `${c.plugin}: CHECK requires prevResult`);
  if (ipam) await delegateIpam("CHECK", conf, env);
  const ci = containerIfIndex(prev, env.ifname);
  if (ci < 0) throw cniError(CNI_ERR.checkFailed, `${c.plugin}: prevResult has no interface ${env.ifname} in a sandbox`);
  await checkContainerIface(dp, env, prev, ci, c.plugin);
  const k = await dp.linkKind(env.netns, env.ifname);
  if (k?.mode !== c.mode) throw cniError(CNI_ERR.checkFailed, `${c.plugin}: ${env.ifname} is in mode ${k?.mode}, the config says ${c.mode}`);
}

export async function statusChild(conf: NetConf, env: CniEnv, plugin: string): Promise<void> {
  if (ipamType(conf, env, false, plugin)) await delegateIpam("STATUS", conf, env);
}

export async function gcChild(conf: NetConf, env: CniEnv, plugin: string): Promise<void> {
  if (ipamType(conf, env, false, plugin)) await delegateIpam("GC", conf, env);
}
