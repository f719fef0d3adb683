/**
 * `bridge`: a Linux bridge in the plugin's (host) namespace, one veth pair per
 * container, addresses from the IPAM delegate. Reference keys: bridge (default
 * "cni0"), isGateway, isDefaultGateway (implies isGateway), forceAddress, ipMasq,
 * mtu, hairpinMode, promiscMode, portIsolation, enabledad, ipam; the MAC from
 * runtimeConfig.mac / args.cni.mac / CNI_ARGS MAC. VLAN filtering (vlan,
 * vlanTrunk), macspoofchk and disableContainerInterface are refused with
 * "unsupported field" (code 2).
 *
 * ADD (every step undone on a later failure):
 *  1. in parallel: read the bridge (exists? a bridge? its MAC and addresses) and
 *     create the veth pair with one command inside the container namespace;
 *  2. IPAM ADD;
 *  3. in parallel: one `ip -batch` in the host namespace (bridge created when
 *     missing, gateway addresses, port attached/hairpin/isolated/up) and one in
 *     the container (link up, addresses, routes);
 *  4. ip forwarding (isGateway) and the masquerade element (ipMasq).
 * DEL: IPAM DEL, the container link (the peer goes with it), the masquerade user;
 * succeeds when the namespace or anything else is already gone.
 * Crash points (BERTH_FAULT, src/controller/faults.ts): cni.bridge.add:after-veth-ipam,
 * :after-bridge, :after-configure; cni.bridge.del:before-masq. A plugin killed at any of
 * them is cleaned up by the runtime's DEL (test/netns/crash.test.ts).
 */
import { crashPoint } from "../../controller/faults.ts";
import { Dataplane, type LinkInfo } from "../../dataplane/dataplane.ts";
import { IPNet, MAC, Prefix } from "../../net/index.ts";
import { delegateIpam } from "../delegate.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import { type CniEnv, type CniPlugin, prevResultOf } from "../skel.ts";
import { type CniResult, emptyResult, type NetConf } from "../types.ts";
import {
  bestEffort,
  combinedError,
  delInterface,
  configureIface,
  containerIfIndex,
  ifnameField,
  isExists,
  mtuField,
  type Obj,
  optBool,
  pickDns,
  prevAddresses,
  randomVethName,
  rejectSet,
  requestedMac,
  validAttachments,
} from "./common.ts";
import { masqAdd, masqDel, masqGc, masqTag } from "./ipmasq.ts";
import { checkContainerIface, createVethPair, ipamAdd, ipamType, transactional } from "./link-common.ts";

export interface BridgeConf {
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  mtu?: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  portIsolation: boolean;
  enableDad: boolean;
  mac?: MAC;
  ipam?: string;
}

const isZero = (v: unknown) => v === 0 || v === false || v === "" || (Array.isArray(v) && v.length === 0);

export function parseBridge(conf: NetConf, env: CniEnv): BridgeConf {
  const o = conf as Obj;
  rejectSet(o, "vlan", "bridge", isZero, "(VLAN filtering) is not supported");
  rejectSet(o, "vlanTrunk", "bridge", isZero, "(VLAN filtering) is not supported");
  rejectSet(o, "macspoofchk", "bridge", (v) => v === false, "is not supported");
  rejectSet(o, "disableContainerInterface", "bridge", (v) => v === false, "is not supported");
  const isDefaultGateway = optBool(o, "isDefaultGateway") ?? false;
  const c: BridgeConf = {
    bridge: ifnameField(o, "bridge", "cni0") ?? "cni0",
    isGateway: (optBool(o, "isGateway") ?? false) || isDefaultGateway,
    isDefaultGateway,
    forceAddress: optBool(o, "forceAddress") ?? false,
    ipMasq: optBool(o, "ipMasq") ?? false,
    hairpinMode: optBool(o, "hairpinMode") ?? false,
    promiscMode: optBool(o, "promiscMode") ?? false,
    portIsolation: optBool(o, "portIsolation") ?? false,
    enableDad: optBool(o, "enabledad") ?? false,
  };
  optBool(o, "preserveDefaultVlan");
  const mtu = mtuField(o);
  if (mtu) c.mtu = mtu;
  const mac = requestedMac(conf, env);
  if (mac) c.mac = mac;
  if (env.ifname === c.bridge) throw cniError(CNI_ERR.invalidConfig, `CNI_IFNAME ${env.ifname} is the bridge's name`);
  return c;
}

/** The gateway addresses the bridge must carry (isGateway), one per subnet. */
function gatewayAddrs(r: CniResult): IPNet[] {
  const out: IPNet[] = [];
  for (const ip of r.ips) {
    if (!ip.gateway) continue;
    const g = IPNet.of(ip.gateway, ip.address.length);
    if (!out.some((x) => x.equals(g))) out.push(g);
  }
  return out;
}

