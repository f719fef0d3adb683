/**
 * The dataplane: the only code in Berth that touches the kernel.
 *
 * Every operation names the network namespace it acts in: a named netns under
 * /run/netns, or `null` for the namespace the process itself runs in. Berth's
 * "host" namespace is configurable (`hostNs`), which is how the tests and the
 * demo run a whole Berth inside a sandbox namespace without touching the real
 * host's network.
 *
 * Implementation: links, addresses, routes and neighbours over rtnetlink
 * directly (bun:ffi, src/dataplane/netlink/: 0.05-0.5 ms per operation instead
 * of 2-10 ms per spawned `ip`); the environment switch BERTH_DATAPLANE=ip sends
 * them through iproute2 (`ip -json`, `ip -batch -`, spawned through nsenter for
 * namespaces) as before, a debugging aid. And nftables (`nft -f -` scripts, one atomic
 * transaction per call) run in-process through libnftables (nft-ffi.ts), with
 * the spawned `nft` as the fallback. Behind this class so that direct kernel
 * interfaces can replace the spawned tools where measurements say it pays.
 */
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { notFound, systemError } from "../errors.ts";
import { IP, IPNet, MAC } from "../net/index.ts";
import { IpBatch } from "./ipbatch.ts";
import { run, type RunOptions, type RunResult } from "./exec.ts";
import { withNetnsPath } from "./netns-ffi.ts";
import { executeOps, ipText, supportsAll } from "./netlink/execute.ts";
import { RTM_NEWLINK } from "./netlink/codec.ts";
import { LinkEvents } from "./netlink/link-events.ts";
import { delLinkByName, dumpLinks } from "./netlink/messages.ts";
import { linkNames, readAddresses, readLink, readLinkKind, readLinkKinds, readLinks, readLinkStats, readRoutes } from "./netlink/read.ts";
import {
  chainRuleCount,
  changeSetElements,
  type DumpedElement,
  dumpSetElements,
  type ElementChange,
  encodeKey,
  type FoundElement,
  getSetElement,
  type NftKeyField,
  rulesetGeneration,
} from "./netlink/nftables.ts";
import { NetlinkError, NetlinkSocket } from "./netlink/socket.ts";
import { ENODEV, NETLINK_NETFILTER } from "./netlink/sys.ts";
import { LinkMonitor } from "./link-monitor.ts";
import { nftInProcess, nftInProcessAvailable, spawnNft } from "./nft-ffi.ts";

export const NETNS_DIR = "/run/netns";

export interface LinkInfo {
  name: string;
  index: number;
  kind: string | undefined; // "bridge", "veth", "vxlan", ... undefined for plain devices
  mtu: number;
  mac: MAC | undefined;
  up: boolean; // administratively up
  operstate: string;
  master: string | undefined;
  /** Flags PROMISC / ALLMULTI and the tx queue length (when `ip` reports them). */
  promisc?: boolean;
  allmulti?: boolean;
  txqlen?: number;
}

/** The kind-specific part of a link (`ip -d`): who its parent is and in which mode it runs. */
export interface LinkKindInfo {
  name: string;
  kind: string | undefined;
  /** The lower device (macvlan/ipvlan/vlan parent) when it is in the same namespace. */
  parent: string | undefined;
  /** macvlan: "bridge" | "private" | "vepa" | "passthru" | "source"; ipvlan: "l2" | "l3" | "l3s". */
  mode: string | undefined;
  /** ipvlan: "bridge" | "private" | "vepa". */
  flag: string | undefined;
  /** vlan: the 802.1Q id. */
  vlanId: number | undefined;
}

/** Link kinds whose kernel support `linkKindSupported` can probe. */
export type ProbedLinkKind = "macvlan" | "ipvlan" | "vlan" | "dummy";

export interface LinkStats {
  name: string;
  rxBytes: number;
  rxPackets: number;
  rxDropped: number;
  rxErrors: number;
  txBytes: number;
  txPackets: number;
  txDropped: number;
  txErrors: number;
}

interface IpJsonCounters {
  bytes: number;
  packets: number;
  errors: number;
  dropped: number;
}

export interface AddrInfo {
  dev: string;
  addr: IPNet;
  scope: string;
}

