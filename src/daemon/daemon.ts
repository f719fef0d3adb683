/**
 * berthd: wires store, IPAM, dataplane, controller and runtime together and
 * serves the API on a unix socket (mode 0600: root only; created so, never
 * reachable with wider permissions).
 */
import { chmodSync, existsSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Server } from "bun";
import { handlePluginCall, PLUGIN_CONTENT_TYPE } from "../api/docker-plugin.ts";
import { errorResponse } from "../api/http.ts";
import { eventStream } from "../api/observe.ts";
import { API_VERSION, BERTH_VERSION, route } from "../api/router.ts";
import { registerCniMetrics } from "../observe/cni-metrics.ts";
import { type DaemonMetrics, daemonMetrics, routeLabel } from "../observe/daemon-metrics.ts";
import { UI_HOST, UI_TOKEN_FILE, UiServer, writeTokenFile } from "./ui-server.ts";
import { EventBus } from "../observe/events.ts";
import { type Level, Logger } from "../observe/log.ts";
import { Controller } from "../controller/controller.ts";
import { Reconciler } from "../controller/reconcile.ts";
import { FAULT_ENV } from "../controller/faults.ts";
import { recoverInterrupted } from "../controller/recovery.ts";
import { Cgroups } from "../dataplane/cgroup.ts";
import { Dataplane } from "../dataplane/dataplane.ts";
import { registerDnsMetrics } from "../dns/metrics.ts";
import { DnsService } from "../dns/server.ts";
import { parseUpstream, readHostResolvConf } from "../dns/upstream.ts";
import { invalid } from "../errors.ts";
import { Ipam } from "../ipam/index.ts";
import type { DefaultPoolSpec } from "../ipam/defaults.ts";
import { DEFAULT_OPLOG, ensureOplog } from "../cni/oplog.ts";
import { ContainerRuntime } from "../runtime/containers.ts";
import { type OpenedStore, openDaemonStore, startOverlayAgent } from "./cluster.ts";
import type { OverlayAgent } from "../drivers/overlay/agent.ts";
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
  /** The web UI on 127.0.0.1 (src/daemon/ui-server.ts); off when undefined. */
  ui?: { port: number; token: string; dir: string };
  /** The CNI plugins' operation log read for `/metrics` (src/cni/oplog.ts); null = not read. */
  cniOplog?: string | null;
  /** Multi-host (src/daemon/cluster.ts): "etcd://HOST:PORT" (default: the embedded SQLite store). */
  store?: string;
  /** This host's name in the cluster (default: the hostname). */
  hostName?: string;
  /** This host's underlay address, the VXLAN endpoint of overlay networks. */
  advertiseAddr?: string;
  /** Lease TTL of the host's registration, seconds (default 10). */
  hostTtlSeconds?: number;
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
  /** The web UI server when --ui is on (its address, with the token, is `ui.url`). */
  ui: UiServer | undefined;
  /** Multi-host: the host registration and the overlay agent (etcd store with --advertise-addr). */
  cluster: { registry: OpenedStore["registry"]; agent: OverlayAgent | undefined } | undefined;

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
    const { store, registry } = await openDaemonStore(config);
    const ipam = new Ipam(store, config.defaultPools ? { defaultPools: config.defaultPools } : {});
    const events = new EventBus();
    const controller = new Controller({ store, ipam, dp, events, ...(registry ? { cluster: registry } : {}) });
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
    const log = new Logger({ base: { component: "berthd" } });
    // crash recovery first: operations a killed daemon left half-done are rolled back or
    // forward (src/controller/recovery.ts) before the predefined networks and the reconciler look
    const recoveredContainers = await runtime.recoverInterrupted();
    const recovered = await recoverInterrupted(controller);
    for (const name of recoveredContainers) log.log("warn", "recovered", { op: "recover", object: `container ${name}`, action: "removed" });
    for (const r of recovered) log.log("warn", "recovered", { op: "recover", ...r });
    await controller.ensurePredefined();
    await controller.syncFirewall();
    await runtime.recover();
    const reconciler = new Reconciler(controller, (r) => {
      log.log(r.result === "failed" ? "error" : "warn", "repair", { op: "reconcile", ...r });
      events.emit("daemon", "repair", r.object, { problem: r.problem, result: r.result });
    });
    await reconciler.runOnce();
    const interval = config.reconcileIntervalMs ?? 1000;
    if (interval > 0) reconciler.start(interval);
    const d = new Daemon(config, store, controller, runtime, reconciler);
    if (registry) {
      d.cluster = { registry, agent: startOverlayAgent(controller, registry, log) };
      // other hosts' endpoints change the names this host's resolver answers: rebuild on every cluster change
      if (dns) registry.onChange(() => dns.invalidate());
    }
    const oplog = config.cniOplog === undefined ? DEFAULT_OPLOG : config.cniOplog;
    if (oplog) {
      mkdirSync(dirname(oplog), { recursive: true, mode: 0o755 });
      ensureOplog(oplog); // plugins only append to a log that exists
    }
    d.metrics = daemonMetrics(controller, reconciler, (r) => {
      if (dns) registerDnsMetrics(r, dns);
      if (oplog) registerCniMetrics(r, oplog);
    });
    d.listen();
    if (config.ui) {
      try {
        d.ui = UiServer.start({ ...config.ui, events, api: (r) => d.handle(r) });
      } catch (e) {
        await d.stop();
        throw e;
      }
      writeTokenFile(config.stateDir, config.ui.token);
      log.log("info", "web ui listening", { op: "ui", address: `http://${UI_HOST}:${d.ui.port}/`, tokenFile: join(config.stateDir, UI_TOKEN_FILE) });
    }
    // crash tests only (BERTH_FAULT="point:kill"): armed once started, so recovery itself runs unarmed
    if (process.env[FAULT_ENV]) controller.faults.armKills(process.env[FAULT_ENV]);
    return d;
  }

  private listen(): void {
    const sock = this.config.socket;
    mkdirSync(dirname(sock), { recursive: true, mode: 0o750 });
    if (existsSync(sock)) unlinkSync(sock); // a stale socket file blocks listen
    // the socket is created 0600 (umask), not chmod-ed afterwards: no window in which others could connect
    const umask = process.umask(0o177);
    try {
      this.server = Bun.serve({
        unix: sock,
        fetch: (r, server) => {
          if (r.url.endsWith("/events") || r.url.includes("/events?")) server.timeout(r, 0); // long-lived stream
          return this.handle(r);
        },
      });
    } finally {
      process.umask(umask);
    }
    chmodSync(sock, 0o600);
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

  /** One API request (the unix socket's handler; the web UI forwards /api/... here). */
  async handle(r: Request): Promise<Response> {
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
    this.cluster?.agent?.stop();
    await this.cluster?.registry?.stop();
    await this.server?.stop(true);
    this.server = undefined;
    await this.pluginServer?.stop(true);
    this.pluginServer = undefined;
    await this.ui?.stop();
    this.ui = undefined;
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
