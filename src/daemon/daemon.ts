/**
 * berthd: wires store, IPAM, dataplane, controller and runtime together and
 * serves the API on a unix socket (mode 0660, root only).
 */
import { chmodSync, existsSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Server } from "bun";
import { handlePluginCall, PLUGIN_CONTENT_TYPE } from "../api/docker-plugin.ts";
import { errorResponse } from "../api/http.ts";
import { eventStream } from "../api/observe.ts";
import { API_VERSION, BERTH_VERSION, route } from "../api/router.ts";
import { registerCniMetrics } from "../observe/cni-metrics.ts";
import { type DaemonMetrics, daemonMetrics, routeLabel } from "../observe/daemon-metrics.ts";
import { EventBus } from "../observe/events.ts";
import { type Level, Logger } from "../observe/log.ts";
import { Controller } from "../controller/controller.ts";
import { Reconciler } from "../controller/reconcile.ts";
import { Cgroups } from "../dataplane/cgroup.ts";
import { Dataplane } from "../dataplane/dataplane.ts";
import { registerDnsMetrics } from "../dns/metrics.ts";
import { DnsService } from "../dns/server.ts";
import { parseUpstream, readHostResolvConf } from "../dns/upstream.ts";
import { invalid } from "../errors.ts";
import { Ipam } from "../ipam/index.ts";
import type { DefaultPoolSpec } from "../ipam/defaults.ts";
import { DEFAULT_OPLOG } from "../cni/oplog.ts";
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
  /**
   * Docker remote network/IPAM plugin socket (dockerd finds driver "berth" as
   * /run/docker/plugins/berth.sock); null or "" = not served. dockerd must run in
   * Berth's host namespace: it moves the links Berth creates there.
   */
  pluginSocket?: string | null;
  /** Embedded DNS upstreams, "IP[:port]"; undefined = the host's /etc/resolv.conf without loopback servers. */
  dnsUpstreams?: string[];
  /** Embedded DNS resolver for containers (default on). */
  dns?: boolean;
  /** The CNI plugins' operation log read for `/metrics` (src/cni/oplog.ts); null = not read. */
  cniOplog?: string | null;
}

export const DEFAULT_CONFIG: DaemonConfig = {
  socket: "/run/berth/berth.sock",
  stateDir: "/var/lib/berth",
  hostNetns: null,
  netnsPrefix: "berth-",
  cgroupParent: "berth",
  pluginSocket: "/run/docker/plugins/berth.sock",
};