export interface RouteInfo {
  dst: string; // "default" or a prefix as iproute2 prints it
  gateway: IP | undefined;
  dev: string | undefined;
  family: 4 | 6;
}

interface IpJsonLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  txqlen?: number;
  address?: string;
  flags?: string[];
  operstate?: string;
  master?: string;
  link_type?: string;
  /** The lower device's name (same namespace) or index. */
  link?: string | null;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}
interface IpJsonAddr {
  ifname: string;
  addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
}
interface IpJsonRoute {
  dst: string;
  gateway?: string;
  dev?: string;
}

export class Dataplane {
  /** The namespace Berth treats as "the host" (null: the process's own). */
  readonly hostNs: string | null;
  private readonly supportedKinds = new Set<ProbedLinkKind>();

  /**
   * "netlink": links, addresses and routes over rtnetlink (the default); "ip": through
   * spawned iproute2 as before (BERTH_DATAPLANE=ip in the environment, for debugging).
   */
  readonly linkBackend: "netlink" | "ip";
  /** The netlink socket of this process's own namespace (kept: that namespace cannot go away). */
  private ownSocket: NetlinkSocket | undefined;
  private hasIPv6: boolean | undefined;
  /** The same for nftables' netlink (nftChainRuleCount, nftGetElement). */
  private ownNftSocket: NetlinkSocket | undefined;

  constructor(opts: { hostNs?: string | null; linkBackend?: "netlink" | "ip" } = {}) {
    this.hostNs = opts.hostNs ?? null;
    this.linkBackend = opts.linkBackend ?? (process.env.BERTH_DATAPLANE === "ip" ? "ip" : "netlink");
  }

  /**
   * Runs `fn` with an rtnetlink socket in `ns`. Sockets of other namespaces live for one
   * call only: an open socket would keep a deleted namespace (and its links) alive.
   * Everything inside is synchronous, so calls never interleave on a socket.
   */
  private withNetlink<T>(ns: string | null, what: string, fn: (s: NetlinkSocket) => T): T {
    // a refusal the caller did not handle becomes a BerthError worded like iproute2's
    const guarded = (sock: NetlinkSocket): T => {
      try {
        return fn(sock);
      } catch (e) {
        if (e instanceof NetlinkError) throw systemError(what, `${what}${ns ? ` (netns ${ns})` : ""}: ${ipText(e)}`);
        throw e;
      }
    };
    if (ns === null) {
      this.ownSocket ??= NetlinkSocket.open();
      return guarded(this.ownSocket);
    }
    let sock: NetlinkSocket;
    try {
      sock = NetlinkSocket.open(this.netnsPath(ns));
    } catch (e) {
      throw systemError(what, `Cannot open network namespace "${ns}": ${(e as Error).message}`);
    }
    try {
      return guarded(sock);
    } finally {
      sock.close();
    }
  }

  /**
   * `withNetlink` for the dataplane's other modules (tc.ts: qdiscs, filters, ifb devices):
   * `fn` runs with an rtnetlink socket in `ns`; a refusal it does not handle itself
   * becomes a BerthError worded like iproute2's.
   */
  netlink<T>(ns: string | null, what: string, fn: (s: NetlinkSocket) => T): T {
    return this.withNetlink(ns, what, fn);
  }

  // ---------- namespaces ----------

  /** A namespace is a name under /run/netns or an absolute path (e.g. CNI_NETNS=/proc/PID/ns/net). */
  netnsPath(name: string): string {
    return name.startsWith("/") ? name : `${NETNS_DIR}/${name}`;
  }

  netnsExists(name: string): boolean {
    return existsSync(this.netnsPath(name));
  }

  netnsList(): string[] {
    try {
      return readdirSync(NETNS_DIR);
    } catch {
      return [];
    }
  }

  /** Creates a named namespace with loopback up. */
  async netnsCreate(name: string): Promise<void> {
    await run(["ip", "netns", "add", name]);
    try {
      await run(["ip", "-n", name, "link", "set", "lo", "up"]);
    } catch (e) {
      await this.netnsDelete(name);
      throw e;
    }
  }

