/**
 * `overlay`: attaches a container to a Berth overlay network through the shared
 * etcd state, with no berthd call: the same controller, IPAM, driver and store
 * berthd uses, so the endpoint, its address and its host are in the shared
 * registry at once and every host's agent forwards to it. Keys:
 *   etcd          "etcd://HOST:PORT" (required)
 *   advertiseAddr this host's underlay address (required: the VXLAN source)
 *   hostName      this host's name in the cluster (default: the hostname; must be
 *                 the one its berthd registers, whose lease keeps the host alive)
 *   network       the overlay network's name or id (default: the conf's name);
 *                 created beforehand with `berth network create -d overlay`.
 * ADD programs this host's forwarding for the network once (berthd's agent keeps
 * it in sync afterwards) and, like berthd, adds the gateway-bridge interface
 * (eth1 style, the default route) unless the network is internal. DEL is
 * idempotent. The result lists the overlay interface first.
 */
import { Controller } from "../../controller/controller.ts";
import { Dataplane } from "../../dataplane/dataplane.ts";
import { OverlayAgent } from "../../drivers/overlay/agent.ts";
import type { OverlayDriver } from "../../drivers/overlay/overlay-driver.ts";
import { Ipam } from "../../ipam/index.ts";
import { IP } from "../../net/index.ts";
import { HostRegistry } from "../../store/etcd/hosts.ts";
import { type EtcdStore, openEtcdStore } from "../../store/etcd/store.ts";
import { endpointOn } from "../../store/lookups.ts";
import type { NetworkRecord } from "../../store/types.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import type { CniEnv, CniPlugin } from "../skel.ts";
import type { CniResult, NetConf } from "../types.ts";
import { type Obj, optString } from "./common.ts";

interface OverlayConf {
  etcd: string;
  advertise: IP;
  hostName: string | undefined;
  network: string;
}

function parse(conf: NetConf): OverlayConf {
  const o = conf as Obj;
  const etcd = optString(o, "etcd");
  if (!etcd) throw cniError(CNI_ERR.invalidConfig, 'overlay: "etcd" (etcd://HOST:PORT) is required');
  const adv = optString(o, "advertiseAddr");
  const advertise = adv ? IP.tryParse(adv) : undefined;
  if (!advertise) throw cniError(CNI_ERR.invalidConfig, `overlay: "advertiseAddr" must be this host's underlay IP address (got ${JSON.stringify(adv)})`);
  return { etcd, advertise, hostName: optString(o, "hostName"), network: optString(o, "network") ?? conf.name };
}

interface Wired {
  store: EtcdStore;
  ctl: Controller;
  agent: OverlayAgent;
}

async function wire(c: OverlayConf): Promise<Wired> {
  const store = await openEtcdStore({ url: c.etcd, ...(c.hostName ? { host: c.hostName } : {}) });
  // not started: the plugin only reads the live hosts; berthd holds this host's lease
  const cluster = new HostRegistry({ etcd: store.etcd, host: store.host, address: c.advertise, ttlSeconds: 10 });
  const dp = new Dataplane();
  const ctl = new Controller({ store, ipam: new Ipam(store), dp, cluster });
  const agent = new OverlayAgent(dp, store, ctl.driver("overlay") as OverlayDriver);
  return { store, ctl, agent };
}

async function overlayNetwork(w: Wired, c: OverlayConf): Promise<NetworkRecord> {
  const net = await w.store.networks.find(c.network);
  if (net?.driver !== "overlay") {
    throw cniError(CNI_ERR.invalidConfig, `overlay: no overlay network ${JSON.stringify(c.network)} in the shared store (create it with berth network create -d overlay)`);
  }
  return net;
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const c = parse(conf);
    const w = await wire(c);
    try {
      const net = await overlayNetwork(w, c);
      const ep = await w.ctl.connect({ network: net.id, containerId: env.containerId, netns: env.netns, ifname: env.ifname });
      await w.agent.runOnce().catch(() => undefined); // best effort: berthd's agent converges anyway
      const all = await w.store.endpoints.listByContainer(env.containerId);
      const gw = all.find((e) => e.id !== ep.id && e.gateways.length > 0 && e.ifname !== ep.ifname);
      const result: CniResult = {
        cniVersion: conf.cniVersion,
        interfaces: [{ name: ep.ifname, mac: ep.mac, sandbox: env.netns }],
        ips: ep.addresses.map((address) => ({ address, interface: 0 })),
        routes: [],
        dns: {},
      };
      if (gw) {
        result.interfaces.push({ name: gw.ifname, mac: gw.mac, sandbox: env.netns });
        for (const address of gw.addresses) {
          const gateway = gw.gateways.find((g) => g.family === address.ip.family);
          result.ips.push({ address, interface: 1, ...(gateway ? { gateway } : {}) });
        }
      }
      return result;
    } finally {
      await w.store.close();
    }
  },

  async del(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parse(conf);
    const w = await wire(c);
    try {
      const net = await w.store.networks.find(c.network);
      if (!net) return;
      const ep = await endpointOn(w.store, net.id, env.containerId);
      if (!ep) return;
      await w.ctl.removeEndpoint(net, ep, env.netns);
    } finally {
      await w.store.close();
    }
  },

  async check(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parse(conf);
    const w = await wire(c);
    try {
      const net = await overlayNetwork(w, c);
      const ep = await endpointOn(w.store, net.id, env.containerId);
      if (!ep) throw cniError(CNI_ERR.checkFailed, `overlay: container ${env.containerId} has no endpoint on ${net.name}`);
      const l = await w.ctl.dp.link(env.netns, ep.ifname);
      if (!l) throw cniError(CNI_ERR.checkFailed, `overlay: interface ${ep.ifname} is missing in ${env.netns}`);
    } finally {
      await w.store.close();
    }
  },

  async status(conf: NetConf): Promise<void> {
    const w = await wire(parse(conf));
    await w.store.close();
  },
};
