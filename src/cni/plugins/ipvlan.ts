/**
 * `ipvlan`: an ipvlan child of a master device, created straight into the
 * container namespace. Keys: master (default: the interface of the host's
 * default route), mode (l2 | l3 | l3s; default l2), mtu (at most the master's),
 * ipam (optional), linkInContainer. An ipvlan shares its master's MAC, so a
 * requested MAC (runtimeConfig.mac / CNI_ARGS MAC) is refused. Note the kernel
 * keeps one mode per master: a child created with another mode switches the
 * existing children of that master too (use one master per mode).
 */
import { Dataplane } from "../../dataplane/dataplane.ts";
import { IPVLAN_MODES, type IpvlanMode } from "../../dataplane/ipbatch.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import type { CniEnv, CniPlugin } from "../skel.ts";
import type { CniResult, NetConf } from "../types.ts";
import { ifnameField, mtuField, type Obj, optBool, optString, requestedMac } from "./common.ts";
import { addChild, type ChildConf, checkChild, delChild, gcChild, statusChild } from "./vlan-common.ts";

export interface IpvlanConf extends ChildConf {
  mode: IpvlanMode;
}

export function parseIpvlan(conf: NetConf, env: CniEnv): IpvlanConf {
  const o = conf as Obj;
  const mode = optString(o, "mode") ?? "l2";
  if (!(IPVLAN_MODES as readonly string[]).includes(mode)) {
    throw cniError(CNI_ERR.invalidConfig, `ipvlan: unknown mode ${JSON.stringify(mode)}; known: ${IPVLAN_MODES.join(", ")}`);
  }
  const c: IpvlanConf = { plugin: "ipvlan", mode: mode as IpvlanMode, linkInContainer: optBool(o, "linkInContainer") ?? false };
  const master = ifnameField(o, "master", undefined);
  if (master) c.master = master;
  const mtu = mtuField(o);
  if (mtu) c.mtu = mtu;
  const mac = requestedMac(conf, env);
  if (mac) throw cniError(CNI_ERR.unsupportedField, `ipvlan: a MAC address (${mac}) cannot be set: an ipvlan link always has its master's MAC`);
  return c;
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const c = parseIpvlan(conf, env);
    const dp = new Dataplane();
    return addChild(dp, conf, env, c, {
      create(b, master, netns) {
        b.addIpvlan(env.ifname, master.name, c.mode, "bridge", { ...(c.mtu ? { mtu: c.mtu } : {}), ...(netns ? { netns } : {}) });
      },
      mac: (master) => master.link.mac,
      sysctls: (ifname) => (c.mode === "l2" ? { [`net/ipv4/conf/${ifname}/arp_notify`]: 1 } : {}),
    });
  },
  async del(conf: NetConf, env: CniEnv): Promise<void> {
    return delChild(new Dataplane(), conf, env, "ipvlan");
  },
  async check(conf: NetConf, env: CniEnv): Promise<void> {
    return checkChild(new Dataplane(), conf, env, parseIpvlan(conf, env));
  },
  async status(conf: NetConf, env: CniEnv): Promise<void> {
    parseIpvlan(conf, env);
    return statusChild(conf, env, "ipvlan");
  },
  async gc(conf: NetConf, env: CniEnv): Promise<void> {
    return gcChild(conf, env, "ipvlan");
  },
};