  /** Deletes a named namespace; a missing one is success. */
  async netnsDelete(name: string): Promise<void> {
    if (!this.netnsExists(name)) return;
    const r = await run(["ip", "netns", "del", name], { allowFailure: true });
    if (r.exitCode !== 0 && this.netnsExists(name)) {
      throw systemError("netns-delete", `cannot delete netns ${name}: ${r.stderr.trim()}`);
    }
  }

  /** argv prefix that runs a command inside `ns` (network namespace only). */
  nsPrefix(ns: string | null): string[] {
    return ns === null ? [] : ["nsenter", `--net=${this.netnsPath(ns)}`, "--"];
  }

  /**
   * Runs the synchronous part of `fn` with this thread inside `ns` (null: stay
   * where we are): how sockets are opened inside a container's or the host's
   * namespace (see netns-ffi.ts for the rules of the window).
   */
  inNetns<T>(ns: string | null, fn: () => T): T {
    return ns === null ? fn() : withNetnsPath(this.netnsPath(ns), fn);
  }

  /** Runs a command inside a namespace and waits for it. */
  exec(ns: string | null, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return run([...this.nsPrefix(ns), ...argv], opts);
  }

  // ---------- links, addresses, routes ----------

  batch(ns: string | null): IpBatch {
    return new IpBatch(ns);
  }

  /** Runs a batch of iproute2 commands in one process; stops at the first failure. */
  async apply(b: IpBatch): Promise<void> {
    if (b.empty) return;
    if (this.linkBackend === "netlink" && supportsAll(b.ops)) {
      const failed = this.withNetlink(b.ns, "ip-batch", (s) => executeOps(s, b.ops));
      if (failed) throw systemError("ip-batch", `ip ${b.lines[failed.index] ?? "batch"}${b.ns ? ` (netns ${b.ns})` : ""}: ${failed.message}`);
      return;
    }
    const r = await run([...ipArgs(b.ns), "-batch", "-"], { stdin: `${b.lines.join("\n")}\n`, allowFailure: true });
    if (r.exitCode !== 0) {
      // iproute2 prints "Command failed -:N" with the 1-based line
      const m = /Command failed -:(\d+)/.exec(r.stderr);
      const line = m ? b.lines[Number(m[1]) - 1] : undefined;
      const msg = r.stderr.replace(/Command failed -:\d+\s*/, "").trim();
      throw systemError("ip-batch", `ip ${line ?? "batch"}${b.ns ? ` (netns ${b.ns})` : ""}: ${msg}`);
    }
  }

  async links(ns: string | null): Promise<LinkInfo[]> {
    if (this.linkBackend === "netlink") return this.withNetlink(ns, "ip-link", readLinks);
    const r = await run([...ipArgs(ns), "-j", "-d", "link", "show"]);
    return (JSON.parse(r.stdout || "[]") as IpJsonLink[]).map(toLinkInfo);
  }

  /**
   * The links of `ns` as `links` answers them, kept current from the kernel's link
   * notifications instead of dumped on every look (link-monitor.ts); undefined with the
   * `ip` backend. Close it when done: its socket keeps the namespace alive.
   */
  linkMonitor(ns: string | null): LinkMonitor | undefined {
    if (this.linkBackend !== "netlink") return undefined;
    let events: LinkEvents;
    try {
      events = LinkEvents.open(ns === null ? undefined : this.netnsPath(ns));
    } catch (e) {
      throw systemError("ip-link", `link notifications${ns ? ` (netns ${ns})` : ""}: ${(e as Error).message}`);
    }
    return new LinkMonitor(events, () => this.withNetlink(ns, "ip-link", (s) => s.dump(dumpLinks()).filter((m) => m.type === RTM_NEWLINK)));
  }

  async link(ns: string | null, name: string): Promise<LinkInfo | undefined> {
    if (this.linkBackend === "netlink") return this.withNetlink(ns, "ip-link", (s) => readLink(s, name));
    const r = await run([...ipArgs(ns), "-j", "-d", "link", "show", "dev", name], { allowFailure: true });
    if (r.exitCode !== 0) {
      if (/does not exist|Cannot find device/.test(r.stderr)) return undefined;
      throw systemError("ip-link", `ip link show ${name}: ${r.stderr.trim()}`);
    }
    const first = (JSON.parse(r.stdout || "[]") as IpJsonLink[])[0];
    return first ? toLinkInfo(first) : undefined;
  }

