/**
 * `macvlan`: a macvlan child of a master device, created straight into the
 * container namespace. Keys: master (default: the interface of the host's
 * default route), mode (bridge | private | vepa | passthru; default bridge), mtu
 * (at most the master's), ipam (optional: without it the link is L2 only),
 * linkInContainer (the master lives in the container namespace); the MAC from
 * runtimeConfig.mac / args.cni.mac / CNI_ARGS MAC. arp_notify is switched on so
 * the kernel announces the address when the link comes up.
 */
import { Dataplane } from "../../dataplane/dataplane.ts";
import { MACVLAN_MODES, type MacvlanMode } from "../../dataplane/ipbatch.ts";
import { MAC } from "../../net/index.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import type { CniEnv, CniPlugin } from "../skel.ts";
import type { CniResult, NetConf } from "../types.ts";
import { ifnameField, mtuField, type Obj, optBool, optString, requestedMac } from "./common.ts";
import { addChild, type ChildConf, checkChild, delChild, gcChild, statusChild } from "./vlan-common.ts";

export interface MacvlanConf extends ChildConf {
  mode: MacvlanMode;
  mac?: MAC;
}

export function parseMacvlan(conf: NetConf, env: CniEnv): MacvlanConf {
  const o = conf as Obj;
  const mode = optString(o, "mode") ?? "bridge";
  if (!(MACVLAN_MODES as readonly string[]).includes(mode)) {
    throw cniError(CNI_ERR.invalidConfig, `macvlan: unknown mode ${JSON.stringify(mode)}; known: ${MACVLAN_MODES.join(", ")}`);
  }
  const c: MacvlanConf = { plugin: "macvlan", mode: mode as MacvlanMode, linkInContainer: optBool(o, "linkInContainer") ?? false };
  const master = ifnameField(o, "master", undefined);
  if (master) c.master = master;
  const mtu = mtuField(o);
  if (mtu) c.mtu = mtu;
  const mac = requestedMac(conf, env);
  if (mac) c.mac = mac;
  return c;
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const c = parseMacvlan(conf, env);
    // passthru takes over the master's MAC: only set one when asked
    const mac = c.mac ?? (c.mode === "passthru" ? undefined : MAC.random());
    return addChild(new Dataplane(), conf, env, c, {
      create(b, master, netns) {
        b.addMacvlan(env.ifname, master.name, c.mode, {
          ...(c.mtu ? { mtu: c.mtu } : {}),
          ...(mac ? { mac } : {}),
          ...(netns ? { netns } : {}),
        });
      },
      mac: () => mac,
      sysctls: (ifname) => ({ [`net/ipv4/conf/${ifname}/arp_notify`]: 1 }),
    });
  },
  async del(conf: NetConf, env: CniEnv): Promise<void> {
    return delChild(new Dataplane(), conf, env, "macvlan");
  },
  async check(conf: NetConf, env: CniEnv): Promise<void> {
    return checkChild(new Dataplane(), conf, env, parseMacvlan(conf, env));
  },
  async status(conf: NetConf, env: CniEnv): Promise<void> {
    parseMacvlan(conf, env);
    return statusChild(conf, env, "macvlan");
  },
  async gc(conf: NetConf, env: CniEnv): Promise<void> {
    return gcChild(conf, env, "macvlan");
  },
};
