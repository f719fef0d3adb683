/**
 * Containers for `berth run`: a process in its own network namespace and
 * cgroup, attached to networks through the controller.
 *
 * Lifecycle: create record -> netns -> cgroup (limits) -> connect networks ->
 * spawn. Each step is undone if a later one fails. The process is started by a
 * tiny shell trampoline that first writes its own pid into the cgroup, then
 * execs into the namespace, so nothing runs outside its limits.
 */
import { closeSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { Controller } from "../controller/controller.ts";
import { UndoStack } from "../controller/undo.ts";
import { type CgroupLimits, Cgroups, validateLimits } from "../dataplane/cgroup.ts";
import { conflict, forbidden, invalid, notFound } from "../errors.ts";
import { type IP, type PortMapping, validateNetworkName } from "../net/index.ts";
import { newId, nowIso } from "../store/index.ts";
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
  limits?: CgroupLimits;
  labels?: Record<string, string>;
}

export interface ContainerView extends ContainerRecord {
  endpoints: EndpointRecord[];
  /** Path of the container's network namespace ("" for the host's). */
  netnsPath: string;
  cgroupProcs: string[];
  logPath: string;
}

export interface ContainerRuntimeOptions {
  controller: Controller;
  stateDir: string;
  /** Prefix of container netns names (tests use their own). */
  netnsPrefix?: string;
  cgroups?: Cgroups;
}

export class ContainerRuntime {
  private readonly ctl: Controller;
  private readonly stateDir: string;
  private readonly netnsPrefix: string;
  readonly cgroups: Cgroups;
  private readonly procs = new Map<string, Subprocess>();
  private readonly exitWaiters = new Map<string, Promise<number>>();

  constructor(o: ContainerRuntimeOptions) {
    this.ctl = o.controller;
    this.stateDir = o.stateDir;
    this.netnsPrefix = o.netnsPrefix ?? "berth-";
    this.cgroups = o.cgroups ?? new Cgroups();
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
    const id = newId();
    const name = req.name ?? `c-${id.slice(0, 12)}`;
    validateNetworkName(name, "name");
    if (await this.ctl.store.containers.find(name).then((c) => c?.name === name)) {
      throw conflict("container-exists", `container name ${name} is already in use`, "name");
    }
    const attachments = req.networks.length > 0 ? req.networks : [{ network: "bridge" }];
    const nets = await Promise.all(attachments.map((a) => this.ctl.getNetwork(a.network)));
    const hostNet = nets.some((n) => n.driver === "host");
    if (hostNet && nets.length > 1) {
      throw forbidden("exclusive-network", "a container on the host network cannot join other networks", "network");
    }
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
      if (!hostNet) {
        await this.ctl.dp.netnsCreate(netns);
        undo.push("netns", () => this.ctl.dp.netnsDelete(netns));
      }
      await this.cgroups.create(rec.cgroup!, rec.limits);
      undo.push("cgroup", () => this.cgroups.remove(rec.cgroup!));
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
      this.ctl.faults.hit("run:before-spawn");
      const proc = this.spawn(rec);
      rec.pid = proc.pid;
      rec.state = "running";
      await this.ctl.store.containers.update(rec);
      undo.commit();
    } catch (e) {
      await undo.rollback();
      throw e;
    }
    return this.inspect(id);
  }

  private spawn(rec: ContainerRecord): Subprocess {
    const procsFiles = this.cgroups.procsFiles(rec.cgroup!);
    const nsArgv = rec.netns === "" ? [] : this.ctl.dp.nsPrefix(rec.netns);
    // join the cgroup first, then become the command inside the namespace
    const trampoline = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
    const log = openSync(this.logPath(rec.id), "a");
    try {
      const proc = Bun.spawn(["setsid", "sh", "-c", trampoline, "sh", ...procsFiles, "--", ...nsArgv, ...rec.command], {
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
    if (c.cgroup) await step(() => this.cgroups.remove(c.cgroup!));
    await step(async () => {
      await this.exitWaiters.get(c.id);
    });
    await step(() => this.ctl.disconnectAll(c.id, c.netns));
    if (c.netns !== "" && c.netns !== this.ctl.dp.hostNs) await step(() => this.ctl.dp.netnsDelete(c.netns));
    await step(() => this.ctl.store.containers.delete(c.id));
    if (errors[0]) throw errors[0];
  }

  private isAlive(c: ContainerRecord): boolean {
    if (this.procs.has(c.id)) return true;
    if (c.cgroup) return this.cgroups.pids(c.cgroup).length > 0;
    return false;
  }

  /** After a daemon restart: containers whose processes are gone are marked exited. */
  async recover(): Promise<void> {
    for (const c of await this.ctl.store.containers.list()) {
      if (c.state === "running" && !this.isAlive(c)) {
        c.state = "exited";
        await this.ctl.store.containers.update(c);
      }
    }
  }
}