  /** Kind, parent and mode of every link in `ns` (one `ip -j -d link` dump). */
  async linkKinds(ns: string | null): Promise<LinkKindInfo[]> {
    if (this.linkBackend === "netlink") return this.withNetlink(ns, "ip-link", readLinkKinds);
    const r = await run([...ipArgs(ns), "-j", "-d", "link", "show"]);
    return (JSON.parse(r.stdout || "[]") as IpJsonLink[]).map(toLinkKindInfo);
  }

  /** Kind, parent and mode of one link, or undefined when it does not exist. */
  async linkKind(ns: string | null, name: string): Promise<LinkKindInfo | undefined> {
    if (this.linkBackend === "netlink") return this.withNetlink(ns, "ip-link", (s) => readLinkKind(s, name));
    const r = await run([...ipArgs(ns), "-j", "-d", "link", "show", "dev", name], { allowFailure: true });
    if (r.exitCode !== 0) {
      if (/does not exist|Cannot find device/.test(r.stderr)) return undefined;
      throw systemError("ip-link", `ip link show ${name}: ${r.stderr.trim()}`);
    }
    const first = (JSON.parse(r.stdout || "[]") as IpJsonLink[])[0];
    return first ? toLinkKindInfo(first) : undefined;
  }

  /**
   * Whether the running kernel can create links of `kind` (the module is built in or
   * loads on demand). The probe runs in a fresh anonymous network namespace
   * (`unshare --net`) that vanishes with the probe, so it changes nothing anywhere.
   * Positive answers are cached (support does not go away while we run).
   */
  async linkKindSupported(kind: ProbedLinkKind): Promise<boolean> {
    if (this.supportedKinds.has(kind)) return true;
    const lines = ["link add name bprobe0 type veth peer name bprobe1"];
    if (kind === "dummy") lines.push("link add name bprobe2 type dummy");
    else if (kind === "vlan") lines.push("link add link bprobe0 name bprobe2 type vlan id 2");
    else lines.push(`link add link bprobe0 name bprobe2 type ${kind}`);
    const r = await run(["unshare", "--net", "--", "ip", "-batch", "-"], { stdin: `${lines.join("\n")}\n`, allowFailure: true });
    if (r.exitCode === 0) {
      this.supportedKinds.add(kind);
      return true;
    }
    if (/Unknown device type|not supported|Operation not supported/i.test(r.stderr)) return false;
    throw systemError("link-probe", `cannot probe kernel support for ${kind} links: ${r.stderr.trim()}`);
  }

  /** Per-interface traffic counters, read from the kernel (`ip -s -j link`). */
  async linkStats(ns: string | null): Promise<LinkStats[]> {
    if (this.linkBackend === "netlink") return this.withNetlink(ns, "ip-link", readLinkStats);
    const r = await run([...ipArgs(ns), "-s", "-j", "link", "show"]);
    const links = JSON.parse(r.stdout || "[]") as (IpJsonLink & { stats64?: { rx: IpJsonCounters; tx: IpJsonCounters } })[];
    return links.map((l) => ({
      name: l.ifname,
      rxBytes: l.stats64?.rx.bytes ?? 0,
      rxPackets: l.stats64?.rx.packets ?? 0,
      rxDropped: l.stats64?.rx.dropped ?? 0,
      rxErrors: l.stats64?.rx.errors ?? 0,
      txBytes: l.stats64?.tx.bytes ?? 0,
      txPackets: l.stats64?.tx.packets ?? 0,
      txDropped: l.stats64?.tx.dropped ?? 0,
      txErrors: l.stats64?.tx.errors ?? 0,
    }));
  }

