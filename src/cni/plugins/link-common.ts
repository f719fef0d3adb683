/**
 * What the interface plugins (bridge, ptp, macvlan, ipvlan) share: the IPAM
 * delegate (present? run it), the veth pair made in one command, undo on a
 * failed ADD, and CHECK of an interface's addresses and routes against the
 * previous result. Kernel access only through the Dataplane.
 */
import type { Dataplane, RouteInfo } from "../../dataplane/dataplane.ts";
import { type IP, type MAC, Prefix } from "../../net/index.ts";
import { delegateIpam, findInPath } from "../delegate.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import { PLUGIN_NAMES } from "../registry.ts";
import type { CniEnv } from "../skel.ts";
import type { CniResult, NetConf } from "../types.ts";
import { isExists } from "./common.ts";

/** The IPAM type of the config, after making sure the plugin can be found (before anything is created). */
export function ipamType(conf: NetConf, env: CniEnv, required: boolean, plugin: string): string | undefined {
  const ipam = conf.ipam;
  if (ipam === undefined || ipam === null) {
    if (required) throw cniError(CNI_ERR.invalidConfig, `${plugin}: missing ipam section in network configuration`);
    return undefined;
  }
  if (typeof ipam !== "object" || Array.isArray(ipam)) {
    throw cniError(CNI_ERR.invalidConfig, `ipam must be an object, got ${JSON.stringify(ipam)}`);
  }
  const type = ipam.type;
  if (type === undefined || type === "") {
    if (required) throw cniError(CNI_ERR.invalidConfig, `${plugin}: missing ipam.type in network configuration`);
    return undefined;
  }
  if (typeof type !== "string" || /[/\\]/.test(type)) throw cniError(CNI_ERR.invalidConfig, `invalid ipam.type ${JSON.stringify(type)}`);
  const inProcess = PLUGIN_NAMES.includes(type) && process.env.BERTH_CNI_NO_INPROCESS !== "1";
  if (!inProcess && !findInPath(type, env.path)) {
    throw cniError(CNI_ERR.invalidConfig, `failed to find IPAM plugin ${JSON.stringify(type)} (ipam.type) in CNI_PATH [${env.path.join(" ")}]`);
  }
  return type;
}

/** Runs the IPAM ADD and checks the result has addresses. */
export async function ipamAdd(conf: NetConf, env: CniEnv, plugin: string): Promise<CniResult> {
  const r = await delegateIpam("ADD", conf, env);
  if (!r || r.ips.length === 0) throw cniError(CNI_ERR.invalidConfig, `${plugin}: IPAM plugin ${conf.ipam?.type} returned no IP configuration`);
  return r;
}

/**
 * Creates a veth pair with one command run inside the container namespace: the
 * container end `ifname` stays there, the peer `hostIf` goes to this process's
 * namespace. MACs are chosen here so the result needs no read-back.
 */
export async function createVethPair(
  dp: Dataplane,
  netns: string,
  ifname: string,
  hostIf: string,
  opts: { mtu?: number; mac: MAC; hostMac: MAC },
): Promise<void> {
  try {
    await dp.apply(
      dp.batch(netns).addVeth(ifname, hostIf, {
        ...(opts.mtu ? { mtu: opts.mtu } : {}),
        mac: opts.mac,
        peerMac: opts.hostMac,
        peerNetns: process.pid,
      }),
    );
  } catch (e) {
    if (isExists(e)) {
      throw cniError(CNI_ERR.conflict, `container interface ${JSON.stringify(ifname)} already exists in ${netns} (or host interface ${hostIf} exists)`);
    }
    throw e;
  }
}

/** An undo stack: run in reverse, best effort, on a failed ADD. */
export class Undo {
  private readonly steps: (() => Promise<unknown>)[] = [];
  push(f: () => Promise<unknown>): void {
    this.steps.push(f);
  }
  async run(): Promise<void> {
    for (const f of this.steps.reverse()) {
      try {
        await f();
      } catch (e) {
        console.error(`berth cni: rollback step failed: ${(e as Error).message}`);
      }
    }
  }
}

/** Runs `f`; on failure runs the undo steps and rethrows. */
export async function transactional<T>(f: (undo: Undo) => Promise<T>): Promise<T> {
  const undo = new Undo();
  try {
    return await f(undo);
  } catch (e) {
    await undo.run();
    throw e;
  }
}

const failed = (msg: string) => cniError(CNI_ERR.checkFailed, msg);

function routeDst(r: RouteInfo): Prefix | undefined {
  if (r.dst === "default") return Prefix.parseLoose(r.family === 4 ? "0.0.0.0/0" : "::/0");
  try {
    return Prefix.parseLoose(r.dst.includes("/") ? r.dst : `${r.dst}/${r.family === 4 ? 32 : 128}`);
  } catch {
    return undefined;
  }
}

/**
 * CHECK of a container interface against the previous result: it exists, has the
 * MAC of the result (when given), every address of the result for interface
 * `index`, and every route of the result (main table) through it.
 */
export async function checkContainerIface(dp: Dataplane, env: CniEnv, prev: CniResult, index: number, kind: string): Promise<void> {
  const want = prev.interfaces[index];
  const [cur, r4, r6] = await Promise.all([
    dp.linkWithAddresses(env.netns, env.ifname),
    dp.routes(env.netns, 4),
    prev.routes.some((r) => r.dst.family === 6) ? dp.routes(env.netns, 6) : Promise.resolve([] as RouteInfo[]),
  ]);
  if (!cur) throw failed(`interface ${env.ifname} not found in ${env.netns}`);
  if (cur.link.kind !== kind) throw failed(`interface ${env.ifname} in ${env.netns} is ${cur.link.kind ?? "a plain device"}, not ${kind}`);
  if (want?.mac && cur.link.mac && !want.mac.equals(cur.link.mac)) {
    throw failed(`interface ${env.ifname} has MAC ${cur.link.mac}, the result says ${want.mac}`);
  }
  for (const ip of prev.ips) {
    if (ip.interface !== index) continue;
    if (!cur.addrs.some((a) => a.addr.equals(ip.address))) throw failed(`address ${ip.address} not found on ${env.ifname} in ${env.netns}`);
  }
  const routes = [...r4, ...r6];
  const gwOf = (f: 4 | 6): IP | undefined => prev.ips.find((i) => i.interface === index && i.gateway?.family === f)?.gateway;
  for (const rt of prev.routes) {
    if (rt.table !== undefined && rt.table !== 254) continue;
    const via = rt.gw ?? gwOf(rt.dst.family);
    const ok = routes.some((x) => {
      const d = routeDst(x);
      return d?.equals(rt.dst) && (x.dev === undefined || x.dev === env.ifname) && (!via || !x.gateway || x.gateway.equals(via));
    });
    if (!ok) throw failed(`route ${rt.dst}${via ? ` via ${via}` : ""} not found on ${env.ifname} in ${env.netns}`);
  }
}