/**
 * The reference plugin's ensureAddr: an address already there is fine; another
 * IPv4 address (or an IPv6 one in the same subnet) is an error unless
 * forceAddress, which replaces it. Returns the addresses to delete.
 */
export function addressConflicts(existing: readonly IPNet[], want: readonly IPNet[], force: boolean, bridge: string): IPNet[] {
  const del: IPNet[] = [];
  for (const w of want) {
    if (existing.some((e) => e.equals(w))) continue;
    for (const e of existing) {
      if (e.family !== w.family || e.ip.isLinkLocal()) continue;
      if (w.family === 4 || e.prefix.contains(w.ip) || w.prefix.contains(e.ip)) {
        if (!force) {
          throw cniError(CNI_ERR.conflict, `bridge ${JSON.stringify(bridge)} already has an IP address ${e} different from ${w} (set forceAddress to replace it)`);
        }
        if (!del.some((d) => d.equals(e)) && !want.some((x) => x.equals(e))) del.push(e);
      }
    }
  }
  return del;
}

async function ensureBridge(dp: Dataplane, c: BridgeConf, mac: MAC): Promise<boolean> {
  try {
    await dp.apply(dp.batch(null).addBridge(c.bridge, { ...(c.mtu ? { mtu: c.mtu } : {}), mac }));
    return true;
  } catch (e) {
    if (!isExists(e)) throw e;
    // made by a concurrent ADD in the meantime
    const l = await dp.link(null, c.bridge);
    if (l?.kind !== "bridge") throw cniError(CNI_ERR.invalidConfig, `${c.bridge} exists but is not a bridge`);
    return false;
  }
}