  async addresses(ns: string | null, dev?: string): Promise<AddrInfo[]> {
    if (this.linkBackend === "netlink") {
      return this.withNetlink(ns, "ip-address", (s) => {
        if (dev === undefined) return readAddresses(s, linkNames(s));
        // one link: looked up by name, its addresses dumped alone (no dump of every link)
        const link = readLink(s, dev);
        if (!link) throw systemError("ip-address", `ip address show dev ${dev}: Device "${dev}" does not exist.`);
        return readAddresses(s, new Map([[link.index, link.name]]), link.index);
      });
    }
    const r = await run([...ipArgs(ns), "-j", "address", "show", ...(dev ? ["dev", dev] : [])]);
    const out: AddrInfo[] = [];
    for (const l of JSON.parse(r.stdout || "[]") as IpJsonAddr[]) {
      for (const a of l.addr_info ?? []) {
        out.push({ dev: l.ifname, addr: IPNet.parse(`${a.local}/${a.prefixlen}`), scope: a.scope });
      }
    }
    return out;
  }

  /**
   * What joining a sandbox needs to know, read with ONE `ip` process (a join used to
   * spawn two; spawns dominate a connect): whether a link named `ifname` exists in
   * `ns` and whether `ns` has a default route of `family`.
   */
  async linkAndDefaultRoute(ns: string | null, ifname: string, family: 4 | 6): Promise<{ linkExists: boolean; hasDefault: boolean }> {
    if (this.linkBackend === "netlink") {
      return this.withNetlink(ns, "ip-link", (s) => ({
        linkExists: readLink(s, ifname) !== undefined,
        hasDefault: readRoutes(s, family, new Map()).some((r) => r.dst === "default"),
      }));
    }
    // -force: a missing device fails its line but not the route line printed before it
    const r = await run([...ipArgs(ns), `-${family}`, "-j", "-force", "-batch", "-"], {
      stdin: `route show default\nlink show dev ${ifname}\n`,
      allowFailure: true,
    });
    const [routes = "[]", link] = r.stdout.split("\n").filter((l) => l.trim() !== "");
    if (r.exitCode !== 0 && (link !== undefined || !/does not exist|Cannot find device/.test(r.stderr))) {
      throw systemError("ip-link", `reading link ${ifname} and default route${ns ? ` (netns ${ns})` : ""}: ${r.stderr.trim()}`);
    }
    return { linkExists: link !== undefined && (JSON.parse(link) as unknown[]).length > 0, hasDefault: (JSON.parse(routes) as unknown[]).length > 0 };
  }

  async routes(ns: string | null, family: 4 | 6 = 4): Promise<RouteInfo[]> {
    if (this.linkBackend === "netlink") return this.withNetlink(ns, "ip-route", (s) => readRoutes(s, family, linkNames(s)));
    const r = await run([...ipArgs(ns), `-${family}`, "-j", "route", "show"]);
    return (JSON.parse(r.stdout || "[]") as IpJsonRoute[]).map((x) => ({
      dst: x.dst,
      gateway: x.gateway ? IP.parse(x.gateway) : undefined,
      dev: x.dev,
      family,
    }));
  }

  /** One link with its addresses (`ip -d addr show dev`), or undefined when it does not exist. */
  async linkWithAddresses(ns: string | null, name: string): Promise<{ link: LinkInfo; addrs: AddrInfo[] } | undefined> {
    if (this.linkBackend === "netlink") {
      return this.withNetlink(ns, "ip-link", (s) => {
        const link = readLink(s, name);
        if (!link) return undefined;
        return { link, addrs: readAddresses(s, new Map([[link.index, link.name]]), link.index) };
      });
    }
    const r = await run([...ipArgs(ns), "-j", "-d", "address", "show", "dev", name], { allowFailure: true });
    if (r.exitCode !== 0) {
      if (/does not exist|Cannot find device/.test(r.stderr)) return undefined;
      throw systemError("ip-link", `ip address show ${name}: ${r.stderr.trim()}`);
    }
    const first = (JSON.parse(r.stdout || "[]") as (IpJsonLink & IpJsonAddr)[])[0];
    if (!first) return undefined;
    const addrs = (first.addr_info ?? []).map((a) => ({ dev: first.ifname, addr: IPNet.parse(`${a.local}/${a.prefixlen}`), scope: a.scope }));
    return { link: toLinkInfo(first), addrs };
  }

