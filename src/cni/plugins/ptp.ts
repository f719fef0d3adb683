/**
 * `ptp`: a veth pair per container with routed (not bridged) addressing, like
 * the reference plugin. Keys: ipMasq, mtu, ipam (required), dns.
 *
 * Container side: the IPAM address, then the subnet route replaced by
 * "<gateway> dev <if> scope link src <ip>" and "<subnet> via <gateway> src <ip>",
 * plus the IPAM routes. Host side: the gateway as a /32 (/128) on the host veth
 * and a host route to the container address through it. Forwarding is switched
 * on in the plugin's namespace; ipMasq uses the shared masquerade table.
 */
import { Dataplane } from "../../dataplane/dataplane.ts";
import { IPNet, MAC, Prefix } from "../../net/index.ts";
import { delegateIpam } from "../delegate.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import { type CniEnv, type CniPlugin, prevResultOf } from "../skel.ts";
import { type CniResult, emptyResult, type NetConf } from "../types.ts";
import { bestEffort, combinedError, containerIfIndex, delInterface, mtuField, type Obj, optBool, pickDns, prevAddresses, randomVethName, routeSpec, validAttachments } from "./common.ts";
import { masqAdd, masqDel, masqGc, masqTag } from "./ipmasq.ts";
import { checkContainerIface, createVethPair, ipamAdd, ipamType, transactional } from "./link-common.ts";

export interface PtpConf {
  ipMasq: boolean;
  mtu?: number;
}

export function parsePtp(conf: NetConf): PtpConf {
  const o = conf as Obj;
  const c: PtpConf = { ipMasq: optBool(o, "ipMasq") ?? false };
  const mtu = mtuField(o);
  if (mtu) c.mtu = mtu;
  return c;
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const c = parsePtp(conf);
    ipamType(conf, env, true, "ptp");
    const dp = new Dataplane();
    const hostIf = randomVethName();
    const mac = MAC.random();
    const hostMac = MAC.random();
    return transactional(async (undo) => {
      await createVethPair(dp, env.netns, env.ifname, hostIf, { ...(c.mtu ? { mtu: c.mtu } : {}), mac, hostMac });
      undo.push(() => dp.deleteLinks(env.netns, [env.ifname]));
      const ir = await ipamAdd(conf, env, "ptp");
      undo.push(() => delegateIpam("DEL", conf, env));
      for (const ip of ir.ips) {
        if (!ip.gateway) {
          throw cniError(CNI_ERR.invalidConfig, `ptp: IPAM gave ${ip.address} without a gateway; ptp needs one (it becomes the host side's address)`);
        }
      }
      const r = emptyResult(conf.cniVersion);
      r.interfaces.push({ name: hostIf, mac: hostMac }, { name: env.ifname, mac, sandbox: env.netns, ...(c.mtu ? { mtu: c.mtu } : {}) });
      r.ips = ir.ips.map((ip) => ({ ...ip, interface: 1 }));
      r.routes = [...ir.routes];
      r.dns = pickDns(conf, ir.dns);

      const cont = dp.batch(env.netns).setUp(env.ifname);
      const host = dp.batch(null).setUp(hostIf);
      const gwOf: Partial<Record<4 | 6, IPNet>> = {};
      for (const ip of r.ips) {
        const gw = ip.gateway;
        if (!gw) continue;
        gwOf[gw.family] ??= ip.address;
        const host1 = Prefix.of(gw, gw.bits);
        cont
          .addAddress(env.ifname, ip.address, { broadcast: true, noDad: true })
          .deleteRoute({ dst: ip.address.prefix, dev: env.ifname })
          .addRoute({ dst: host1, dev: env.ifname, scope: "link", src: ip.address.ip })
          .addRoute({ dst: ip.address.prefix, via: gw, dev: env.ifname, src: ip.address.ip });
        host
          .addAddress(hostIf, IPNet.of(gw, gw.bits), { noDad: true })
          .addRoute({ dst: Prefix.of(ip.address.ip, ip.address.ip.bits), dev: hostIf, scope: "host" });
      }
      for (const rt of r.routes) {
        // the subnet route exists already (through the gateway)
        if (r.ips.some((ip) => ip.address.prefix.equals(rt.dst) && !rt.gw)) continue;
        cont.addRoute(routeSpec(rt, env.ifname, rt.gw ?? r.ips.find((i) => i.gateway?.family === rt.dst.family)?.gateway));
      }
      if (gwOf[4]) dp.sysctlSetOwn({ "net.ipv4.ip_forward": 1 });
      if (gwOf[6]) dp.sysctlSetOwn({ "net.ipv6.conf.all.forwarding": 1 });
      const tag = masqTag(conf.name, env.containerId, env.ifname);
      if (c.ipMasq) undo.push(() => masqDel(dp, tag));
      const applied = await Promise.allSettled([
        dp.apply(cont),
        dp.apply(host),
        c.ipMasq
          ? masqAdd(
              dp,
              r.ips.map((i) => i.address),
              tag,
            )
          : Promise.resolve(),
      ]);
      for (const a of applied) if (a.status === "rejected") throw a.reason;
      return r;
    });
  },

  async del(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parsePtp(conf);
    const dp = new Dataplane();
    await delInterface(dp, conf, env, "ptp", [
      async () => {
        if (c.ipMasq) await masqDel(dp, masqTag(conf.name, env.containerId, env.ifname), prevAddresses(conf));
      },
    ]);
  },

  async check(conf: NetConf, env: CniEnv): Promise<void> {
    parsePtp(conf);
    ipamType(conf, env, true, "ptp");
    const prev = prevResultOf(conf);
    if (!prev) throw cniError(CNI_ERR.invalidConfig, "ptp: CHECK requires prevResult");
    await delegateIpam("CHECK", conf, env);
    const ci = containerIfIndex(prev, env.ifname);
    if (ci < 0) throw cniError(CNI_ERR.checkFailed, `ptp: prevResult has no interface ${env.ifname} in a sandbox`);
    const dp = new Dataplane();
    const hostIf = prev.interfaces.find((i) => !i.sandbox);
    await checkContainerIface(dp, env, prev, ci, "veth");
    if (hostIf && !(await dp.link(null, hostIf.name))) throw cniError(CNI_ERR.checkFailed, `ptp: host interface ${hostIf.name} not found`);
  },

  async status(conf: NetConf, env: CniEnv): Promise<void> {
    parsePtp(conf);
    ipamType(conf, env, true, "ptp");
    await delegateIpam("STATUS", conf, env);
  },

  async gc(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parsePtp(conf);
    const keep = validAttachments(conf);
    const dp = new Dataplane();
    const errors = await bestEffort([
      async () => {
        if (ipamType(conf, env, false, "ptp")) await delegateIpam("GC", conf, env);
      },
      async () => {
        if (!c.ipMasq) return;
        await masqGc(dp, conf.name, keep);
      },
    ]);
    if (errors.length > 0) throw combinedError("ptp GC", errors);
  },
};
