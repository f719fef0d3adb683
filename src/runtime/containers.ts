/**
 * Containers for `berth run`: a process in its own network namespace and
 * cgroup, attached to networks through the controller.
 *
 * Lifecycle: create record -> netns -> cgroup (limits) -> connect networks ->
 * spawn. Each step is undone if a later one fails. The process is started by a
 * tiny shell trampoline that first writes its own pid into the cgroup, then
 * execs into the namespace, so nothing runs outside its limits.
 */
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { Controller } from "../controller/controller.ts";
import { UndoStack } from "../controller/undo.ts";
import { type CgroupLimits, Cgroups, type CgroupStats, inCgroupArgv, validateLimits } from "../dataplane/cgroup.ts";

export type { IoLimit } from "../dataplane/cgroup.ts";
import { applyBandwidth, type BandwidthLimits, removeBandwidth, validateBandwidth } from "./bandwidth.ts";
import type { LinkStats } from "../dataplane/dataplane.ts";
import type { DnsService } from "../dns/server.ts";
import { NO_DNS_DRIVERS } from "../dns/names.ts";
import { renderResolvConf } from "../dns/resolvconf.ts";
import { readHostResolvConf } from "../dns/upstream.ts";
import { BerthError, conflict, forbidden, invalid, notFound } from "../errors.ts";
import { type IP, type PortMapping, validateDnsLabel, validateNetworkName } from "../net/index.ts";
import { nameTaken, newId, nowIso } from "../store/index.ts";
import type { ContainerRecord, EndpointRecord } from "../store/types.ts";

export interface NetworkAttachment {
  network: string;
  ports?: PortMapping[];
  ipv4?: IP;
  ipv6?: IP;
  aliases?: string[];
}

export interface RunRequest {
  name?: string;
  command: string[];
  networks: NetworkAttachment[];
  limits?: CgroupLimits & BandwidthLimits;
  labels?: Record<string, string>;
}

export interface ContainerView extends ContainerRecord {
  endpoints: EndpointRecord[];
  /** Path of the container's network namespace ("" for the host's). */
  netnsPath: string;
  cgroupProcs: string[];
  logPath: string;
  /** The container's /etc/resolv.conf (bind-mounted in its mount namespace); "" when it uses the host's. */
  resolvConfPath: string;
}

export interface ContainerStats {
  id: string;
  name: string;
  state: string;
  read: string;
  cgroup: CgroupStats | undefined;
  networks: LinkStats[];
}

export interface ContainerRuntimeOptions {
  controller: Controller;
  stateDir: string;
  /** Prefix of container netns names (tests use their own). */
  netnsPrefix?: string;
  cgroups?: Cgroups;
  /** Embedded DNS: containers on networks with names get a resolver and their own resolv.conf. */
  dns?: DnsService;
}

export class ContainerRuntime {
  private readonly ctl: Controller;
  private readonly stateDir: string;
  private readonly netnsPrefix: string;
  readonly cgroups: Cgroups;
  readonly dns: DnsService | undefined;
  private readonly procs = new Map<string, Subprocess>();
  private readonly exitWaiters = new Map<string, Promise<number>>();

  constructor(o: ContainerRuntimeOptions) {
    this.ctl = o.controller;
    this.stateDir = o.stateDir;
    this.netnsPrefix = o.netnsPrefix ?? "berth-";
    this.cgroups = o.cgroups ?? new Cgroups();
    this.dns = o.dns;
    mkdirSync(this.logDir, { recursive: true });
  }

  private get logDir(): string {
    return join(this.stateDir, "containers");
  }

  logPath(id: string): string {
    return join(this.logDir, `${id}.log`);
  }

  cgroupName(id: string): string {
    return `${this.netnsPrefix}${id.slice(0, 12)}`;
  }