  /** Deletes links by name; links already gone are success. Returns the errors of the others. */
  async deleteLinks(ns: string | null, names: readonly string[]): Promise<Error[]> {
    const errors: Error[] = [];
    if (this.linkBackend === "netlink" && names.length > 0) {
      this.withNetlink(ns, "link-delete", (s) => {
        for (const n of names) {
          try {
            s.request(delLinkByName(n));
          } catch (e) {
            if (e instanceof NetlinkError && e.errno === ENODEV) continue;
            if (!(e instanceof NetlinkError)) throw e;
            errors.push(systemError("link-delete", `ip link del ${n}: ${ipText(e)}`));
          }
        }
      });
      return errors;
    }
    // one process per link keeps a missing link from aborting the rest; link deletion
    // is kernel-bound (20-40 ms) so the spawn cost does not matter here
    await Promise.all(
      names.map(async (n) => {
        const r = await run([...ipArgs(ns), "link", "del", "dev", n], { allowFailure: true });
        if (r.exitCode !== 0 && !/Cannot find device|does not exist/.test(r.stderr)) {
          errors.push(systemError("link-delete", `ip link del ${n}: ${r.stderr.trim()}`));
        }
      }),
    );
    return errors;
  }

  // ---------- sysctl ----------

  /** Whether the kernel has IPv6 (booted with ipv6.disable=1 it has no /proc/sys/net/ipv6 in any namespace). */
  ipv6Available(): boolean {
    this.hasIPv6 ??= existsSync("/proc/sys/net/ipv6/conf");
    return this.hasIPv6;
  }

  async sysctlSet(ns: string | null, entries: Record<string, string | number>): Promise<void> {
    if (ns === null) return this.sysctlSetOwn(entries);
    // /proc/sys/net shows the namespace of whoever opens the file: written inside a setns
    // window, no `nsenter sysctl` process (2-5 ms) is needed
    const path = this.netnsPath(ns);
    if (!existsSync(path)) throw systemError("sysctl", `Cannot open network namespace "${ns}": No such file or directory`);
    withNetnsPath(path, () => this.sysctlSetOwn(entries, ns));
  }

  /**
   * Sets sysctls of the namespace this process runs in by writing /proc/sys directly
   * (no process spawned). Keys in dotted or slash form ("net.ipv4.ip_forward").
   */
  sysctlSetOwn(entries: Record<string, string | number>, what?: string): void {
    for (const [k, v] of Object.entries(entries)) {
      try {
        writeFileSync(`/proc/sys/${sysctlPath(k)}`, String(v));
      } catch (e) {
        throw systemError("sysctl", `cannot set ${k}=${v}${what ? ` (netns ${what})` : ""}: ${(e as Error).message}`);
      }
    }
  }

  /** Reads sysctls in `ns` in one process; keys that do not exist are missing from the map. */
  async sysctlRead(ns: string | null, keys: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (keys.length === 0) return out;
    const paths = keys.map((k) => `/proc/sys/${sysctlPath(k)}`);
    // grep -H prints "path:value" per file and names the missing ones on stderr
    const r = await this.exec(ns, ["grep", "-H", "^", ...paths], { allowFailure: true });
    const byPath = new Map<string, string>();
    for (const line of r.stdout.split("\n")) {
      const i = line.indexOf(":");
      if (i > 0) byPath.set(line.slice(0, i), line.slice(i + 1).trim());
    }
    keys.forEach((k, i) => {
      const v = byPath.get(paths[i] ?? "");
      if (v !== undefined) out.set(k, v);
    });
    return out;
  }

  async sysctlGet(ns: string | null, key: string): Promise<string> {
    const r = await this.exec(ns, ["sysctl", "-n", key]);
    return r.stdout.trim();
  }

  // ---------- nftables ----------

  /**
   * Runs `nft ARGS` in `ns` (`stdin`: the script for `-f -`) and answers what nft
   * would: exit code, stdout, stderr; a failing nft is a result, not a throw.
   * In-process through libnftables (nft-ffi.ts) where it can, else the spawned
   * binary (under nsenter); BERTH_NFT=spawn forces the latter.
   */
  async nft(ns: string | null, args: readonly string[], stdin?: string): Promise<RunResult> {
    const r = nftInProcess(ns === null ? null : this.netnsPath(ns), args, stdin);
    if (r) return r;
    return spawnNft((argv, opts) => this.exec(ns, argv, opts), args, stdin);
  }