export class Daemon {
  readonly config: DaemonConfig;
  readonly store: Store;
  readonly controller: Controller;
  readonly runtime: ContainerRuntime;
  readonly reconciler: Reconciler;
  metrics: DaemonMetrics | undefined;
  readonly log = new Logger({ level: (process.env.BERTH_LOG_LEVEL as Level | undefined) ?? "info", base: { component: "berthd" } });
  private server: Server<undefined> | undefined;
  private pluginServer: Server<undefined> | undefined;

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
    const events = new EventBus();
    const controller = new Controller({ store, ipam, dp, events });
    // embedded DNS (src/dns): a resolver on 127.0.0.11 inside every container that has networks
    const dns =
      config.dns === false
        ? undefined
        : new DnsService({
            store,
            dp,
            events,
            upstreams: config.dnsUpstreams ? config.dnsUpstreams.map((u) => parseUpstream(u)) : readHostResolvConf().upstreams,
          });
    const runtime = new ContainerRuntime({
      controller,
      stateDir: config.stateDir,
      netnsPrefix: config.netnsPrefix,
      cgroups: new Cgroups({ parent: config.cgroupParent }),
      ...(dns ? { dns } : {}),
    });
    await controller.ensurePredefined();
    await controller.syncFirewall();
    await runtime.recover();
    const log = new Logger({ base: { component: "berthd" } });
    const reconciler = new Reconciler(controller, (r) => {
      log.log(r.result === "failed" ? "error" : "warn", "repair", { op: "reconcile", ...r });
      events.emit("daemon", "repair", r.object, { problem: r.problem, result: r.result });
    });
    await reconciler.runOnce();
    const interval = config.reconcileIntervalMs ?? 1000;
    if (interval > 0) reconciler.start(interval);
    const d = new Daemon(config, store, controller, runtime, reconciler);
    const oplog = config.cniOplog === undefined ? DEFAULT_OPLOG : config.cniOplog;
    if (oplog) mkdirSync(dirname(oplog), { recursive: true, mode: 0o755 }); // plugins record only where the directory exists
    d.metrics = daemonMetrics(controller, reconciler, (r) => {
      if (dns) registerDnsMetrics(r, dns);
      if (oplog) registerCniMetrics(r, oplog);
    });
    d.listen();
    return d;
  }

  private listen(): void {
    const sock = this.config.socket;
    mkdirSync(dirname(sock), { recursive: true, mode: 0o750 });
    if (existsSync(sock)) unlinkSync(sock); // a stale socket file blocks listen
    this.server = Bun.serve({
      unix: sock,
      fetch: (r, server) => {
        if (r.url.endsWith("/events") || r.url.includes("/events?")) server.timeout(r, 0); // long-lived stream
        return this.handle(r);
      },
    });
    chmodSync(sock, 0o660);
    const plugin = this.config.pluginSocket;
    if (plugin) {
      mkdirSync(dirname(plugin), { recursive: true, mode: 0o755 });
      if (existsSync(plugin)) unlinkSync(plugin);
      this.pluginServer = Bun.serve({ unix: plugin, fetch: (r) => this.handlePlugin(r) });
      chmodSync(plugin, 0o660);
    }
  }

  /** Docker plugin protocol: POST /<Subsystem>.<Method> with a JSON body. */
  private async handlePlugin(r: Request): Promise<Response> {
    let res: { status: number; body: unknown };
    try {
      res =
        r.method === "POST"
          ? await handlePluginCall(this.controller, requestPath(r.url), await r.text())
          : { status: 405, body: { Err: `method ${r.method} not allowed: plugin calls are POSTs` } };
    } catch (e) {
      res = { status: 500, body: { Err: (e as Error).message } };
    }
    return new Response(JSON.stringify(res.body), { status: res.status, headers: { "Content-Type": PLUGIN_CONTENT_TYPE } });
  }

  private async handle(r: Request): Promise<Response> {
    const t0 = performance.now();
    const url = new URL(r.url);
    const path = url.pathname.replace(/^\/v\d+\.\d+(?=\/)/, "");
    const res = await this.respond(r, url, path);
    const seconds = (performance.now() - t0) / 1000;
    this.metrics?.observeRequest(r.method, path, res.status, seconds);
    if (r.method !== "GET" || res.status >= 400) {
      const parts = path.split("/");
      const containerId = parts[2] === "containers" ? parts[3] : undefined;
      this.log.log(res.status >= 500 ? "error" : res.status >= 400 ? "warn" : "info", "api request", {
        op: `${r.method} ${routeLabel(path)}`,
        ...(containerId ? { containerId } : {}),
        status: res.status,
        ms: Math.round(seconds * 1000),
      });
    }
    return res;
  }

  private async respond(r: Request, url: URL, path: string): Promise<Response> {
    const streamHeaders = { "Api-Version": API_VERSION, Server: `Berth/${BERTH_VERSION}` };
    if (r.method === "GET" && path === "/metrics" && this.metrics) {
      return new Response(await this.metrics.registry.render(), { headers: { ...streamHeaders, "Content-Type": "text/plain; version=0.0.4" } });
    }
    if (r.method === "GET" && path === "/events") {
      try {
        const stream = eventStream(this.controller.events, { method: r.method, path, query: url.searchParams, body: undefined });
        return new Response(stream, { headers: { ...streamHeaders, "Content-Type": "application/json" } });
      } catch (e) {
        const er = errorResponse(e);
        return new Response(JSON.stringify(er.body), { status: er.status, headers: { ...streamHeaders, "Content-Type": "application/json" } });
      }
    }
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
    await this.pluginServer?.stop(true);
    this.pluginServer = undefined;
    const plugin = this.config.pluginSocket;
    if (plugin && existsSync(plugin)) unlinkSync(plugin);
    await this.runtime.dns?.stop();
    await this.store.close();
  }
}

/**
 * The path of a request URL. dockerd's plugin client sends the socket path as
 * its Host header ("Host: /run/docker/plugins/berth.sock"), which leaves Bun
 * with a bare path or an unparsable URL, so no URL parser here.
 */
export function requestPath(url: string): string {
  const rest = url.startsWith("/") ? url : url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, "");
  const path = rest.split(/[?#]/, 1)[0] ?? "";
  return path === "" ? "/" : path;
}