  async run(req: RunRequest): Promise<ContainerView> {
    if (req.command.length === 0) throw invalid("no-command", "a command to run is required", "command");
    validateLimits(req.limits ?? {});
    const bw: BandwidthLimits = pickBandwidth(req.limits ?? {});
    validateBandwidth(bw);
    const id = newId();
    const name = req.name ?? `c-${id.slice(0, 12)}`;
    validateNetworkName(name, "name");
    if (await nameTaken(this.ctl.store.containers, name)) {
      throw conflict("container-exists", `container name ${name} is already in use`, "name");
    }
    const attachments = req.networks.length > 0 ? req.networks : [{ network: "bridge" }];
    const nets = await Promise.all(attachments.map((a) => this.ctl.getNetwork(a.network)));
    const hostNet = nets.some((n) => n.driver === "host");
    if (hostNet && nets.length > 1) {
      throw forbidden("exclusive-network", "a container on the host network cannot join other networks", "network");
    }
    if ((bw.ingressRate || bw.egressRate) && nets.some((n) => n.driver !== "bridge")) {
      throw invalid("bandwidth-needs-veth", "bandwidth limits need bridge networks (a veth endpoint to shape on the host side)", "network");
    }
    const withDns = this.dns !== undefined && nets.some((n) => !NO_DNS_DRIVERS.includes(n.driver));
    if (withDns) validateDnsName(name);
    const netns = hostNet ? (this.ctl.dp.hostNs ?? "") : `${this.netnsPrefix}${id.slice(0, 12)}`;
    const rec: ContainerRecord = {
      id,
      name,
      netns,
      command: [...req.command],
      state: "created",
      limits: { ...(req.limits ?? {}) },
      created: nowIso(),
      labels: { ...(req.labels ?? {}) },
      cgroup: this.cgroupName(id),
    };
    const undo = new UndoStack();
    try {
      await this.ctl.store.containers.create(rec);
      undo.push("container record", () => this.ctl.store.containers.delete(id).then(() => undefined));
      this.ctl.faults.hit("run:after-record");
      if (!hostNet) {
        await this.ctl.dp.netnsCreate(netns);
        undo.push("netns", () => this.ctl.dp.netnsDelete(netns));
      }
      this.ctl.faults.hit("run:after-netns");
      await this.cgroups.create(rec.cgroup!, rec.limits);
      undo.push("cgroup", () => this.cgroups.remove(rec.cgroup!));
      this.ctl.faults.hit("run:after-cgroup");
      for (const a of attachments) {
        await this.ctl.connect({
          network: a.network,
          containerId: id,
          netns,
          ...(a.ports ? { ports: a.ports } : {}),
          ...(a.ipv4 ? { ipv4: a.ipv4 } : {}),
          ...(a.ipv6 ? { ipv6: a.ipv6 } : {}),
          aliases: [name, ...(a.aliases ?? [])],
        });
        undo.push(`connect ${a.network}`, () => this.ctl.disconnect(a.network, id, netns));
      }
      if (bw.ingressRate || bw.egressRate) {
        const eps = await this.ctl.store.endpoints.listByContainer(id);
        if (hostNet || eps.length === 0) throw invalid("bandwidth-needs-veth", "bandwidth limits need a bridge network", "network");
        for (const ep of eps) {
          await applyBandwidth(this.ctl.dp, ep, bw);
          undo.push(`bandwidth ${ep.ifname}`, () => removeBandwidth(this.ctl.dp, ep));
        }
      }
      if (withDns) {
        await this.attachDns(rec);
        undo.push("dns", async () => this.detachDns(id));
      }
      this.ctl.faults.hit("run:before-spawn");
      const proc = this.spawn(rec);
      rec.pid = proc.pid;
      rec.state = "running";
      await this.ctl.store.containers.update(rec);
      undo.commit();
      this.ctl.events.emit("container", "start", rec.id, { name: rec.name });
    } catch (e) {
      await undo.rollback();
      throw e;
    }
    return this.inspect(id);
  }