  /** Whether nftables can be driven at all: libnftables in-process, or an `nft` binary that runs. */
  async nftAvailable(): Promise<boolean> {
    if (nftInProcessAvailable()) return true;
    const r = await run(["nft", "--version"], { allowFailure: true }).catch(() => undefined);
    return r?.exitCode === 0;
  }

  /** Applies an nft script as one atomic transaction. */
  async nftApply(ns: string | null, script: string): Promise<void> {
    const r = await this.nft(ns, ["-f", "-"], script);
    if (r.exitCode !== 0) {
      throw systemError("nft", `nft transaction failed${ns ? ` (netns ${ns})` : ""}: ${r.stderr.trim()}`);
    }
  }

  /**
   * Runs an nft script (one transaction, `nft -j -f -`) that may end in `list`
   * commands; returns whether it committed and the JSON the list commands printed.
   * A failed transaction is an answer here, not an error.
   */
  async nftTry(ns: string | null, script: string): Promise<{ ok: boolean; json: NftJson | undefined; stderr: string }> {
    const r = await this.nft(ns, ["-j", "-f", "-"], script);
    let json: NftJson | undefined;
    try {
      json = r.stdout.trim() ? (JSON.parse(r.stdout) as NftJson) : undefined;
    } catch {
      json = undefined;
    }
    return { ok: r.exitCode === 0, json, stderr: r.stderr };
  }

  /**
   * The number of rules in one chain (0 without such a table or chain), asked of the
   * kernel directly: through libnftables any listing first dumps every set element.
   */
  async nftChainRuleCount(ns: string | null, family: string, table: string, chain: string): Promise<number> {
    return this.withNftNetlink(ns, (s) => chainRuleCount(s, family, table, chain));
  }

  /**
   * One set element by its key (`keyEnd`: the last key of an interval element's range),
   * looked up by the kernel: its comment, or undefined when the element, set or table is absent.
   */
  async nftGetElement(ns: string | null, family: string, table: string, set: string, key: readonly NftKeyField[], keyEnd?: readonly NftKeyField[]): Promise<FoundElement | undefined> {
    return this.withNftNetlink(ns, (s) => getSetElement(s, family, table, set, encodeKey(key), keyEnd ? encodeKey(keyEnd) : undefined));
  }

  /** Every element of one plain set (keys as bytes, comments), read from the kernel directly; [] without the set. */
  async nftSetElements(ns: string | null, family: string, table: string, set: string): Promise<DumpedElement[]> {
    return this.withNftNetlink(ns, (s) => dumpSetElements(s, family, table, set));
  }

  /**
   * Adds, creates and deletes set elements in one transaction over netlink, without
   * libnftables (whose first use costs a process ~3.5 ms). A refusal is a BerthError
   * with the kernel's reason ("File exists", "No such file or directory").
   */
  async nftChangeElements(ns: string | null, family: string, table: string, changes: readonly ElementChange[]): Promise<void> {
    this.withNftNetlink(ns, (s) => changeSetElements(s, family, table, changes));
  }

  /**
   * The namespace's nftables ruleset generation: it changes with every committed
   * transaction in the namespace (anyone's), so an unchanged value proves nothing
   * there changed. O(1), read from the kernel directly.
   */
  async nftGeneration(ns: string | null): Promise<number> {
    return this.withNftNetlink(ns, rulesetGeneration);
  }

  private withNftNetlink<T>(ns: string | null, fn: (s: NetlinkSocket) => T): T {
    let sock: NetlinkSocket;
    try {
      // the own namespace's socket is kept (closing a netfilter socket can wait for the kernel's RCU grace period)
      if (ns === null) this.ownNftSocket ??= NetlinkSocket.open(undefined, NETLINK_NETFILTER);
      sock = ns === null ? this.ownNftSocket! : NetlinkSocket.open(this.netnsPath(ns), NETLINK_NETFILTER);
    } catch (e) {
      throw systemError("nft", `nftables netlink${ns ? ` (netns ${ns})` : ""}: ${(e as Error).message}`);
    }
    try {
      return fn(sock);
    } catch (e) {
      if (e instanceof NetlinkError) throw systemError("nft", `nftables netlink${ns ? ` (netns ${ns})` : ""}: ${e.message}`);
      throw e;
    } finally {
      if (sock !== this.ownNftSocket) sock.close();
    }
  }

