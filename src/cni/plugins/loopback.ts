/**
 * `loopback`: brings `lo` up in the container namespace (reference plugin
 * behaviour: the result lists lo with 127.0.0.1/8 and ::1/128 when present).
 */
import { Dataplane } from "../../dataplane/dataplane.ts";
import { IPNet, MAC } from "../../net/index.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import type { CniEnv, CniPlugin } from "../skel.ts";
import { type CniResult, emptyResult, type NetConf } from "../types.ts";

const dp = new Dataplane();

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    await dp.apply(dp.batch(env.netns).setUp("lo"));
    const r = emptyResult(conf.cniVersion);
    r.interfaces.push({ name: "lo", mac: MAC.parse("00:00:00:00:00:00"), sandbox: env.netns });
    for (const a of await dp.addresses(env.netns, "lo")) {
      if (a.addr.ip.isLoopback()) r.ips.push({ address: IPNet.of(a.addr.ip, a.addr.prefix.length), interface: 0 });
    }
    return r;
  },
  async del(_conf: NetConf, env: CniEnv): Promise<void> {
    if (!env.netns || !dp.netnsExists(env.netns)) return; // already gone: DEL succeeds
    await dp.apply(dp.batch(env.netns).setDown("lo")).catch(() => undefined);
  },
  async check(_conf: NetConf, env: CniEnv): Promise<void> {
    const lo = await dp.link(env.netns, "lo");
    if (!lo?.up) throw cniError(CNI_ERR.invalidConfig, "loopback interface is down");
  },
};