function tagOf(conf: NetConf, env: CniEnv): string {
  return masqTag(conf.name, env.containerId, env.ifname);
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const c = parseBridge(conf, env);
    const ipam = ipamType(conf, env, false, "bridge");
    if (ipam) c.ipam = ipam;
    const dp = new Dataplane();
    const hostIf = randomVethName();
    const mac = c.mac ?? MAC.random();
    const hostMac = MAC.random();
    const tag = tagOf(conf, env);
    return transactional(async (undo) => {
      // IPAM does not depend on the links: it runs alongside the bridge probe and the
      // veth pair, and the masquerade element goes in as soon as the addresses are known
      const ipamP = c.ipam ? ipamAdd(conf, env, "bridge") : Promise.resolve(undefined);
      const masqP = ipamP.then((ir) =>
        c.ipMasq && ir && ir.ips.length > 0
          ? masqAdd(
              dp,
              ir.ips.map((i) => i.address),
              tag,
            )
          : undefined,
      );
      masqP.catch(() => {}); // awaited below (or by the undo step); never an unhandled rejection
      const [probe, veth, ipamRes] = await Promise.allSettled([
        dp.linkWithAddresses(null, c.bridge),
        createVethPair(dp, env.netns, env.ifname, hostIf, { ...(c.mtu ? { mtu: c.mtu } : {}), mac, hostMac }),
        ipamP,
      ]);
      if (veth.status === "fulfilled") undo.push(() => dp.deleteLinks(env.netns, [env.ifname]));
      if (ipamRes.status === "fulfilled" && ipamRes.value) undo.push(() => delegateIpam("DEL", conf, env));
      if (c.ipMasq) {
        undo.push(async () => {
          await masqP.catch(() => {});
          await masqDel(dp, tag);
        });
      }
      crashPoint("cni.bridge.add:after-veth-ipam");
      if (veth.status === "rejected") throw veth.reason;
      if (probe.status === "rejected") throw probe.reason;
      if (ipamRes.status === "rejected") throw ipamRes.reason;
      const br = probe.value;
      if (br && br.link.kind !== "bridge") {
        throw cniError(CNI_ERR.invalidConfig, `bridge: ${c.bridge} exists but is ${br.link.kind ? `a ${br.link.kind}` : "not a bridge"}`);
      }

      const r = emptyResult(conf.cniVersion);
      // a bridge made here gets its MAC now (it would otherwise follow its lowest port's)
      const brMac = br ? br.link.mac : MAC.random();
      r.interfaces.push(
        { name: c.bridge, ...(brMac ? { mac: brMac } : {}) },
        { name: hostIf, mac: hostMac },
        { name: env.ifname, mac, sandbox: env.netns, ...(c.mtu ? { mtu: c.mtu } : {}) },
      );
      const ir = ipamRes.value;
      if (ir) {
        r.ips = ir.ips.map((ip) => ({
          ...ip,
          interface: 2,
          ...(!ip.gateway && c.isGateway ? { gateway: ip.address.prefix.nth(1) } : {}),
        }));
        r.routes = [...ir.routes];
        r.dns = pickDns(conf, ir.dns);
      } else {
        r.dns = pickDns(conf, undefined);
      }
      if (c.isDefaultGateway) {
        for (const ip of r.ips) {
          const g = ip.gateway;
          if (!g) continue;
          const dflt = Prefix.parse(g.family === 4 ? "0.0.0.0/0" : "::/0");
          if (!r.routes.some((rt) => rt.dst.equals(dflt))) r.routes.push({ dst: dflt, gw: g });
        }
      }
      const gws = c.isGateway ? gatewayAddrs(r) : [];
      const stale = addressConflicts(
        (br?.addrs ?? []).map((a) => a.addr),
        gws,
        c.forceAddress,
        c.bridge,
      );

      if (!br) {
        const created = await ensureBridge(dp, c, brMac ?? MAC.random());
        if (created) undo.push(() => deleteBridgeIfUnused(dp, c.bridge));
      }
      crashPoint("cni.bridge.add:after-bridge");
      const host = dp.batch(null).setUp(c.bridge);
      if (c.promiscMode) host.setPromisc(c.bridge, true);
      for (const a of stale) host.deleteAddress(c.bridge, a);
      for (const g of gws) host.replaceAddress(c.bridge, g, { broadcast: true, noDad: true });
      host.setMaster(hostIf, c.bridge);
      if (c.hairpinMode) host.setHairpin(hostIf, true);
      if (c.portIsolation) host.setIsolated(hostIf, true);
      host.setUp(hostIf);
      const cont = dp.batch(env.netns);
      configureIface(cont, env.ifname, r, 2, { noDad: !c.enableDad });
      if (gws.some((g) => g.family === 4)) dp.sysctlSetOwn({ "net.ipv4.ip_forward": 1 });
      if (gws.some((g) => g.family === 6)) dp.sysctlSetOwn({ "net.ipv6.conf.all.forwarding": 1 });
      // host links, container links and the (already running) masquerade element are independent: one round
      const applied = await Promise.allSettled([dp.apply(host), dp.apply(cont), masqP]);
      for (const a of applied) if (a.status === "rejected") throw a.reason;
      crashPoint("cni.bridge.add:after-configure");
      return r;
    });
  },

  async del(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseBridge(conf, env);
    const dp = new Dataplane();
    await delInterface(dp, conf, env, "bridge", [
      async () => {
        crashPoint("cni.bridge.del:before-masq");
        if (c.ipMasq) await masqDel(dp, tagOf(conf, env), prevAddresses(conf));
      },
    ]);
  },

  async check(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseBridge(conf, env);
    const ipam = ipamType(conf, env, false, "bridge");
    if (ipam) c.ipam = ipam;
    const prev = prevResultOf(conf);
    if (!prev) throw cniError(CNI_ERR.invalidConfig, "bridge: CHECK requires prevResult");
    if (c.ipam) await delegateIpam("CHECK", conf, env);
    const dp = new Dataplane();
    const ci = containerIfIndex(prev, env.ifname);
    if (ci < 0) throw cniError(CNI_ERR.checkFailed, `bridge: prevResult has no interface ${env.ifname} in a sandbox`);
    const hostIf = prev.interfaces.find((i) => !i.sandbox && i.name !== c.bridge);
    const [brl, hl] = await Promise.all([dp.link(null, c.bridge), hostIf ? dp.link(null, hostIf.name) : Promise.resolve(undefined)]);
    await checkContainerIface(dp, env, prev, ci, "veth");
    if (brl?.kind !== "bridge") throw cniError(CNI_ERR.checkFailed, `bridge: bridge ${c.bridge} not found`);
    if (hostIf) requirePort(hl, hostIf.name, c.bridge);
  },

  async status(conf: NetConf, env: CniEnv): Promise<void> {
    parseBridge(conf, env);
    if (ipamType(conf, env, false, "bridge")) await delegateIpam("STATUS", conf, env);
  },

  async gc(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseBridge(conf, env);
    const keep = validAttachments(conf);
    const dp = new Dataplane();
    const errors = await bestEffort([
      async () => {
        if (ipamType(conf, env, false, "bridge")) await delegateIpam("GC", conf, env);
      },
      async () => {
        if (!c.ipMasq) return;
        await masqGc(dp, conf.name, keep);
      },
    ]);
    if (errors.length > 0) throw combinedError("bridge GC", errors);
  },
};

function requirePort(l: LinkInfo | undefined, name: string, bridge: string): void {
  if (!l) throw cniError(CNI_ERR.checkFailed, `bridge: host interface ${name} not found`);
  if (l.master !== bridge) throw cniError(CNI_ERR.checkFailed, `bridge: host interface ${name} is not a port of ${bridge}`);
}

/** Deletes a bridge this ADD created, unless something got attached to it meanwhile. */
async function deleteBridgeIfUnused(dp: Dataplane, bridge: string): Promise<void> {
  const ports = (await dp.links(null)).filter((l) => l.master === bridge);
  if (ports.length === 0) await dp.deleteLinks(null, [bridge]);
}