  private spawn(rec: ContainerRecord): Subprocess {
    const procsFiles = this.cgroups.procsFiles(rec.cgroup!);
    const nsArgv = [...this.mountNsPrefix(rec.id), ...(rec.netns === "" ? [] : this.ctl.dp.nsPrefix(rec.netns))];
    // join the cgroup first, then become the command inside the namespace
    const log = openSync(this.logPath(rec.id), "a");
    try {
      const proc = Bun.spawn(["setsid", ...inCgroupArgv(procsFiles, [...nsArgv, ...rec.command])], {
        stdin: "ignore",
        stdout: log,
        stderr: log,
      });
      this.procs.set(rec.id, proc);
      this.exitWaiters.set(
        rec.id,
        proc.exited.then(async (code) => {
          this.procs.delete(rec.id);
          const cur = await this.ctl.store.containers.get(rec.id).catch(() => undefined);
          if (cur && cur.state === "running") {
            cur.state = "exited";
            cur.exitCode = code;
            await this.ctl.store.containers.update(cur).catch(() => undefined);
            this.ctl.events.emit("container", "die", cur.id, { name: cur.name, exitCode: String(code) });
          }
          return code;
        }),
      );
      return proc;
    } finally {
      closeSync(log);
    }
  }

  async find(idOrName: string): Promise<ContainerRecord> {
    const c = await this.ctl.store.containers.find(idOrName);
    if (!c) throw notFound("container-not-found", `no such container: ${idOrName}`, "container");
    return c;
  }

  async inspect(idOrName: string): Promise<ContainerView> {
    const c = await this.find(idOrName);
    return {
      ...c,
      endpoints: await this.ctl.store.endpoints.listByContainer(c.id),
      netnsPath: c.netns === "" ? "" : this.ctl.dp.netnsPath(c.netns),
      cgroupProcs: c.cgroup ? this.cgroups.procsFiles(c.cgroup) : [],
      logPath: this.logPath(c.id),
      resolvConfPath: existsSync(this.resolvConfPath(c.id)) ? this.resolvConfPath(c.id) : "",
    };
  }

  async list(all = true): Promise<ContainerView[]> {
    const out: ContainerView[] = [];
    for (const c of await this.ctl.store.containers.list()) {
      if (!all && c.state !== "running") continue;
      out.push(await this.inspect(c.id));
    }
    return out.sort((a, b) => a.created.localeCompare(b.created));
  }

  /** Waits for the container's process to exit and returns its exit code. */
  async wait(idOrName: string): Promise<number> {
    const c = await this.find(idOrName);
    const w = this.exitWaiters.get(c.id);
    if (w) return w;
    return c.exitCode ?? 0;
  }

