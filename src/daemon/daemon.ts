/**
 * berthd: wires store, IPAM, dataplane, controller and runtime together and
 * serves the API on a unix socket (mode 0660, root only).
 */
import { chmodSync, existsSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Server } from "bun";
import { API_VERSION, BERTH_VERSION, route } from "../api/router.ts";
import { Controller } from "../controller/controller.ts";
import { Reconciler } from "../controller/reconcile.ts";
import { Cgroups } from "../dataplane/cgroup.ts";
import { Dataplane } from "../dataplane/dataplane.ts";
import { invalid } from "../errors.ts";
import { Ipam } from "../ipam/index.ts";
import type { DefaultPoolSpec } from "../ipam/defaults.ts";
import { ContainerRuntime } from "../runtime/containers.ts";
import { openSqliteStore } from "../store/index.ts";
import type { Store } from "../store/types.ts";

export interface DaemonConfig {
  socket: string;
  stateDir: string;
  /** Treat this named netns as the host (sandboxes, demo); null = own namespace. */
  hostNetns: string | null;
  netnsPrefix: string;
  cgroupParent: string;
  defaultPools?: DefaultPoolSpec[];
  /** Reconcile the kernel with the store every N ms (0: only at start). */
  reconcileIntervalMs?: number;
}

export const DEFAULT_CONFIG: DaemonConfig = {
  socket: "/run/berth/berth.sock",
  stateDir: "/var/lib/berth",
  hostNetns: null,
  netnsPrefix: "berth-",
  cgroupParent: "berth",
};

export class Daemon {
  readonly config: DaemonConfig;
  readonly store: Store;
  readonly controller: Controller;
  readonly runtime: ContainerRuntime;
  readonly reconciler: Reconciler;
  private server: Server<undefined> | undefined;

  private constructor(config: DaemonConfig, store: Store, controller: Controller, runtime: ContainerRuntime, reconciler: Reconciler) {
    this.config = config;
    this.store = store;
    this.controller = controller;
    this.runtime = runtime;
    this.reconciler = reconciler;
  }

  static async start(config: DaemonConfig): Promise<Daemon> {
    const dp = new Dataplane({ hostNs: config.hostNetns });
    if (config.hostNetns !== null && !dp.netnsExists(config.hostNetns)) {
      throw invalid("bad-host-netns", `host netns ${config.hostNetns} does not exist`, "host-netns");
    }
    const store = openSqliteStore(config.stateDir);
    const ipam = new Ipam(store, config.defaultPools ? { defaultPools: config.defaultPools } : {});
    const controller = new Controller({ store, ipam, dp });
    const runtime = new ContainerRuntime({
      controller,
      stateDir: config.stateDir,
      netnsPrefix: config.netnsPrefix,
      cgroups: new Cgroups({ parent: config.cgroupParent }),
    });
    await controller.ensurePredefined();
    await controller.syncFirewall();
    await runtime.recover();
    const reconciler = new Reconciler(controller, (r) => console.error(JSON.stringify({ level: r.result === "failed" ? "error" : "warn", msg: "repair", ...r })));
    await reconciler.runOnce();
    const interval = config.reconcileIntervalMs ?? 1000;
    if (interval > 0) reconciler.start(interval);
    const d = new Daemon(config, store, controller, runtime, reconciler);
    d.listen();
    return d;
  }

  private listen(): void {
    const sock = this.config.socket;
    mkdirSync(dirname(sock), { recursive: true, mode: 0o750 });
    if (existsSync(sock)) unlinkSync(sock); // a stale socket file blocks listen
    this.server = Bun.serve({
      unix: sock,
      fetch: (r) => this.handle(r),
    });
    chmodSync(sock, 0o660);
  }

  private async handle(r: Request): Promise<Response> {
    const url = new URL(r.url);
    const path = url.pathname.replace(/^\/v\d+\.\d+(?=\/)/, "");
    let body: unknown;
    const text = r.method === "GET" || r.method === "HEAD" ? "" : await r.text();
    if (text.trim() !== "") {
      try {
        body = JSON.parse(text);
      } catch (e) {
        return new Response(JSON.stringify({ message: `invalid JSON body: ${(e as Error).message}`, kind: "invalid", code: "bad-json" }), {
          status: 400,
          headers: { "Content-Type": "application/json", "Api-Version": API_VERSION },
        });
      }
    }
    const res = await route(this.controller, this.runtime, { method: r.method, path, query: url.searchParams, body });
    // docker clients negotiate the API version from these headers (on /_ping above all)
    const headers: Record<string, string> = { "Api-Version": API_VERSION, Ostype: "linux", "Docker-Experimental": "false", Server: `Berth/${BERTH_VERSION}` };
    if (res.text !== undefined) return new Response(r.method === "HEAD" ? null : res.text, { status: res.status, headers: { ...headers, "Content-Type": "text/plain; charset=utf-8" } });
    if (res.body === undefined) return new Response(null, { status: res.status, headers });
    // exactly "application/json": the docker CLI decodes error bodies only for that media type
    return new Response(JSON.stringify(res.body), { status: res.status, headers: { ...headers, "Content-Type": "application/json" } });
  }

  async stop(): Promise<void> {
    this.reconciler.stop();
    await this.server?.stop(true);
    this.server = undefined;
    await this.store.close();
  }
}
