/**
 * The dataplane: the only code in Berth that touches the kernel.
 *
 * Every operation names the network namespace it acts in: a named netns under
 * /run/netns, or `null` for the namespace the process itself runs in. Berth's
 * "host" namespace is configurable (`hostNs`), which is how the tests and the
 * demo run a whole Berth inside a sandbox namespace without touching the real
 * host's network.
 *
 * Implementation: iproute2 (`ip -json`, `ip -batch -`) and nftables
 * (`nft -f -`, one atomic transaction per call), spawned through nsenter for
 * namespaces. Behind this class so that a direct netlink implementation can
 * replace parts of it where measurements say it pays.
 */
import { existsSync, readdirSync } from "node:fs";
import { notFound, systemError } from "../errors.ts";
import { IP, IPNet, MAC } from "../net/index.ts";
import { IpBatch } from "./ipbatch.ts";
import { run, type RunOptions, type RunResult } from "./exec.ts";

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
  address?: string;
  flags?: string[];
  operstate?: string;
  master?: string;
  link_type?: string;
  linkinfo?: { info_kind?: string };
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

  constructor(opts: { hostNs?: string | null } = {}) {
    this.hostNs = opts.hostNs ?? null;
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
    const r = await run([...ipArgs(ns), "-j", "-d", "link", "show"]);
    return (JSON.parse(r.stdout || "[]") as IpJsonLink[]).map(toLinkInfo);
  }

  async link(ns: string | null, name: string): Promise<LinkInfo | undefined> {
    const r = await run([...ipArgs(ns), "-j", "-d", "link", "show", "dev", name], { allowFailure: true });
    if (r.exitCode !== 0) {
      if (/does not exist|Cannot find device/.test(r.stderr)) return undefined;
      throw systemError("ip-link", `ip link show ${name}: ${r.stderr.trim()}`);
    }
    const first = (JSON.parse(r.stdout || "[]") as IpJsonLink[])[0];
    return first ? toLinkInfo(first) : undefined;
  }

  async addresses(ns: string | null, dev?: string): Promise<AddrInfo[]> {
    const r = await run([...ipArgs(ns), "-j", "address", "show", ...(dev ? ["dev", dev] : [])]);
    const out: AddrInfo[] = [];
    for (const l of JSON.parse(r.stdout || "[]") as IpJsonAddr[]) {
      for (const a of l.addr_info ?? []) {
        out.push({ dev: l.ifname, addr: IPNet.parse(`${a.local}/${a.prefixlen}`), scope: a.scope });
      }
    }
    return out;
  }

  async routes(ns: string | null, family: 4 | 6 = 4): Promise<RouteInfo[]> {
    const r = await run([...ipArgs(ns), `-${family}`, "-j", "route", "show"]);
    return (JSON.parse(r.stdout || "[]") as IpJsonRoute[]).map((x) => ({
      dst: x.dst,
      gateway: x.gateway ? IP.parse(x.gateway) : undefined,
      dev: x.dev,
      family,
    }));
  }

  /** Deletes links by name; links already gone are success. Returns the errors of the others. */
  async deleteLinks(ns: string | null, names: readonly string[]): Promise<Error[]> {
    const errors: Error[] = [];
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

  async sysctlSet(ns: string | null, entries: Record<string, string | number>): Promise<void> {
    const args = Object.entries(entries).map(([k, v]) => `${k}=${v}`);
    if (args.length === 0) return;
    await this.exec(ns, ["sysctl", "-q", "-w", ...args]);
  }

  async sysctlGet(ns: string | null, key: string): Promise<string> {
    const r = await this.exec(ns, ["sysctl", "-n", key]);
    return r.stdout.trim();
  }

  // ---------- nftables ----------

  /** Applies an nft script as one atomic transaction. */
  async nftApply(ns: string | null, script: string): Promise<void> {
    const r = await this.exec(ns, ["nft", "-f", "-"], { stdin: script, allowFailure: true });
    if (r.exitCode !== 0) {
      throw systemError("nft", `nft transaction failed${ns ? ` (netns ${ns})` : ""}: ${r.stderr.trim()}`);
    }
  }

  /** Lists one table as nft JSON, or undefined when it does not exist. */
  async nftListTable(ns: string | null, family: string, table: string): Promise<NftJson | undefined> {
    const r = await this.exec(ns, ["nft", "-j", "list", "table", family, table], { allowFailure: true });
    if (r.exitCode !== 0) {
      if (/No such file or directory/.test(r.stderr)) return undefined;
      throw systemError("nft", `nft list table ${family} ${table}: ${r.stderr.trim()}`);
    }
    return JSON.parse(r.stdout) as NftJson;
  }

  async nftDeleteTable(ns: string | null, family: string, table: string): Promise<void> {
    const r = await this.exec(ns, ["nft", "delete", "table", family, table], { allowFailure: true });
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

function ipArgs(ns: string | null): string[] {
  if (ns === null) return ["ip"];
  // ip -n only knows names under /run/netns; paths go through nsenter
  return ns.startsWith("/") ? ["nsenter", `--net=${ns}`, "--", "ip"] : ["ip", "-n", ns];
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
  };
}