  /** Lists one table as nft JSON, or undefined when it does not exist. */
  async nftListTable(ns: string | null, family: string, table: string): Promise<NftJson | undefined> {
    const r = await this.nft(ns, ["-j", "list", "table", family, table]);
    if (r.exitCode !== 0) {
      if (/No such file or directory/.test(r.stderr)) return undefined;
      throw systemError("nft", `nft list table ${family} ${table}: ${r.stderr.trim()}`);
    }
    return JSON.parse(r.stdout) as NftJson;
  }

  async nftDeleteTable(ns: string | null, family: string, table: string): Promise<void> {
    const r = await this.nft(ns, ["delete", "table", family, table]);
    if (r.exitCode !== 0 && !/No such file or directory/.test(r.stderr)) {
      throw systemError("nft", `nft delete table ${family} ${table}: ${r.stderr.trim()}`);
    }
  }

  requireNetns(name: string): void {
    if (!this.netnsExists(name)) throw notFound("netns-not-found", `network namespace ${name} does not exist`, "netns");
  }
}

export interface NftJson {
  nftables: Record<string, unknown>[];
}

/** "net.ipv4.conf.eth0.rp_filter" -> "net/ipv4/conf/eth0/rp_filter"; a key with "/" is taken as a path already. */
/**
 * A sysctl key as its file under /proc/sys, read as sysctl(8) reads it: when the first
 * separator is a dot, dots separate and a slash stands for a dot inside a name
 * ("net.ipv4.conf.eth0/100.rp_filter"); otherwise slashes separate ("net/ipv4/conf/eth0.100/rp_filter").
 */
function sysctlPath(key: string): string {
  const k = key.replace(/^\/+/, "");
  const dot = k.indexOf(".");
  const slash = k.indexOf("/");
  const dotted = dot >= 0 && (slash < 0 || dot < slash);
  const p = dotted ? k.replace(/[./]/g, (c) => (c === "." ? "/" : ".")) : k;
  if (p.split("/").some((seg) => seg === ".." || seg === "." || seg === "")) {
    throw systemError("sysctl", `invalid sysctl key ${JSON.stringify(key)}`);
  }
  return p;
}

function ipArgs(ns: string | null): string[] {
  if (ns === null) return ["ip"];
  // ip -n only knows names under /run/netns (and is ~1.5 ms faster than nsenter + ip);
  // other paths (e.g. /proc/PID/ns/net) go through nsenter
  const named = /^\/(?:var\/)?run\/netns\/([^/\s]+)$/.exec(ns);
  if (named) return ["ip", "-n", named[1] ?? ""];
  return ns.startsWith("/") ? ["nsenter", `--net=${ns}`, "--", "ip"] : ["ip", "-n", ns];
}

function toLinkKindInfo(l: IpJsonLink): LinkKindInfo {
  const d = l.linkinfo?.info_data ?? {};
  const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
  return {
    name: l.ifname,
    kind: l.linkinfo?.info_kind,
    parent: str(l.link),
    mode: str(d.mode),
    // iproute2 prints ipvlan flags as booleans ("private": true / "vepa": true); neither is bridge
    flag: l.linkinfo?.info_kind === "ipvlan" ? (d.private === true ? "private" : d.vepa === true ? "vepa" : "bridge") : undefined,
    vlanId: typeof d.id === "number" ? d.id : undefined,
  };
}

function toLinkInfo(l: IpJsonLink): LinkInfo {
  return {
    name: l.ifname,
    index: l.ifindex,
    kind: l.linkinfo?.info_kind,
    mtu: l.mtu,
    mac: l.address && l.link_type === "ether" ? MAC.parse(l.address) : undefined,
    up: (l.flags ?? []).includes("UP"),
    operstate: l.operstate ?? "UNKNOWN",
    master: l.master,
    promisc: (l.flags ?? []).includes("PROMISC"),
    allmulti: (l.flags ?? []).includes("ALLMULTI"),
    ...(l.txqlen !== undefined ? { txqlen: l.txqlen } : {}),
  };
}