  /** Stops (SIGKILL to the whole cgroup) and removes a container and everything it had. */
  async remove(idOrName: string, force = false): Promise<void> {
    const c = await this.find(idOrName);
    if (c.state === "running" && !force && this.isAlive(c)) {
      throw conflict("container-running", `container ${c.name} is running: stop it first or use --force`, "container");
    }
    const errors: Error[] = [];
    const step = async (f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        errors.push(e as Error);
      }
    };
    // marked first: a crash half-way leaves a record that recovery finishes removing at the next start
    if (c.pending !== "remove") {
      c.pending = "remove";
      await this.ctl.store.containers.update(c).catch(() => undefined);
    }
    this.ctl.faults.checkpoint("remove:after-mark");
    if (c.cgroup) await step(() => this.cgroups.remove(c.cgroup!));
    if (c.limits.ingressRate || c.limits.egressRate) {
      for (const ep of await this.ctl.store.endpoints.listByContainer(c.id)) await step(() => removeBandwidth(this.ctl.dp, ep));
    }
    await step(async () => {
      await this.exitWaiters.get(c.id);
    });
    await step(async () => this.detachDns(c.id));
    await step(() => this.ctl.disconnectAll(c.id, c.netns));
    this.ctl.faults.checkpoint("remove:after-disconnect");
    if (c.netns !== "" && c.netns !== this.ctl.dp.hostNs) await step(() => this.ctl.dp.netnsDelete(c.netns));
    this.ctl.faults.checkpoint("remove:after-netns");
    await step(() => this.ctl.store.containers.delete(c.id));
    this.ctl.events.emit("container", "destroy", c.id, { name: c.name });
    if (errors[0]) throw errors[0];
  }

  private isAlive(c: ContainerRecord): boolean {
    if (this.procs.has(c.id)) return true;
    if (c.cgroup) return this.cgroups.pids(c.cgroup).length > 0;
    return false;
  }

  // ---------------- embedded DNS ----------------

  resolvConfPath(id: string): string {
    return join(this.logDir, `${id}.resolv.conf`);
  }

  /** Writes the container's resolv.conf and opens its resolver (127.0.0.11 in its netns). */
  private async attachDns(rec: ContainerRecord): Promise<void> {
    const dns = this.dns!;
    writeFileSync(this.resolvConfPath(rec.id), renderResolvConf(dns.address, readHostResolvConf(), rec.name), { mode: 0o644 });
    try {
      await dns.attach(rec.id, rec.netns);
    } catch (e) {
      rmSync(this.resolvConfPath(rec.id), { force: true });
      throw e;
    }
  }

  private detachDns(id: string): void {
    this.dns?.detach(id);
    rmSync(this.resolvConfPath(id), { force: true });
  }

  /**
   * argv prefix giving the process a private mount namespace in which the
   * container's resolv.conf is bound over /etc/resolv.conf (Berth containers
   * otherwise share the host's files). Empty when the container has none.
   */
  private mountNsPrefix(id: string): string[] {
    const f = this.resolvConfPath(id);
    if (!existsSync(f)) return [];
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf || exit 125; exec "$@"', f];
  }

  /** Usage of one container: cgroup counters and per-interface traffic, read from the kernel. */
  async stats(idOrName: string): Promise<ContainerStats> {
    const c = await this.find(idOrName);
    const cg = c.cgroup && c.state === "running" ? this.cgroups.stats(c.cgroup) : undefined;
    const ns = c.netns === "" ? null : c.netns;
    const nets = c.state === "running" && (ns === null || this.ctl.dp.netnsExists(ns)) ? await this.ctl.dp.linkStats(ns) : [];
    return { id: c.id, name: c.name, state: c.state, read: new Date().toISOString(), cgroup: cg, networks: nets.filter((n) => n.name !== "lo") };
  }

  /**
   * Crash recovery, first thing at daemon start: a container still "created" was
   * being run when the daemon died (rolled back: removed with everything it had),
   * one marked "remove" was being removed (rolled forward: removal finished).
   * Returns the names of the containers removed.
   */
  async recoverInterrupted(): Promise<string[]> {
    const removed: string[] = [];
    for (const c of await this.ctl.store.containers.list()) {
      if (c.state !== "created" && c.pending !== "remove") continue;
      await this.remove(c.id, true);
      removed.push(c.name);
    }
    return removed;
  }

  /** After a daemon restart: containers whose processes are gone are marked exited. */
  async recover(): Promise<void> {
    for (const c of await this.ctl.store.containers.list()) {
      if (c.state === "running" && !this.isAlive(c)) {
        c.state = "exited";
        await this.ctl.store.containers.update(c);
      } else if (c.state === "running" && this.dns && existsSync(this.resolvConfPath(c.id))) {
        // a new daemon: the resolver sockets died with the old one
        await this.dns.attach(c.id, c.netns).catch((e: Error) => console.error(`berth: DNS for container ${c.name}: ${e.message}`));
      }
    }
  }
}

/** Container names become DNS names on their networks: they must be valid DNS labels. */
function validateDnsName(name: string): void {
  try {
    validateDnsLabel(name, "name");
  } catch (e) {
    if (!(e instanceof BerthError)) throw e;
    throw invalid("name-not-dns", `container name ${JSON.stringify(name)} cannot be used: containers are resolvable by name, and ${e.message.replace(/^DNS label "[^"]*" /, "it ")}`, "name");
  }
}

function pickBandwidth(l: BandwidthLimits): BandwidthLimits {
  const out: BandwidthLimits = {};
  for (const k of ["ingressRate", "egressRate", "ingressBurst", "egressBurst"] as const) if (l[k] !== undefined) out[k] = l[k];
  return out;
}
