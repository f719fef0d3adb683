/** berthd entry point: `berthd [--socket P] [--state-dir D] [--host-netns NS] ...` */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { asBerthError } from "../errors.ts";
import { Daemon, type DaemonConfig, DEFAULT_CONFIG } from "./daemon.ts";
import { parseUpstream } from "../dns/upstream.ts";
import { DEFAULT_UI_PORT, defaultUiDir, generateToken, readTokenFile, UI_TOKEN_FILE, validateToken } from "./ui-server.ts";

export async function berthdMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: "string" },
      "state-dir": { type: "string" },
      "host-netns": { type: "string" },
      "netns-prefix": { type: "string" },
      "cgroup-parent": { type: "string" },
      "default-pool": { type: "string", multiple: true },
      "reconcile-interval": { type: "string" },
      "plugin-socket": { type: "string" },
      "dns-upstream": { type: "string", multiple: true },
      ui: { type: "boolean" },
      "ui-port": { type: "string" },
      "ui-token": { type: "string" },
      "ui-token-file": { type: "string" },
      "ui-dir": { type: "string" },
      "cni-oplog": { type: "string" },
      store: { type: "string" },
      "host-name": { type: "string" },
      "advertise-addr": { type: "string" },
      "host-ttl": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(`usage: berthd [--socket PATH] [--state-dir DIR] [--host-netns NS] [--netns-prefix P] [--cgroup-parent NAME] [--default-pool BASE/LEN:SIZE ...] [--plugin-socket PATH]
  --socket        API socket (default ${DEFAULT_CONFIG.socket})
  --state-dir     state directory (default ${DEFAULT_CONFIG.stateDir})
  --host-netns    run Berth's host side inside this named netns instead of the daemon's own
  --default-pool  address pool for automatic subnets, e.g. 10.99.0.0/16:24 (repeatable)
  --reconcile-interval  ms between checks that repair drift (default 1000; 0 = only at start)
  --plugin-socket PATH  Docker remote network + IPAM plugin socket (default ${DEFAULT_CONFIG.pluginSocket};
                  "" = off). dockerd must share Berth's host network namespace to use it.
  --dns-upstream IP[:PORT]  upstream server for the embedded DNS resolver (repeatable, tried in order;
                  default: the nameservers of /etc/resolv.conf, loopback ones skipped)
  --cni-oplog PATH  the CNI plugins' operation log, read for /metrics (default /run/berth/cni-ops.log,
                  the plugins' default too; set BERTH_CNI_OPLOG for them to match; "" = off)
  --ui            serve the web UI on http://127.0.0.1:${DEFAULT_UI_PORT}/ (127.0.0.1 only; needs a token)
  --ui-port N     its port (0 = any free port; the address is printed)
  --ui-token T    the token (at least 16 characters; default: a random one); it is visible in ps,
                  --ui-token-file FILE is not. Either way it is written to STATE-DIR/${UI_TOKEN_FILE} (mode 0600)
  --ui-dir DIR    the built app (default: dist/ui, made by scripts/build.sh)
  --store etcd://HOST:PORT  share state with other hosts through etcd (default: embedded SQLite in STATE-DIR)
  --host-name NAME          this host's name in the cluster (default: the hostname)
  --advertise-addr IP       this host's underlay address: the VXLAN endpoint of overlay networks
  --host-ttl SECONDS        lease of the host's registration; others drop its endpoints this long after it dies (default 10)`);
    return 0;
  }
  const config: DaemonConfig = {
    socket: values.socket ?? DEFAULT_CONFIG.socket,
    stateDir: values["state-dir"] ?? DEFAULT_CONFIG.stateDir,
    hostNetns: values["host-netns"] ?? null,
    netnsPrefix: values["netns-prefix"] ?? DEFAULT_CONFIG.netnsPrefix,
    cgroupParent: values["cgroup-parent"] ?? DEFAULT_CONFIG.cgroupParent,
    pluginSocket: values["plugin-socket"] ?? DEFAULT_CONFIG.pluginSocket ?? null,
  };
  if (values["cni-oplog"] !== undefined) config.cniOplog = values["cni-oplog"] || null;
  if (values.store !== undefined) config.store = values.store;
  if (values["host-name"] !== undefined) config.hostName = values["host-name"];
  if (values["advertise-addr"] !== undefined) config.advertiseAddr = values["advertise-addr"];
  if (values["host-ttl"] !== undefined) {
    const ttl = Number(values["host-ttl"]);
    if (!Number.isInteger(ttl) || ttl < 1) {
      console.error(`berthd: --host-ttl must be a whole number of seconds, at least 1 (got ${values["host-ttl"]})`);
      return 2;
    }
    config.hostTtlSeconds = ttl;
  }
  if (values["dns-upstream"]) {
    try {
      for (const u of values["dns-upstream"]) parseUpstream(u, "dns-upstream");
    } catch (e) {
      console.error(`berthd: --dns-upstream: ${asBerthError(e).message}`);
      return 2;
    }
    config.dnsUpstreams = values["dns-upstream"];
  }
  const ui = uiConfig(values);
  if (typeof ui === "string") {
    console.error(`berthd: ${ui}`);
    return 2;
  }
  if (ui) config.ui = ui;
  if (values["reconcile-interval"] !== undefined) {
    const ms = Number(values["reconcile-interval"]);
    if (!Number.isInteger(ms) || ms < 0) {
      console.error(`berthd: --reconcile-interval must be a whole number of milliseconds (got ${values["reconcile-interval"]})`);
      return 2;
    }
    config.reconcileIntervalMs = ms;
  }
  if (values["default-pool"]) {
    config.defaultPools = values["default-pool"].map((s) => {
      const [base, size] = s.split(":");
      return { base: base ?? "", size: Number(size) };
    });
  }
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config);
  } catch (e) {
    console.error(`berthd: ${asBerthError(e).message}`);
    return 1;
  }
  console.error(`berthd: listening on ${config.socket}${config.pluginSocket ? `, Docker plugin on ${config.pluginSocket}` : ""}`);
  if (daemon.ui) console.error(`berthd: web UI on ${daemon.ui.url} (token also in ${join(config.stateDir, UI_TOKEN_FILE)})`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  await daemon.stop();
  return 0;
}

interface UiFlags {
  ui?: boolean | undefined;
  "ui-port"?: string | undefined;
  "ui-token"?: string | undefined;
  "ui-token-file"?: string | undefined;
  "ui-dir"?: string | undefined;
}

/** The web UI settings from the flags; a string is the error to print. */
function uiConfig(v: UiFlags): NonNullable<DaemonConfig["ui"]> | undefined | string {
  const given = (["ui-port", "ui-token", "ui-token-file", "ui-dir"] as const).filter((k) => v[k] !== undefined);
  if (!v.ui) return given.length > 0 ? `--${given[0]} needs --ui` : undefined;
  const port = v["ui-port"] === undefined ? DEFAULT_UI_PORT : Number(v["ui-port"]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return `--ui-port must be a port number 0-65535 (got ${v["ui-port"]})`;
  if (v["ui-token"] !== undefined && v["ui-token-file"] !== undefined) return "give --ui-token or --ui-token-file, not both";
  try {
    const token =
      v["ui-token"] !== undefined ? validateToken(v["ui-token"]) : v["ui-token-file"] !== undefined ? readTokenFile(v["ui-token-file"]) : generateToken();
    return { port, token, dir: v["ui-dir"] ?? defaultUiDir() };
  } catch (e) {
    return `--${asBerthError(e).field ?? "ui-token"}: ${asBerthError(e).message}`;
  }
}
